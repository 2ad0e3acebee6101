"""The node refuses what a page on another site could make a browser send: a foreign Host (DNS
rebinding) or Origin, a non-JSON POST (a form, ``text/plain``), an oversized body; websocket
upgrades get the same Origin check. ``GET /`` shows no filesystem path."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from serve_helpers import (
    NodeProcess,
)

from edgechain.node.request_guard import MAX_BODY_BYTES, RequestGuard

RETIRE = 'mutation { retireModel(name: "x", version: "1") { height } }'
MODELS = {"query": "{ models { name } }"}


def port(node: NodeProcess) -> int:
    return int(node.base_url.rsplit(":", 1)[1])


def assert_refused(response: httpx.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "RequestRefused"
    assert fragment in error["message"]


def test_a_text_plain_mutation_from_a_foreign_origin_is_refused(node: NodeProcess) -> None:
    # What a form post or a no-preflight fetch from evil.example sends.
    before = node.data("{ blocks { height } }")["blocks"]
    response = httpx.post(
        node.graphql_url,
        content=json.dumps({"query": RETIRE}),
        headers={"content-type": "text/plain", "origin": "http://evil.example"},
    )
    assert response.status_code in (403, 415)
    assert response.json()["errors"][0]["extensions"]["code"] == "RequestRefused"
    assert node.data("{ blocks { height } }")["blocks"] == before


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_a_post_must_be_json(node: NodeProcess, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = httpx.post(node.graphql_url, content=json.dumps(MODELS), headers=headers)
    assert_refused(response, 415, "must be application/json")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/graphql-response+json",
        "application/graphql+json",
    ],
)
def test_json_media_types_are_accepted(node: NodeProcess, content_type: str) -> None:
    response = httpx.post(
        node.graphql_url, content=json.dumps(MODELS), headers={"content-type": content_type}
    )
    assert response.status_code == 200 and response.json()["data"] == {"models": []}


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "http://127.0.0.1:1", "null", "http://localhost.evil.example:{p}"],
)
def test_a_foreign_origin_is_refused_even_as_json(node: NodeProcess, origin: str) -> None:
    response = httpx.post(
        node.graphql_url, json=MODELS, headers={"origin": origin.format(p=port(node))}
    )
    assert_refused(response, 403, "Origin")


@pytest.mark.parametrize("host", ["evil.example:{p}", "127.0.0.1:1", "127.0.0.1", "attacker"])
def test_a_foreign_host_is_refused_dns_rebinding(node: NodeProcess, host: str) -> None:
    for send in (
        lambda h: httpx.get(node.base_url + "/", headers=h),
        lambda h: httpx.post(node.graphql_url, json=MODELS, headers=h),
    ):
        assert_refused(send({"host": host.format(p=port(node))}), 403, "DNS rebinding")


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST"])
def test_the_nodes_own_names_are_accepted(node: NodeProcess, name: str) -> None:
    own = f"{name}:{port(node)}"
    headers = {"host": own, "origin": f"http://{own}"}
    assert httpx.post(node.graphql_url, json=MODELS, headers=headers).status_code == 200
    assert httpx.get(node.base_url + "/", headers=headers).status_code == 200


def test_an_oversized_body_is_refused(node: NodeProcess) -> None:
    body = json.dumps({"query": "{ models { name } }", "pad": "x" * MAX_BODY_BYTES})
    response = httpx.post(
        node.graphql_url, content=body, headers={"content-type": "application/json"}
    )
    assert_refused(response, 413, "over")


def test_a_websocket_from_a_foreign_origin_is_refused(node: NodeProcess) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = "ws" + node.base_url.removeprefix("http") + node.app_path
    with pytest.raises(InvalidStatus) as refused:
        connect(url, subprotocols=["graphql-transport-ws"], origin="http://evil.example")
    assert refused.value.response.status_code == 403
    own = f"http://127.0.0.1:{port(node)}"
    with connect(url, subprotocols=["graphql-transport-ws"], origin=own) as ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "connection_ack"


def test_the_index_shows_no_filesystem_path(node: NodeProcess, network_dir: Path) -> None:
    response = httpx.get(node.base_url + "/")
    assert response.json()["network"] == network_dir.name
    assert str(network_dir.parent) not in response.text


def test_a_wildcard_listener_also_accepts_the_machines_name() -> None:
    import socket

    guard = RequestGuard.for_listening("0.0.0.0", 8080)
    assert socket.gethostname().lower() in guard.hosts and "localhost" in guard.hosts
    named = RequestGuard.for_listening("node.lan", 8080)
    assert "node.lan" in named.hosts and "127.0.0.1" in named.hosts
