"""A client that sends its request head slowly is cut off; one whose head arrived is not (issue
26). The node's protocol (edgechain/node/connection_deadline.py) runs here in uvicorn with a short
deadline, against a loopback client whose every wait is bounded: it waits for the server to
close, never sleeps."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn

BOUND_S = 30.0  # the longest any client read here may wait


async def _app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if scope["path"] == "/slow":  # a response that lasts longer than the deadline
        for _ in range(3):
            await asyncio.sleep(0.5)
            await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
    await send({"type": "http.response.body", "body": b"done\n"})


@pytest.fixture
def server() -> Iterator[int]:
    from edgechain.node.connection_deadline import head_deadline_protocol

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    config = uvicorn.Config(
        _app, http=head_deadline_protocol(0.5), log_level="critical", lifespan="off"
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        with socket.create_connection(sock.getsockname(), timeout=BOUND_S) as probe:
            probe.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert probe.recv(4096).startswith(b"HTTP/1.1 200")  # serving
        yield sock.getsockname()[1]
    finally:
        running.should_exit = True
        thread.join(BOUND_S)
        sock.close()


def _read_until_closed(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(4096):  # b"" once the server closed; a timeout fails the test
        data += chunk
    return data


def test_a_request_head_sent_too_slowly_is_cut_off(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=BOUND_S) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        assert _read_until_closed(conn) == b""


def test_an_idle_connection_that_sends_nothing_is_cut_off(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=BOUND_S) as conn:
        assert _read_until_closed(conn) == b""


def test_a_response_longer_than_the_deadline_is_not_cut(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=BOUND_S) as conn:
        conn.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = _read_until_closed(conn)
    assert data.startswith(b"HTTP/1.1 200") and data.count(b"tick") == 3 and b"done" in data
