"""`edgechain serve` as a subprocess: the index, the registry's GraphQL schema, typed errors,
blocks committed by other processes, the port-in-use and missing-network errors."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from serve_helpers import (
    PUBLISH,
    STORIES_DIR,
    NodeProcess,
    file_input,
    free_port,
    publish_files,
    serve_command,
    start_node,
    stop_node,
)

from edgechain.client import Client
from edgechain.contract.operations import FileRef, RegisterModel

UNUSED_BASE_URL = "http://127.0.0.1:9"  # registry tests never fetch
WEIGHTS_URL = f"{UNUSED_BASE_URL}/stories260K.bin"
TOKENIZER_URL = f"{UNUSED_BASE_URL}/tok512.bin"


def publish(node: NodeProcess, name: str, version: str = "1") -> dict:
    weights, tokenizer = STORIES_DIR / "stories260K.bin", STORIES_DIR / "tok512.bin"
    return publish_files(node, name, weights, tokenizer, UNUSED_BASE_URL, version)


def test_index_lists_the_default_chain_its_registry_and_story_book(node: NodeProcess) -> None:
    index = httpx.get(node.base_url + "/").json()
    [chain] = index["chains"]
    assert chain["name"] == "default" and len(chain["chainId"]) == 64
    app, book = chain["applications"]
    assert app["kind"] == "model-registry"
    assert app["graphql"] == f"/chains/{chain['chainId']}/applications/{app['applicationId']}"
    assert app["generate"] == app["graphql"] + "/generate"
    assert book["kind"] == "story-book" and book["applicationId"] != app["applicationId"]
    assert book["graphql"] == f"/chains/{chain['chainId']}/applications/{book['applicationId']}"
    assert "generate" not in book  # only the registry streams generations
    assert set(index["generations"]) == {
        "running",
        "completed",
        "failed",
        "cancelled",
        "engine_calls",
        "steps",
    }


def test_publish_model_mutation_certifies_and_models_lists_it(node: NodeProcess) -> None:
    published = publish(node, "pub-a")
    assert published["name"] == "pub-a" and published["version"] == "1"
    assert published["retired"] is False
    assert len(published["signers"]) >= 3  # a quorum of the 4 validators
    # U64 is a decimal string on output
    assert published["weights"]["size"] == str((STORIES_DIR / "stories260K.bin").stat().st_size)
    assert published["weights"]["urls"] == [WEIGHTS_URL]
    names = [(m["name"], m["version"]) for m in node.data("{ models { name version } }")["models"]]
    assert ("pub-a", "1") in names


def test_model_query_returns_hashes_sizes_urls_height_block_and_signers(
    node: NodeProcess,
) -> None:
    published = publish(node, "pub-b", "2")
    query = """query ($name: String!) { model(name: $name) {
        name version format description license height blockHash signers chainId
        applicationId registeredHeight
        weights { blake3 size urls } tokenizer { blake3 size urls } } }"""
    model = node.data(query, {"name": "pub-b"})["model"]
    expected_weights = file_input(STORIES_DIR / "stories260K.bin", WEIGHTS_URL)
    expected_tokenizer = file_input(STORIES_DIR / "tok512.bin", TOKENIZER_URL)
    for got, expected in (
        (model["weights"], expected_weights),
        (model["tokenizer"], expected_tokenizer),
    ):
        assert got == {**expected, "size": str(expected["size"])}  # U64: a decimal string
    assert model["version"] == "2" and model["format"] == "llama2c"
    assert (model["description"], model["license"]) == ("tiny stories", "MIT")
    assert model["height"] == published["height"] == model["registeredHeight"]
    assert model["blockHash"] == published["blockHash"] and len(model["blockHash"]) == 64
    assert model["signers"] == published["signers"]
    assert (model["chainId"], model["applicationId"]) == (node.chain_id, node.application_id)


def test_blocks_list_heights_hashes_operations_and_signers(node: NodeProcess) -> None:
    published = publish(node, "pub-c")
    blocks = node.data(
        """{ blocks(start: 0) { height hash previousHash timestamp signer signers
             operations { application name summary } } }"""
    )["blocks"]
    assert [b["height"] for b in blocks] == list(range(len(blocks)))
    assert blocks[0]["previousHash"] is None
    for earlier, later in zip(blocks, blocks[1:], strict=False):
        assert later["previousHash"] == earlier["hash"]
    block = blocks[published["height"]]
    assert block["hash"] == published["blockHash"]
    assert block["signers"] == published["signers"]
    assert block["operations"] == [
        {
            "application": "model-registry",
            "name": "RegisterModel",
            "summary": "RegisterModel pub-c version 1",
        }
    ]
    window = node.data("{ blocks(start: 1, end: 2) { height } }")["blocks"]
    assert window == [{"height": 1}]


def test_unknown_model_is_a_typed_model_not_found_error(node: NodeProcess) -> None:
    body = node.graphql('{ model(name: "no-such-model") { name } }')
    [error] = body["errors"]
    assert error["extensions"]["code"] == "ModelNotFound"
    assert error["extensions"]["exitCode"] == 6
    assert error["message"].startswith("no model named no-such-model in certified state")
    assert "(registered: " in error["message"]  # the names it could have been
    assert error["path"] == ["model"]


def test_a_rejected_publish_is_a_typed_operation_rejected_error(node: NodeProcess) -> None:
    bad = {"blake3": "not-a-hash", "size": 10, "urls": [WEIGHTS_URL]}
    body = node.graphql(
        PUBLISH,
        {"name": "pub-bad", "version": "1", "w": bad, "t": bad},
    )
    [error] = body["errors"]
    assert error["extensions"]["code"] == "OperationRejected"
    assert "blake3" in error["message"]
    assert "pub-bad" not in str(node.data("{ models { name } }"))


def test_retire_model_mutation_then_model_is_retired(node: NodeProcess) -> None:
    publish(node, "pub-r")
    retired = node.data('mutation { retireModel(name: "pub-r", version: "1") { height signers } }')
    assert len(retired["retireModel"]["signers"]) >= 3
    active = node.data("{ models(includeRetired: false) { name } }")["models"]
    assert "pub-r" not in [m["name"] for m in active]
    everything = node.data("{ models { name retired retiredHeight } }")["models"]
    [entry] = [m for m in everything if m["name"] == "pub-r"]
    assert entry["retired"] is True
    assert entry["retiredHeight"] == retired["retireModel"]["height"]
    [error] = node.graphql('{ model(name: "pub-r", version: "1") { name } }')["errors"]
    assert error["extensions"]["code"] == "ModelRetired"


def test_blocks_committed_by_another_process_are_seen(node: NodeProcess, network_dir: Path) -> None:
    ref = FileRef("ab" * 32, 123, (WEIGHTS_URL,))
    with Client.open(network_dir) as other:  # as the CLI would, from outside the node
        other.register_model(RegisterModel("pub-outside", "1", weights=ref, tokenizer=ref))
    model = node.data('{ model(name: "pub-outside") { weights { blake3 size } } }')["model"]
    assert model["weights"] == {"blake3": "ab" * 32, "size": "123"}
    # ... and the node can still commit on top of what the other process added.
    assert publish(node, "pub-after")["name"] == "pub-after"


def test_get_runs_queries_but_refuses_mutations(node: NodeProcess) -> None:
    ok = httpx.get(node.graphql_url, params={"query": "{ models { name } }"})
    assert ok.status_code == 200 and "models" in ok.json()["data"]
    mutation = 'mutation { retireModel(name: "x", version: "1") { height } }'
    refused = httpx.get(node.graphql_url, params={"query": mutation})
    assert refused.status_code == 405
    assert refused.json()["errors"][0]["extensions"]["code"] == "UsageError"


def test_get_from_a_browser_returns_graphiql_served_offline(node: NodeProcess) -> None:
    page = httpx.get(node.graphql_url, headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "GraphiQL" in page.text and node.app_path in page.text
    # Nothing is loaded from elsewhere: every script and stylesheet is the node's own.
    sources = re.findall(r'(?:<script src|<link rel="stylesheet" href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/static/graphiql/") for s in sources), sources
    for source in sources:
        served = httpx.get(node.base_url + source)
        assert served.status_code == 200 and len(served.content) > 500, source


def test_get_root_from_a_browser_is_the_chain_graphiql_linking_each_application(
    node: NodeProcess,
) -> None:
    page = httpx.get(node.base_url + "/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "GraphiQL" in page.text and "chains" in page.text
    assert f'href="{node.app_path}"' in page.text
    app_page = httpx.get(node.graphql_url, headers={"Accept": "text/html"})
    assert 'href="/"' in app_page.text  # and back
    # API clients keep the JSON.
    assert httpx.get(node.base_url + "/").json()["chains"][0]["applications"]


def test_unknown_application_is_404(node: NodeProcess) -> None:
    response = httpx.post(
        f"{node.base_url}/chains/{node.chain_id}/applications/{'0' * 64}",
        json={"query": "{ models { name } }"},
    )
    assert response.status_code == 404
    assert "no application" in response.json()["errors"][0]["message"]


def test_syntax_errors_are_graphql_errors(node: NodeProcess) -> None:
    body = node.graphql("{ models { name ")
    assert body["data"] is None
    assert "Syntax Error" in body["errors"][0]["message"]


def test_second_server_on_the_same_port_exits_with_one_line(
    node: NodeProcess, network_dir: Path
) -> None:
    port = int(node.base_url.rsplit(":", 1)[1])
    result = subprocess.run(
        serve_command(network_dir, port), capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert result.stderr == f"error: port {port} on 127.0.0.1 is already in use\n"
    assert result.stdout == ""
    assert httpx.get(node.base_url + "/").status_code == 200  # the first one is unharmed


def test_missing_network_directory_is_network_not_found(tmp_path: Path) -> None:
    result = subprocess.run(
        serve_command(tmp_path / "nothing-here", free_port()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 4  # NetworkNotFound's exit code
    missing = tmp_path / "nothing-here"
    assert result.stderr == f"error: no edgechain network in {missing} (create one first)\n"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_node_cleanly(network_dir: Path, sig: signal.Signals) -> None:
    node = start_node(network_dir)
    code, err = stop_node(node, sig)
    assert code == 0, err
    assert err == ""


def test_a_bad_block_range_is_a_typed_invalid_parameter_error(node: NodeProcess) -> None:
    [error] = node.graphql("{ blocks(start: 3, end: 1) { height } }")["errors"]
    assert error["extensions"]["code"] == "InvalidParameter"
    assert "start=3, end=1" in error["message"]


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("send", "message"),
    [
        (lambda url: httpx.get(url), '"query"'),
        (lambda url: httpx.post(url, content=b"{not json", headers=JSON), "not valid JSON"),
        (lambda url: httpx.post(url, json={"query": "{ models { name } }", "variables": [1]}),
         '"variables" must be a JSON object'),
    ],
)  # fmt: skip
def test_malformed_requests_are_400_with_a_usage_error(
    node: NodeProcess, send: Callable[[str], httpx.Response], message: str
) -> None:
    response = send(node.graphql_url)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "UsageError"
    assert message in error["message"]
