"""WeightServer: serving, counting and each fault knob, seen from a plain HTTP client."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
from service_helpers import MODELS, TOKENIZER

from edgechain.testing.weight_server import HostFault, WeightServer

TOKENIZER_BYTES = (MODELS / TOKENIZER).read_bytes()


def get(url: str, **kwargs: object) -> httpx.Response:
    return httpx.get(url, trust_env=False, timeout=5, **kwargs)  # type: ignore[arg-type]


def test_serves_a_directory_on_loopback_and_counts_requests() -> None:
    with WeightServer(MODELS) as srv:
        assert srv.base_url.startswith("http://127.0.0.1:")
        for _ in range(2):
            response = get(srv.url(TOKENIZER))
            assert response.status_code == 200
            assert response.content == TOKENIZER_BYTES
            assert response.headers["content-length"] == str(len(TOKENIZER_BYTES))
        assert srv.request_count(TOKENIZER) == 2
        assert srv.request_count("stories260K.bin") == 0
        srv.reset_counts()
        assert srv.request_count() == 0


def test_serves_a_mapping_and_accepts_new_entries() -> None:
    with WeightServer({"a.bin": b"alpha"}) as srv:
        assert get(srv.url("a.bin")).content == b"alpha"
        srv.put("b.bin", b"beta")
        assert get(srv.url("b.bin")).content == b"beta"


def test_unknown_names_and_paths_outside_the_directory_are_404(tmp_path: Path) -> None:
    (tmp_path / "inside.bin").write_bytes(b"in")
    (tmp_path.parent / "outside.bin").write_bytes(b"out")
    with WeightServer(tmp_path) as srv:
        assert get(srv.url("missing.bin")).status_code == 404
        # A raw request line: HTTP clients would normalize the "..".
        with socket.create_connection(("127.0.0.1", srv.port)) as conn:
            conn.sendall(b"GET /../outside.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.recv(100).startswith(b"HTTP/1.1 404")
        assert get(srv.url("inside.bin")).content == b"in"


def test_stop_releases_the_port() -> None:
    srv = WeightServer({"a": b"x"}).start()
    port = srv.port
    srv.stop()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_corrupt_flips_one_byte() -> None:
    with WeightServer(MODELS) as srv:
        srv.inject(TOKENIZER, HostFault(corrupt_offset=10))
        body = get(srv.url(TOKENIZER)).content
    diff = [i for i, (a, b) in enumerate(zip(body, TOKENIZER_BYTES, strict=True)) if a != b]
    assert diff == [10]


def test_extra_bytes_and_chunked_encoding() -> None:
    with WeightServer({"a": b"abc"}) as srv:
        srv.inject("a", HostFault(extra_bytes=2, chunked=True))
        response = get(srv.url("a"))
    assert response.content == b"abc\xa5\xa5"
    assert "content-length" not in response.headers
    assert response.headers["transfer-encoding"] == "chunked"


def test_truncate_announces_the_full_length_then_closes() -> None:
    with WeightServer({"a": b"x" * 1000}) as srv:
        srv.inject("a", HostFault(truncate_to=10))
        with pytest.raises(httpx.RemoteProtocolError):
            get(srv.url("a"))


def test_status_redirect_and_times() -> None:
    with WeightServer({"a": b"abc", "b": b"bee"}) as srv:
        srv.inject("a", HostFault(status=503, times=1))
        assert get(srv.url("a")).status_code == 503
        assert get(srv.url("a")).content == b"abc"  # the fault was used up
        srv.inject("a", HostFault(redirect_to="/b"))
        response = get(srv.url("a"))
        assert response.status_code == 302 and response.headers["location"] == "/b"
        assert get(srv.url("a"), follow_redirects=True).content == b"bee"
        srv.inject("a", None)
        assert get(srv.url("a")).content == b"abc"


def test_delay_holds_the_response() -> None:
    with WeightServer({"a": b"abc"}) as srv:
        srv.inject("a", HostFault(delay=0.3))
        start = time.monotonic()
        assert get(srv.url("a")).content == b"abc"
        assert time.monotonic() - start >= 0.3
