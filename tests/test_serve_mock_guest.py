"""`edgechain serve` generating through the real wasm host with the WAT stand-in guest
(tests/engine/mock_guest.wat: every session emits "abcde" and stops with reason max_tokens; a
checkpoint starting with 0xFF traps): the SSE and GraphQL paths end to end, and engine errors
as typed errors, without candle.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import blake3
import httpx
import pytest
import wasmtime
from serve_helpers import (
    PUBLISH,
    REPO_ROOT,
    NodeProcess,
    start_node,
    stop_node,
    stream_generation,
    subscribe,
)

from edgechain.client import Client
from edgechain.service.engine.wasm import GUEST_ENV
from edgechain.testing.weight_server import WeightServer

FILES = {"ok.bin": b"x" * 40, "trap.bin": b"\xff" * 40, "tok.bin": b"tok"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("serve-mock")
    guest = root / "mock_guest.wasm"
    wat = (REPO_ROOT / "tests" / "engine" / "mock_guest.wat").read_text()
    guest.write_bytes(wasmtime.wat2wasm(wat))
    Client.up(root / "net", validators=4).close()
    with WeightServer(FILES) as weights:
        node = start_node(root / "net", env={GUEST_ENV: str(guest)})
        try:
            for name, checkpoint in (("mock", "ok.bin"), ("mock-trap", "trap.bin")):
                node.data(
                    PUBLISH,
                    {"name": name, "version": "1", "w": ref(weights, checkpoint),
                     "t": ref(weights, "tok.bin")},
                )  # fmt: skip
            yield node
        finally:
            stop_node(node)


def ref(weights: WeightServer, name: str) -> dict:
    data = FILES[name]
    digest = blake3.blake3(data).hexdigest()
    return {"blake3": digest, "size": len(data), "urls": [weights.url(name)]}


def test_sse_streams_each_token_then_done(node: NodeProcess) -> None:
    events = stream_generation(node, model="mock", prompt="hi", maxTokens=50)
    assert [e.event for e in events] == ["token"] * 5 + ["done"]
    assert [e.data["text"] for e in events[:5]] == list("abcde")
    assert [e.data["id"] for e in events[:5]] == [100, 101, 102, 103, 104]
    record = events[-1].data
    assert record["text"] == "abcde" and record["output_tokens"] == 5
    assert record["stop_reason"] == "max_tokens"  # the stand-in ends every session so
    assert record["model"]["name"] == "mock" and record["model"]["version"] == "1"
    assert record["model"]["weights"]["blake3"] == blake3.blake3(FILES["ok.bin"]).hexdigest()
    assert set(record["timings"]) >= {"fetch_s", "load_s", "first_token_s", "total_s"}


def test_graphql_generate_returns_the_record(node: NodeProcess) -> None:
    result = node.data(
        '{ generate(model: "mock", prompt: "hi", seed: 7) '
        "{ text stopReason outputTokens seed seedSource model { name } } }"
    )["generate"]
    assert result == {
        "text": "abcde",
        "stopReason": "max_tokens",
        "outputTokens": 5,
        "seed": "7",  # U64: a decimal string
        "seedSource": "query",
        "model": {"name": "mock"},
    }


def test_a_guest_trap_is_a_typed_error_and_the_node_keeps_serving(node: NodeProcess) -> None:
    events = stream_generation(node, model="mock-trap", prompt="hi")
    assert [e.event for e in events] == ["error"]
    assert events[0].data["code"] == "GuestTrap"
    [error] = node.graphql('{ generate(model: "mock-trap", prompt: "hi") { text } }')["errors"]
    assert error["extensions"]["code"] == "GuestTrap"
    assert stream_generation(node, model="mock", prompt="hi")[-1].event == "done"


def test_a_seed_beyond_53_bits_round_trips_as_a_decimal_string(node: NodeProcess) -> None:
    seed = 2**63 + 5  # a double would round it (to ...808)
    record = stream_generation(node, model="mock", prompt="hi", seed=seed)[-1].data
    assert record["seed"] == str(seed)
    for literal in (f'"{seed}"', str(seed)):  # a string literal, or an integer literal
        query = f'{{ generate(model: "mock", prompt: "hi", seed: {literal}) {{ seed }} }}'
        result = node.data(query)
        assert result["generate"]["seed"] == str(seed)
    variables = {"seed": str(seed)}
    result = node.data(
        'query($seed: U64) { generate(model: "mock", prompt: "hi", seed: $seed) { seed } }',
        variables,
    )
    assert result["generate"]["seed"] == str(seed)


SUBSCRIPTION = """subscription { generate(model: "%s", prompt: "hi") {
  __typename
  ... on TokenUpdate { id text }
  ... on GenerationResult { text outputTokens model { name } } } }"""


def test_the_generate_subscription_streams_tokens_then_the_result(node: NodeProcess) -> None:
    messages = subscribe(node, SUBSCRIPTION % "mock")
    assert [m["type"] for m in messages] == ["next"] * 6 + ["complete"]
    updates = [m["payload"]["data"]["generate"] for m in messages[:6]]
    assert updates[:5] == [
        {"__typename": "TokenUpdate", "id": 100 + i, "text": c} for i, c in enumerate("abcde")
    ]
    assert updates[5] == {
        "__typename": "GenerationResult",
        "text": "abcde",
        "outputTokens": 5,
        "model": {"name": "mock"},
    }


def test_subscription_errors_are_typed(node: NodeProcess) -> None:
    messages = subscribe(node, SUBSCRIPTION % "no-such-model")
    [error] = messages[0]["payload"]["errors"]
    assert error["extensions"]["code"] == "ModelNotFound"
    assert messages[-1]["type"] == "complete"


def test_a_subscription_to_an_unknown_application_is_refused(node: NodeProcess) -> None:
    from websockets.exceptions import InvalidStatus

    unknown = f"/chains/{node.chain_id}/applications/{'0' * 64}"
    with pytest.raises(InvalidStatus) as refused:
        subscribe(node, SUBSCRIPTION % "mock", path=unknown)
    assert refused.value.response.status_code == 403


# --- the generate request at the node's doors (definition: edgechain/service/query.py) -------


def test_every_query_field_is_reachable_at_each_door(node: NodeProcess) -> None:
    fields = (
        'model: "mock", prompt: "hi", version: "1", maxTokens: 9, temperature: 0.5, topP: 0.5, '
        'repeatPenalty: 1.2, repeatWindow: 8, stop: ["z"], seed: "5"'
    )
    result = node.data(f"{{ generate({fields}) {{ text seed }} }}")["generate"]
    assert result == {"text": "abcde", "seed": "5"}
    messages = subscribe(
        node, f"subscription {{ generate({fields}) {{ ... on GenerationResult {{ seed }} }} }}"
    )
    assert messages[-2]["payload"]["data"]["generate"]["seed"] == "5"
    events = stream_generation(
        node, model="mock", prompt="hi", version="1", maxTokens=9, temperature=0.5, topP=0.5,
        repeatPenalty=1.2, repeatWindow=8, stop="z", seed="5",
    )  # fmt: skip
    assert events[-1].event == "done" and events[-1].data["seed"] == "5"


@pytest.mark.parametrize(
    ("graphql_args", "sse_params", "code", "fragment"),
    [
        ("repeatWindow: -1", {"repeatWindow": "-1"}, "InvalidParameter", "repeat_window"),
        ('stop: [""]', {"stop": ""}, "InvalidParameter", "must not be empty"),
        ("topP: 0", {"topP": "0"}, "InvalidParameter", "top_p must be in (0, 1]"),
    ],
)
def test_bad_values_are_the_same_typed_errors_at_each_door(
    node: NodeProcess, graphql_args: str, sse_params: dict[str, str], code: str, fragment: str
) -> None:
    query = f'{{ generate(model: "mock", {graphql_args}) {{ text }} }}'
    [error] = node.graphql(query)["errors"]
    assert error["extensions"]["code"] == code and fragment in error["message"]
    if sse_params:
        [event] = stream_generation(node, model="mock", **sse_params)
        assert event.event == "error" and event.data["code"] == code
        assert fragment in event.data["message"]


def test_a_lone_surrogate_in_the_prompt_is_invalid_text(node: NodeProcess) -> None:
    # JSON can carry one (GraphQL literals cannot): the node refuses it when it reads the body,
    # naming where it is.
    query = 'query($p: String!) { generate(model: "mock", prompt: $p) { text } }'
    body = json.dumps({"query": query, "variables": {"p": "bad \ud800"}})  # ASCII: \\ud800
    response = httpx.post(
        node.graphql_url, content=body, headers={"content-type": "application/json"}
    )
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "InvalidText"
    assert "variables.p is not valid Unicode text" in error["message"]
    assert error["extensions"]["exitCode"] == 3
