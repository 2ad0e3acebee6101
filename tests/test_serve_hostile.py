"""Hostile but fair requests to the node (issue 26): a chunked body past the cap, websocket
messages of the wrong shape or size, invalid ``seed`` literals, invalid UTF-8 in SSE parameters.
Each gets its typed answer (status, close code or error event) and no traceback on the node's
stderr."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from serve_helpers import NodeProcess

from edgechain.node.request_guard import MAX_BODY_BYTES


def _stderr(node: NodeProcess) -> str:
    """What the node wrote to stderr so far (read at an offset: the file's own offset is the
    node's, which is still writing)."""
    fd = node.stderr.fileno()
    return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")


def _chunks(total: int) -> Iterator[bytes]:
    yield b'{"query": "{ models { name } }", "pad": "'
    sent = 0
    while sent < total:
        yield b"x" * 65536
        sent += 65536
    yield b'"}'


def test_a_chunked_body_over_the_cap_gets_413_not_a_traceback(node: NodeProcess) -> None:
    response = httpx.post(
        node.graphql_url,
        content=_chunks(MAX_BODY_BYTES + 65536),  # no length: sent chunked
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "RequestRefused" and "over" in error["message"]
    small = httpx.post(
        node.graphql_url,
        content=_chunks(1000),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert small.status_code == 200 and small.json()["data"] == {"models": []}
    assert "Traceback" not in _stderr(node)


@contextlib.contextmanager
def _ws(node: NodeProcess) -> Iterator[Any]:
    from websockets.sync.client import connect

    url = "ws" + node.base_url.removeprefix("http") + node.app_path
    with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=30, max_size=None) as ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "connection_ack"
        yield ws


@pytest.mark.parametrize(
    "message",
    [
        {"type": "subscribe", "id": "1", "payload": "not an object"},
        {"type": "subscribe", "id": "1", "payload": ["x"]},
        {"type": "subscribe", "id": "1", "payload": {"query": 5}},
        {"type": "subscribe", "id": 1, "payload": {"query": "{ models { name } }"}},
        {"type": "subscribe", "id": "1", "payload": {"query": "{ x }", "variables": [1]}},
        ["not", "an", "object"],
    ],
)
def test_a_malformed_websocket_message_closes_with_4400(node: NodeProcess, message) -> None:
    from websockets.exceptions import ConnectionClosed

    with _ws(node) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.send(json.dumps(message))
        ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    assert "Traceback" not in _stderr(node)


def test_a_websocket_message_over_the_body_cap_is_refused(node: NodeProcess) -> None:
    from websockets.exceptions import ConnectionClosed

    query = {"query": "{ models { name } }", "pad": "x" * (MAX_BODY_BYTES + 1)}
    with _ws(node) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": query}))
        ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big


@pytest.mark.parametrize("literal", ["-1", '"18446744073709551616"', "1.5", '"x"', "true"])
def test_an_invalid_seed_literal_is_an_invalid_query_and_no_traceback(
    node: NodeProcess, literal: str
) -> None:
    query = f'{{ generate(model: "m", prompt: "p", seed: {literal}) {{ text }} }}'
    body = node.graphql(query)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "InvalidQuery", error
    assert "Traceback" not in _stderr(node)


@pytest.mark.parametrize("prompt", ["%FF%FE", "%ED%A0%80", "a%C3"])
def test_sse_text_that_is_not_utf8_is_invalid_text(node: NodeProcess, prompt: str) -> None:
    url = f"{node.generate_url}?model=stories260K&prompt={prompt}"
    with httpx.stream("GET", url, timeout=60) as response:
        text = response.read().decode()
    assert "event: error" in text, text
    data = json.loads(text.split("data: ", 1)[1])
    assert data["code"] == "InvalidText" and "prompt" in data["message"], data
    assert "token" not in text.split("event: error")[0]


def test_the_node_closes_a_connection_whose_request_head_never_completes(
    node: NodeProcess,
) -> None:
    import socket

    from edgechain.node.connection_deadline import REQUEST_HEAD_TIMEOUT_S

    port = int(node.base_url.rsplit(":", 1)[1])
    bound = REQUEST_HEAD_TIMEOUT_S + 20  # the client's wait is bounded; the close ends it
    with socket.create_connection(("127.0.0.1", port), timeout=bound) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never the blank line
        assert conn.recv(4096) == b""  # closed by the node, not by our timeout
