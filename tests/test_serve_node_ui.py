"""The node's surroundings: the access log (and ``--quiet``), no traceback when a client drops a
stream, the chain-level GraphQL at ``/``, and Linera examples/llm's ``prompt`` query."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_helpers import (
    STORIES_DIR,
    NodeProcess,
    publish_files,
    running_node,
    sse_events,
    start_node,
    stop_node,
)

from edgechain.client import Client
from edgechain.service.engine.wasm import PACKAGED_GUEST
from edgechain.testing.weight_server import WeightServer

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def weights() -> Iterator[WeightServer]:
    with WeightServer(STORIES_DIR) as server:
        yield server


def publish(node: NodeProcess, weights: WeightServer, name: str = "stories260K") -> None:
    checkpoint, tokenizer = STORIES_DIR / "stories260K.bin", STORIES_DIR / "tok512.bin"
    publish_files(node, name, checkpoint, tokenizer, weights.base_url)


@pytest.fixture(scope="module")
def node(network_dir: Path, weights: WeightServer) -> Iterator[NodeProcess]:
    assert PACKAGED_GUEST.is_file(), "the wasm guest is missing: run scripts/build_guest.sh"
    with (
        tempfile.TemporaryFile("w+") as stdout,
        running_node(network_dir, stdout=stdout) as node,
    ):
        node.stdout = stdout  # type: ignore[attr-defined]
        publish(node, weights)
        yield node


def read(stream) -> str:  # noqa: ANN001 (a text file the node writes to)
    stream.seek(0)
    return stream.read()


def test_the_access_log_has_a_line_per_request(node: NodeProcess) -> None:
    httpx.get(node.base_url + "/?from=access-log-test")
    deadline = time.monotonic() + 10
    while "/?from=access-log-test" not in (log := read(node.stdout)):  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, log
        time.sleep(0.05)
    [line] = [x for x in log.splitlines() if "access-log-test" in x]
    assert '"GET /?from=access-log-test HTTP/1.1" 200' in line
    assert "Started server process" not in log + read(node.stderr)  # no start-up chatter


def test_quiet_silences_the_access_log(network_dir: Path) -> None:
    with tempfile.TemporaryFile("w+") as stdout:
        quiet = start_node(network_dir, extra=("--quiet",), stdout=stdout)
        try:
            for _ in range(3):
                assert httpx.get(quiet.base_url + "/").status_code == 200
        finally:
            code, err = stop_node(quiet)
        lines = read(stdout).splitlines()
    assert code == 0 and err == ""
    assert len(lines) == 1 and lines[0].startswith("edgechain node serving"), lines


def drop_a_subscription(node: NodeProcess) -> None:
    """Subscribe to a generation, read a token, then drop the connection without a word."""
    from websockets.sync.client import connect

    url = "ws" + node.base_url.removeprefix("http") + node.app_path
    query = (
        f'subscription {{ generate(model: "stories260K", prompt: "{PROMPT}", maxTokens: 250) '
        "{ ... on TokenUpdate { text } } }"
    )
    with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=30) as ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "connection_ack"
        ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        assert json.loads(ws.recv(timeout=60))["type"] == "next"
        ws.socket.close()  # no close frame, no unsubscribe


def test_a_client_dropping_a_stream_leaves_no_traceback(node: NodeProcess) -> None:
    params = {"model": "stories260K", "prompt": PROMPT, "maxTokens": 250, "temperature": 0}
    for _ in range(5):  # the noise came from a race: give it a few chances to show
        with httpx.stream("GET", node.generate_url, params=params, timeout=60) as response:
            assert next(sse_events(response)).event == "token"
        # dropped mid-stream: the node cancels the generation and must stay quiet about it
        drop_a_subscription(node)
    deadline = time.monotonic() + 30
    while httpx.get(node.base_url + "/").json()["generations"]["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # give a late log line the time to be written
    err = read(node.stderr)
    assert "Traceback" not in err and err == "", err


def chain_graphql(node: NodeProcess, query: str) -> dict:
    response = httpx.post(node.base_url + "/", json={"query": query}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_chain_graphql_lists_chains_blocks_certificates_and_applications(
    node: NodeProcess,
) -> None:
    data = chain_graphql(
        node,
        "{ chains { name chainId blocks headHash"
        " applications { kind applicationId graphql } } }",
    )["data"]
    [chain] = data["chains"]
    assert chain["chainId"] == node.chain_id and chain["blocks"] >= 1
    assert chain["applications"] == [
        {"kind": "model-registry", "applicationId": node.application_id, "graphql": node.app_path},
        {
            "kind": "story-book",
            "applicationId": node.story_path.rsplit("/", 1)[-1],
            "graphql": node.story_path,
        },
    ]
    prefix = node.chain_id[:12]
    body = chain_graphql(
        node,
        f'{{ blocks(chainId: "{prefix}") {{ height hash operations {{ name }} }}'
        f' certificates(chainId: "{prefix}", start: 0, end: 1) {{ height blockHash signers }}'
        f' applications(chainId: "default") {{ applicationId }}'
        f' chain(chainId: "{prefix}") {{ name blocks headHeight head }} }}',
    )["data"]
    assert body["blocks"][0]["operations"][0]["name"] == "RegisterModel"
    [certificate] = body["certificates"]
    assert certificate["blockHash"] == body["blocks"][0]["hash"]
    assert len(certificate["signers"]) >= 3  # a quorum of the 4 validators
    assert body["applications"] == [
        {"applicationId": node.application_id},
        {"applicationId": node.story_path.rsplit("/", 1)[-1]},
    ]
    assert body["chain"]["blocks"] == chain["blocks"]
    assert body["chain"]["headHeight"] == chain["blocks"] - 1
    assert body["chain"]["head"] == f"{chain['blocks'] - 1}:{chain['headHash']}"


def test_the_chain_graphql_types_its_errors_and_answers_get(node: NodeProcess) -> None:
    body = chain_graphql(node, '{ blocks(chainId: "nosuchchain") { height } }')
    assert body["errors"][0]["extensions"]["code"] == "UsageError"
    assert "no chain 'nosuchchain'" in body["errors"][0]["message"]
    got = httpx.get(node.base_url + "/", params={"query": "{ chains { name } }"})
    assert got.json() == {"data": {"chains": [{"name": "default"}]}}


def test_linera_llm_prompt_query_returns_the_generated_text(node: NodeProcess) -> None:
    """Linera's examples/llm client sends exactly this query and reads data.prompt."""
    response = httpx.post(
        node.graphql_url, json={"query": '{ prompt(prompt: "Once upon a time") }'}, timeout=60
    )
    text = response.json()["data"]["prompt"]
    generate = node.data(
        '{ generate(model: "stories260K", prompt: "Once upon a time") { text } }'
    )["generate"]
    assert isinstance(text, str) and text.strip() and text == generate["text"]


def test_prompt_takes_an_optional_model_and_types_its_errors(node: NodeProcess) -> None:
    text = node.data('{ prompt(prompt: "Once upon a time", model: "stories260K") }')["prompt"]
    assert text == node.data('{ prompt(prompt: "Once upon a time") }')["prompt"]
    body = node.graphql('{ prompt(prompt: "x", model: "missing") }')
    assert body["errors"][0]["extensions"]["code"] == "ModelNotFound"


def test_prompt_uses_the_latest_registered_model(
    network_dir: Path, weights: WeightServer, tmp_path: Path
) -> None:
    empty = tmp_path / "net"
    Client.up(empty, validators=4).close()
    second = start_node(empty)
    try:
        body = second.graphql('{ prompt(prompt: "Once") }')
        assert body["errors"][0]["extensions"]["code"] == "ModelNotFound"
        assert "publish one first" in body["errors"][0]["message"]
        publish(second, weights, "older")
        publish(second, weights, "newer")
        text = second.data('{ prompt(prompt: "Once") }')["prompt"]
        newer = second.data('{ generate(model: "newer", prompt: "Once") { text } }')
        older = second.data('{ generate(model: "older", prompt: "Once") { text } }')
        # Same weights, but the model's name enters the derived seed.
        assert text == newer["generate"]["text"] != older["generate"]["text"]
    finally:
        stop_node(second)


def test_the_startup_line_names_every_application(node: NodeProcess) -> None:
    [line] = read(node.stdout).splitlines()[:1]  # type: ignore[attr-defined]
    assert f"model-registry: {node.base_url}{node.app_path}" in line
    assert f"story-book: {node.base_url}{node.story_path}" in line


def test_an_application_url_takes_its_name_or_a_unique_prefix(node: NodeProcess) -> None:
    story_id = node.story_path.rsplit("/", 1)[-1]
    chain_prefix = node.chain_id[:10]
    canonical = node.data("{ stories { id } }", path=node.story_path)
    for path in (
        "/chains/default/applications/story-book",
        f"/chains/{chain_prefix}/applications/{story_id[:12]}",
    ):
        assert node.data("{ stories { id } }", path=path) == canonical, path
    registry = node.data('{ models { name } }', path="/chains/default/applications/model-registry")
    assert registry["models"][0]["name"] == "stories260K"
    missing = httpx.post(
        node.base_url + "/chains/default/applications/no-such-app", json={"query": "{ x }"}
    )
    assert missing.status_code == 404 and "serves no application no-such-app" in missing.text
