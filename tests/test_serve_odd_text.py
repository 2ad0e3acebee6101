"""The node's publishModel/retireModel (and model) refuse text that is not UTF-8 with a typed
error, never an InternalError or HTTP 500, and certify nothing.

The operation (or query) refuses it as InvalidText naming the field; the node screens request
bodies first and refuses the whole body (HTTP 400, InvalidText naming the variable).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from serve_helpers import NodeProcess, start_node, stop_node

from edgechain.client import Client

PUBLISH = """
mutation($n: String!, $v: String!, $w: FileInput!, $t: FileInput!, $d: String, $l: String) {
  publishModel(name: $n, version: $v, weights: $w, tokenizer: $t, description: $d, license: $l) {
    name
  }
}
"""
RETIRE = "mutation($n: String!, $v: String!) { retireModel(name: $n, version: $v) { height } }"
MODEL = "query($n: String!, $v: String) { model(name: $n, version: $v) { name } }"
FILE = {"blake3": "ab" * 32, "size": 1000, "urls": ["http://127.0.0.1:9/f"]}
LONE = "\ud800"  # JSON can carry it ("\\ud800"); it has no UTF-8 encoding
ARGV = "\udcff"  # what an undecodable byte becomes in Python


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    directory = tmp_path_factory.mktemp("odd-text") / "net"
    Client.up(directory, validators=4).close()
    node = start_node(directory)
    try:
        yield node
    finally:
        stop_node(node)


def _post(node: NodeProcess, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    # json.dumps escapes a lone surrogate as \udXXX, which is valid JSON
    response = httpx.post(
        node.graphql_url,
        content=json.dumps({"query": query, "variables": variables}),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code in (200, 400), response.text
    return response.json()


def _refused_as_text(body: dict[str, Any], field: str) -> None:
    [error] = body["errors"]
    assert error["extensions"]["code"] == "InvalidText", error
    assert error["extensions"]["exitCode"] == 3
    message = error["message"]
    if "not valid UTF-8 text" in message:  # refused where the operation or query is built
        assert field in message
    else:  # refused with the request body, before any resolver ran, naming the variable
        assert "variables." in message and "not valid Unicode text" in message, message


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"n": LONE}, "model name"),
        ({"n": "m" + ARGV}, "model name"),
        ({"v": LONE}, "model version"),
        ({"d": "a" + LONE}, "description"),
        ({"l": LONE}, "license"),
        ({"w": {**FILE, "urls": ["http://127.0.0.1:9/" + LONE]}}, "file URL"),
        ({"t": {**FILE, "blake3": LONE * 64}}, "file hash"),
    ],
)
def test_publish_with_odd_text_is_invalid_text(
    node: NodeProcess, variables: dict[str, Any], field: str
) -> None:
    body = _post(node, PUBLISH, {"n": "m", "v": "1", "w": FILE, "t": FILE, **variables})
    _refused_as_text(body, field)


@pytest.mark.parametrize(("query", "variables"), [(RETIRE, {"v": "1"}), (MODEL, {"v": None})])
def test_retire_and_model_with_odd_text_are_invalid_text(
    node: NodeProcess, query: str, variables: dict[str, Any]
) -> None:
    for name in (LONE, ARGV):
        _refused_as_text(_post(node, query, {"n": name, **variables}), "model name")


def test_nothing_was_certified(node: NodeProcess) -> None:
    body = _post(node, "{ blocks { height } }", {})
    assert body == {"data": {"blocks": []}}
