"""`edgechain serve` generating with the wasm guest: the SSE stream (tokens, then the record),
greedy output equal to llama2.c's golden text, the GraphQL ``generate`` field, typed error
events, and a client disconnect that cancels the generation while the node stays responsive.

These tests need the wasm guest (scripts/build_guest.sh); without it they fail, never skip.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from network_cli_helpers import edgechain
from serve_helpers import (
    GOLDEN,
    STORIES_DIR,
    NodeProcess,
    file_input,
    publish_files,
    running_node,
    sse_events,
    start_node,
    stop_node,
    stream_generation,
)

from edgechain.service.engine.wasm import GUEST_ENV, PACKAGED_GUEST
from edgechain.testing.synth import shape_named, synthesize
from edgechain.testing.weight_server import WeightServer

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def guest() -> Path:
    path = Path(os.environ.get(GUEST_ENV) or PACKAGED_GUEST)
    assert path.is_file(), f"the wasm guest {path} is missing: run scripts/build_guest.sh"
    return path


@dataclass(frozen=True)
class ServedFiles:
    directory: Path
    server: WeightServer


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedFiles]:
    """stories260K and a synthetic stories15M-shaped model (slow enough to disconnect from)."""
    directory = tmp_path_factory.mktemp("weights")
    for name in ("stories260K.bin", "tok512.bin"):
        (directory / name).write_bytes((STORIES_DIR / name).read_bytes())
    synthesize(shape_named("15M"), 7, directory / "synth15M.bin", directory / "tok32000.bin")
    with WeightServer(directory) as server:
        yield ServedFiles(directory, server)


@pytest.fixture(scope="module")
def node(guest: Path, weights: ServedFiles, network_dir: Path) -> Iterator[NodeProcess]:
    with running_node(network_dir) as node:
        files, base_url = weights.directory, weights.server.base_url
        for name, checkpoint, tokenizer in (
            ("stories260K", "stories260K.bin", "tok512.bin"),
            ("synth15M", "synth15M.bin", "tok32000.bin"),
        ):
            publish_files(node, name, files / checkpoint, files / tokenizer, base_url)
        yield node


@pytest.fixture(scope="module")
def golden_continuation() -> str:
    """llama2.c's greedy output for the prompt (256 positions), minus the prompt."""
    text = GOLDEN.read_text(encoding="utf-8")
    assert text.startswith(PROMPT)
    return text[len(PROMPT) :]


def test_sse_streams_tokens_then_the_record_equal_to_the_golden_text(
    node: NodeProcess, golden_continuation: str
) -> None:
    events = stream_generation(
        node, model="stories260K", prompt=PROMPT, temperature=0, maxTokens=200
    )
    kinds = [e.event for e in events]
    assert kinds == ["token"] * 200 + ["done"], kinds[-3:]
    record = events[-1].data
    streamed = "".join(e.data["text"] for e in events[:-1])
    assert record["text"] == streamed
    assert record["output_tokens"] == 200 and record["stop_reason"] == "max_tokens"
    assert len(streamed) > 400  # 200 tokens of story, not a few characters
    assert streamed == golden_continuation[: len(streamed)]
    assert record["model"]["name"] == "stories260K"
    assert record["model"]["weights"]["blake3"] == file_input(STORIES_DIR / "stories260K.bin", "")[
        "blake3"
    ]
    assert record["seed_source"] == "derived"


def test_the_full_greedy_run_equals_the_golden_file(
    node: NodeProcess, golden_continuation: str
) -> None:
    probe = stream_generation(node, model="stories260K", prompt=PROMPT, temperature=0, maxTokens=1)
    input_tokens = probe[-1].data["input_tokens"]
    # The golden file is run.c with -n 256: it predicts a token at every position from the
    # prompt's last token (BOS included) to 255, so 256 - input_tokens + 1 tokens.
    events = stream_generation(
        node, model="stories260K", prompt=PROMPT, temperature=0, maxTokens=257 - input_tokens
    )
    record = events[-1].data
    assert events[-1].event == "done", record
    assert record["text"] == golden_continuation.rstrip("\n")


def test_graphql_generate_returns_the_same_text_as_the_stream(node: NodeProcess) -> None:
    streamed = stream_generation(
        node, model="stories260K", prompt=PROMPT, temperature=0, maxTokens=32
    )[-1].data
    result = node.data(
        """{ generate(model: "stories260K", prompt: "Once upon a time", maxTokens: 32,
                      temperature: 0) {
              prompt text stopReason inputTokens outputTokens seed seedSource
              model { name version blockHash signers }
              timings { totalS decodeTokensPerS } } }"""
    )["generate"]
    assert result["text"] == streamed["text"]
    # One rule on every front: text is the continuation, prompt the prompt it continues.
    assert result["prompt"] == streamed["prompt"] == PROMPT
    assert not result["text"].startswith(PROMPT)
    assert result["outputTokens"] == 32 and result["stopReason"] == "max_tokens"
    assert result["seed"] == streamed["seed"]  # same query, same certified state: same seed
    assert result["model"]["blockHash"] == streamed["model"]["block_hash"]
    assert len(result["model"]["signers"]) >= 3
    assert result["timings"]["totalS"] > 0


def test_a_seeded_sampled_query_is_reproducible(node: NodeProcess) -> None:
    params = {"model": "stories260K", "prompt": "The dog", "temperature": 0.9, "maxTokens": 40}
    first = stream_generation(node, **params, seed=12345)[-1].data
    again = stream_generation(node, **params, seed=12345)[-1].data
    other = stream_generation(node, **params, seed=54321)[-1].data
    assert first["seed"] == "12345" and first["seed_source"] == "query"  # u64 as a string
    assert first["text"] == again["text"]
    assert first["text"] != other["text"]


def test_stop_strings_end_the_stream(node: NodeProcess) -> None:
    events = stream_generation(
        node, model="stories260K", prompt=PROMPT, temperature=0, maxTokens=200, stop="Lily"
    )
    record = events[-1].data
    assert record["stop_reason"] == "stop_string"
    assert record["output_tokens"] < 200


@pytest.mark.parametrize(
    ("params", "code", "fragment"),
    [
        ({"model": "nope", "prompt": PROMPT}, "ModelNotFound", "no model named nope"),
        ({"model": "stories260K", "prompt": PROMPT, "temperature": -1}, "InvalidParameter", "temp"),
        ({"model": "stories260K", "prompt": PROMPT, "maxTokens": "many"}, "InvalidParameter",
         "maxTokens must be an integer"),
        ({"model": "stories260K", "prompt": PROMPT, "colour": "red"}, "UsageError", "colour"),
        ({"prompt": PROMPT}, "UsageError", "missing parameter 'model'"),
    ],
)  # fmt: skip
def test_errors_are_one_typed_error_event(
    node: NodeProcess, params: dict, code: str, fragment: str
) -> None:
    events = stream_generation(node, **params)
    assert [e.event for e in events] == ["error"]
    assert events[0].data["code"] == code
    assert fragment in events[0].data["message"]


def test_graphql_generate_errors_are_typed(node: NodeProcess) -> None:
    body = node.graphql('{ generate(model: "stories260K", prompt: "x", topP: 2) { text } }')
    [error] = body["errors"]
    assert error["extensions"]["code"] == "InvalidParameter"
    # GenerateQuery's own message, passed through unchanged: it names the Python field.
    assert error["message"].startswith("top_p must be in (0, 1], got 2")


def generations(node: NodeProcess) -> dict[str, int]:
    return httpx.get(node.base_url + "/", timeout=10).json()["generations"]


def assert_one_more_cancelled(node: NodeProcess, before: dict[str, int]) -> None:
    """Once as many generations run as ``before`` (30 s at most): one more was cancelled, and
    none more completed."""
    deadline = time.monotonic() + 30
    while (now := generations(node))["running"] != before["running"]:
        assert time.monotonic() < deadline, now
        time.sleep(0.05)
    assert now["cancelled"] == before["cancelled"] + 1
    assert now["completed"] == before["completed"]


def test_a_client_disconnect_cancels_the_generation(node: NodeProcess) -> None:
    before = generations(node)
    params = {"model": "synth15M", "prompt": PROMPT, "temperature": 0, "maxTokens": 250}
    with httpx.stream("GET", node.generate_url, params=params, timeout=120) as response:
        events = sse_events(response)
        assert next(events).event == "token"
        # While tokens stream, the node keeps answering other requests promptly.
        started = time.monotonic()
        during = generations(node)
        assert time.monotonic() - started < 2.0
        assert during["running"] == before["running"] + 1
    # The response is closed: the node must cancel the generation, not run it to the end.
    assert_one_more_cancelled(node, before)


def test_a_graphql_caller_that_disconnects_cancels_its_generation(node: NodeProcess) -> None:
    before = generations(node)
    query = '{ generate(model: "synth15M", prompt: "Once", maxTokens: 250) { text } }'
    body = json.dumps({"query": query}).encode()
    host, port = node.base_url.removeprefix("http://").split(":")
    request = (
        f"POST {node.app_path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, int(port)), timeout=30) as caller:
        caller.sendall(request)
        deadline = time.monotonic() + 60
        while generations(node)["running"] == before["running"]:
            assert time.monotonic() < deadline, "the generation never started"
            time.sleep(0.02)
    assert_one_more_cancelled(node, before)


def test_stopping_the_node_ends_a_running_stream_with_a_cancelled_event(
    node: NodeProcess, network_dir: Path
) -> None:
    second = start_node(network_dir)  # its own node on the same network: this test stops it
    try:
        params = {"model": "synth15M", "prompt": PROMPT, "maxTokens": 250}
        with httpx.stream("GET", second.generate_url, params=params, timeout=120) as response:
            events = sse_events(response)
            assert next(events).event == "token"
            second.process.send_signal(signal.SIGTERM)
            rest = list(events)
        assert rest[-1].event == "error", rest[-1]
        assert rest[-1].data["code"] == "Cancelled"
        assert "shutting down" in rest[-1].data["message"]
        assert len(rest) < 200  # stopped, not run to the end
        assert second.process.wait(timeout=15) == 0
    finally:
        _, err = stop_node(second)
    assert err == ""


def test_unsubscribing_cancels_the_generation(node: NodeProcess) -> None:
    from websockets.sync.client import connect

    before = generations(node)
    query = """subscription { generate(model: "synth15M", prompt: "Once", maxTokens: 250) {
        ... on TokenUpdate { text } } }"""
    url = "ws" + node.base_url.removeprefix("http") + node.app_path
    with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=30) as ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "connection_ack"
        ws.send(json.dumps({"id": "s", "type": "subscribe", "payload": {"query": query}}))
        first = json.loads(ws.recv(timeout=120))
        assert first["type"] == "next" and "text" in first["payload"]["data"]["generate"]
        ws.send(json.dumps({"id": "s", "type": "complete"}))  # unsubscribe
        assert_one_more_cancelled(node, before)


def test_a_seed_copied_from_the_node_reproduces_the_text_with_the_cli(
    node: NodeProcess, network_dir: Path
) -> None:
    result = node.data(
        '{ generate(model: "stories260K", prompt: "Lily", temperature: 1.0, maxTokens: 30) '
        "{ text seed seedSource } }"
    )["generate"]
    seed = result["seed"]
    assert isinstance(seed, str) and result["seedSource"] == "derived"  # exact past 2^53
    args = ["--model", "stories260K", "-i", "Lily", "-t", "1.0", "-n", "30", "--json"]
    copied = edgechain("generate", "--dir", network_dir, *args, "-s", seed)
    assert copied.code == 0, copied.err
    assert copied.json()["text"] == result["text"]
    # The CLI derives the same seed from the same certified state.
    derived = edgechain("generate", "--dir", network_dir, *args).json()
    assert (derived["seed"], derived["text"]) == (seed, result["text"])


def test_concurrent_streams_share_engine_calls_and_each_gets_its_solo_text(
    node: NodeProcess,
) -> None:
    def text(seed: int) -> str:
        events = stream_generation(
            node, model="stories260K", prompt=PROMPT, temperature=1.0, seed=seed, maxTokens=60
        )
        assert events[-1].event == "done", events[-1]
        return "".join(e.data["text"] for e in events[:-1])

    seeds = list(range(1, 7))
    solo = [text(seed) for seed in seeds]
    assert len(set(solo)) == len(seeds)
    before = generations(node)
    with ThreadPoolExecutor(len(seeds)) as pool:
        together = list(pool.map(text, seeds))
    after = generations(node)
    assert together == solo
    steps, calls = after["steps"] - before["steps"], after["engine_calls"] - before["engine_calls"]
    assert steps == len(seeds) * 61  # 60 tokens and the stop, each stream
    assert calls < steps  # streams that overlapped were stepped in one engine call
