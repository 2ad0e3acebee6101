"""Fetcher.download: a publisher's unverified download, under the same policy as fetch."""

from __future__ import annotations

from collections.abc import Iterator

import blake3
import pytest

from edgechain.errors import FetchError
from edgechain.service.fetch import Fetcher, FetchPolicy, FetchReason
from edgechain.testing.weight_server import HostFault, WeightServer

BODY = bytes(range(256)) * 1000


@pytest.fixture
def server() -> Iterator[WeightServer]:
    with WeightServer({"w.bin": BODY, "other.bin": b"other"}) as srv:
        yield srv


def test_download_returns_the_body_and_its_blake3(server: WeightServer) -> None:
    with Fetcher() as fetcher:
        data, digest = fetcher.download(server.url("w.bin"))
    assert data == BODY
    assert digest == blake3.blake3(BODY).hexdigest()


def test_download_follows_redirects_and_checks_each_hop(server: WeightServer) -> None:
    server.inject("w.bin", HostFault(redirect_to="/other.bin"))
    with Fetcher() as fetcher:
        data, digest = fetcher.download(server.url("w.bin"))
    assert (data, digest) == (b"other", blake3.blake3(b"other").hexdigest())

    server.inject("w.bin", HostFault(redirect_to="http://example.com/w.bin"))
    with Fetcher() as fetcher, pytest.raises(FetchError) as info:
        fetcher.download(server.url("w.bin"))
    assert info.value.reason == FetchReason.HOST_NOT_ALLOWED


def test_download_enforces_the_size_cap_mid_stream(server: WeightServer) -> None:
    server.inject("w.bin", HostFault(chunked=True))  # no Content-Length: the cap acts on the body
    with Fetcher(FetchPolicy(max_bytes=1000)) as fetcher, pytest.raises(FetchError) as info:
        fetcher.download(server.url("w.bin"))
    assert info.value.reason == FetchReason.TOO_LARGE


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com/w.bin", FetchReason.HOST_NOT_ALLOWED),
        ("ftp://127.0.0.1/w.bin", FetchReason.SCHEME_NOT_ALLOWED),
    ],
)
def test_download_refuses_urls_the_policy_forbids(url: str, reason: FetchReason) -> None:
    with Fetcher() as fetcher, pytest.raises(FetchError) as info:
        fetcher.download(url)
    assert info.value.reason == reason


def test_download_reports_http_errors(server: WeightServer) -> None:
    with Fetcher() as fetcher, pytest.raises(FetchError) as info:
        fetcher.download(server.url("missing.bin"))
    assert info.value.reason == FetchReason.HTTP_STATUS
    assert "404" in str(info.value)
