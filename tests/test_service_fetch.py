"""fetch_url / Fetcher: allow-list, size caps, timeouts, redirects, streaming hash checks."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import blake3
import httpx
import pytest
from service_helpers import MODEL, MODEL_BLAKE3, MODEL_SIZE, MODELS, TOKENIZER, TOKENIZER_BLAKE3

from edgechain.errors import FetchError, HashMismatch, InputError
from edgechain.service.fetch import (
    Fetcher,
    FetchPolicy,
    FetchReason,
    fetch_any,
    fetch_url,
)
from edgechain.testing.weight_server import HostFault, WeightServer


def fetch_model(fetcher: Fetcher, url: str, size: int | None = MODEL_SIZE) -> bytes:
    return fetcher.fetch(url, expected_blake3=MODEL_BLAKE3, expected_size=size)


def failed_fetch(server: WeightServer, fetcher: Fetcher, fault: HostFault) -> FetchError:
    """The FetchError of fetching the model from ``server`` while it misbehaves with ``fault``."""
    server.inject(MODEL, fault)
    with pytest.raises(FetchError) as info:
        fetch_model(fetcher, server.url(MODEL))
    return info.value


class CountingStream(httpx.SyncByteStream):
    """A response body that records how many of its chunks the client pulled."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk


def mock_fetcher(handler, policy: FetchPolicy | None = None) -> Fetcher:
    return Fetcher(policy, transport=httpx.MockTransport(handler))


# --- the happy path ------------------------------------------------------------------------------


def test_fetch_returns_the_verified_model_bytes(
    stories_server: WeightServer, fetcher: Fetcher
) -> None:
    data = fetch_model(fetcher, stories_server.url(MODEL))
    assert data == (MODELS / MODEL).read_bytes()
    assert stories_server.request_count(MODEL) == 1


def test_fetch_url_works_without_expected_size_and_with_uppercase_hash(
    stories_server: WeightServer,
) -> None:
    data = fetch_url(stories_server.url(TOKENIZER), expected_blake3=TOKENIZER_BLAKE3.upper())
    assert blake3.blake3(data).hexdigest() == TOKENIZER_BLAKE3


def test_chunked_body_without_content_length_is_accepted(
    stories_server: WeightServer, fetcher: Fetcher
) -> None:
    stories_server.inject(MODEL, HostFault(chunked=True))
    assert fetch_model(fetcher, stories_server.url(MODEL)) == (MODELS / MODEL).read_bytes()


def test_localhost_name_is_allowed_by_default(
    stories_server: WeightServer, fetcher: Fetcher
) -> None:
    url = f"http://localhost:{stories_server.port}/{MODEL}"
    assert len(fetch_model(fetcher, url)) == MODEL_SIZE


# --- wrong bytes ---------------------------------------------------------------------------------


def test_one_changed_byte_raises_hash_mismatch(
    stories_server: WeightServer, fetcher: Fetcher
) -> None:
    stories_server.inject(MODEL, HostFault(corrupt_offset=MODEL_SIZE // 2))
    with pytest.raises(HashMismatch) as info:
        fetch_model(fetcher, stories_server.url(MODEL))
    err = info.value
    assert err.expected == MODEL_BLAKE3
    assert err.actual is not None and err.actual != MODEL_BLAKE3
    assert err.url == stories_server.url(MODEL)
    assert MODEL_BLAKE3 in str(err) and err.actual in str(err)
    assert err.exit_code == 6


def test_truncated_body_under_a_full_content_length_fails_as_truncated(
    stories_server: WeightServer, fetcher: Fetcher
) -> None:
    error = failed_fetch(stories_server, fetcher, HostFault(truncate_to=1000))
    assert error.reason == FetchReason.TRUNCATED
    assert error.url == stories_server.url(MODEL)


def test_truncated_chunked_body_fails_as_truncated(
    stories_server: WeightServer, fetcher: Fetcher
) -> None:
    error = failed_fetch(stories_server, fetcher, HostFault(truncate_to=70_000, chunked=True))
    assert error.reason == FetchReason.TRUNCATED


def test_short_file_fails_as_truncated_before_reading_its_body() -> None:
    stream = CountingStream([b"x" * 10])
    fetcher = mock_fetcher(
        lambda request: httpx.Response(200, stream=stream, headers={"content-length": "10"})
    )
    with fetcher, pytest.raises(FetchError) as info:
        fetcher.fetch("http://127.0.0.1/m", expected_blake3=MODEL_BLAKE3, expected_size=100)
    assert info.value.reason == FetchReason.TRUNCATED
    assert stream.pulled == 0


def test_short_file_without_an_expected_size_is_a_hash_mismatch() -> None:
    with (
        WeightServer({"m.bin": (MODELS / MODEL).read_bytes()[:-1]}) as srv,
        pytest.raises(HashMismatch),
    ):
        fetch_url(srv.url("m.bin"), expected_blake3=MODEL_BLAKE3)


def test_short_chunked_body_is_truncated_against_the_expected_size() -> None:
    with WeightServer({"m.bin": b"abc"}) as srv, Fetcher() as fetcher:
        srv.inject("m.bin", HostFault(chunked=True))
        with pytest.raises(FetchError) as info:
            fetcher.fetch(srv.url("m.bin"), expected_blake3=MODEL_BLAKE3, expected_size=4)
    assert info.value.reason == FetchReason.TRUNCATED
    assert "got 3 bytes, expected 4" in str(info.value)


# --- too large -----------------------------------------------------------------------------------


def test_oversized_content_length_fails_before_reading_the_body() -> None:
    stream = CountingStream([b"x" * 1000] * 10)
    fetcher = mock_fetcher(
        lambda request: httpx.Response(200, stream=stream, headers={"content-length": "10000"})
    )
    with fetcher, pytest.raises(FetchError) as info:
        fetcher.fetch("http://127.0.0.1/m", expected_blake3=MODEL_BLAKE3, expected_size=5000)
    assert info.value.reason == FetchReason.TOO_LARGE
    assert "Content-Length 10000" in str(info.value)
    assert stream.pulled == 0


def test_body_growing_past_the_limit_is_aborted_mid_stream() -> None:
    stream = CountingStream([b"x" * 1000] * 100)  # no Content-Length
    policy = FetchPolicy(max_bytes=2500)
    fetcher = mock_fetcher(lambda request: httpx.Response(200, stream=stream), policy)
    with fetcher, pytest.raises(FetchError) as info:
        fetcher.fetch("http://127.0.0.1/m", expected_blake3=MODEL_BLAKE3)
    assert info.value.reason == FetchReason.TOO_LARGE
    assert stream.pulled <= 4  # stopped right after crossing 2500 bytes, not at 100 chunks


def test_oversized_response_with_content_length_from_a_real_server(
    stories_server: WeightServer, fetcher: Fetcher
) -> None:
    error = failed_fetch(stories_server, fetcher, HostFault(extra_bytes=1))
    assert error.reason == FetchReason.TOO_LARGE


def test_oversized_chunked_response_from_a_real_server(
    stories_server: WeightServer, fetcher: Fetcher
) -> None:
    error = failed_fetch(stories_server, fetcher, HostFault(extra_bytes=5_000_000, chunked=True))
    assert error.reason == FetchReason.TOO_LARGE
    assert "body exceeds the limit of 1056540 bytes" in str(error)


def test_policy_cap_applies_without_an_expected_size(stories_server: WeightServer) -> None:
    with Fetcher(FetchPolicy(max_bytes=1000)) as fetcher, pytest.raises(FetchError) as info:
        fetch_model(fetcher, stories_server.url(MODEL), size=None)
    assert info.value.reason == FetchReason.TOO_LARGE


def test_expected_size_over_the_cap_fails_without_a_request() -> None:
    calls: list[httpx.Request] = []
    policy = FetchPolicy(max_bytes=10)
    fetcher = mock_fetcher(lambda r: calls.append(r) or httpx.Response(200), policy)
    with fetcher, pytest.raises(FetchError) as info:
        fetcher.fetch("http://127.0.0.1/m", expected_blake3=MODEL_BLAKE3, expected_size=11)
    assert info.value.reason == FetchReason.TOO_LARGE
    assert calls == []


# --- allow-list and schemes ----------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "https://example.com/model.bin",
        "http://10.0.0.1/model.bin",
        "http://127.0.0.2/model.bin",
        "http://localhost.example.com/model.bin",
        "http://[::2]/model.bin",
    ],
)
def test_hosts_off_the_allow_list_are_rejected_without_network_access(
    url: str, no_network: None
) -> None:
    with pytest.raises(FetchError) as info:
        fetch_url(url, expected_blake3=MODEL_BLAKE3)
    assert info.value.reason == FetchReason.HOST_NOT_ALLOWED
    assert info.value.url == url
    assert "host not allowed" in str(info.value)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/m", "file:///etc/passwd", "127.0.0.1/m"])
def test_schemes_other_than_http_and_https_are_rejected(url: str, no_network: None) -> None:
    with pytest.raises(FetchError) as info:
        fetch_url(url, expected_blake3=MODEL_BLAKE3)
    assert info.value.reason in {FetchReason.SCHEME_NOT_ALLOWED, FetchReason.BAD_URL}


def test_loopback_literals_pass_the_policy_check() -> None:
    policy = FetchPolicy()
    for url in ("http://127.0.0.1:8/x", "http://[::1]:8/x", "https://LOCALHOST/x"):
        assert policy.check_url(url).host in {"127.0.0.1", "::1", "localhost"}


def test_allow_list_is_configurable() -> None:
    policy = FetchPolicy().with_hosts("weights.example.test")
    with mock_fetcher(lambda r: httpx.Response(200, content=b"abc"), policy) as fetcher:
        data = fetcher.fetch(
            "https://weights.example.test/m", expected_blake3=blake3.blake3(b"abc").hexdigest()
        )
    assert data == b"abc"
    with pytest.raises(FetchError):
        FetchPolicy(allowed_hosts=frozenset({"weights.example.test"})).check_url(
            "http://127.0.0.1/m"
        )


def test_a_malformed_expected_hash_is_an_input_error(no_network: None) -> None:
    with pytest.raises(InputError):
        fetch_url("http://127.0.0.1/m", expected_blake3="abc")


# --- unreachable and slow servers ----------------------------------------------------------------


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_is_a_connection_failure() -> None:
    url = f"http://127.0.0.1:{unused_port()}/{MODEL}"
    with pytest.raises(FetchError) as info:
        fetch_url(url, expected_blake3=MODEL_BLAKE3)
    assert info.value.reason == FetchReason.CONNECTION_FAILED
    assert "refused" in str(info.value).lower()


def test_a_server_that_does_not_answer_times_out(stories_server: WeightServer) -> None:
    stories_server.inject(MODEL, HostFault(delay=1.5))
    policy = FetchPolicy(read_timeout=0.3)
    start = time.monotonic()
    with Fetcher(policy) as fetcher, pytest.raises(FetchError) as info:
        fetch_model(fetcher, stories_server.url(MODEL))
    assert time.monotonic() - start < 1.2
    assert info.value.reason == FetchReason.TIMED_OUT
    assert "0.3 s" in str(info.value)


def test_a_trickling_body_hits_the_total_deadline(stories_server: WeightServer) -> None:
    # Each 64 KiB chunk arrives within the read timeout, but the whole body would take ~1.7 s.
    stories_server.inject(MODEL, HostFault(chunk_delay=0.1))
    policy = FetchPolicy(read_timeout=0.5, total_timeout=0.3)
    start = time.monotonic()
    with Fetcher(policy) as fetcher, pytest.raises(FetchError) as info:
        fetch_model(fetcher, stories_server.url(MODEL))
    assert time.monotonic() - start < 1.0
    assert info.value.reason == FetchReason.TIMED_OUT


def test_http_error_status_is_reported(stories_server: WeightServer, fetcher: Fetcher) -> None:
    error = failed_fetch(stories_server, fetcher, HostFault(status=500))
    assert error.reason == FetchReason.HTTP_STATUS
    assert "500" in str(error)


# --- redirects -----------------------------------------------------------------------------------


def test_redirects_within_the_limit_are_followed(
    stories_server: WeightServer, fetcher: Fetcher
) -> None:
    stories_server.inject("a", HostFault(redirect_to="/b"))
    stories_server.inject("b", HostFault(redirect_to=stories_server.url("c")))  # absolute
    stories_server.inject("c", HostFault(redirect_to=f"/{MODEL}"))
    assert fetch_model(fetcher, stories_server.url("a")) == (MODELS / MODEL).read_bytes()
    assert [stories_server.request_count(n) for n in ("a", "b", "c", MODEL)] == [1, 1, 1, 1]


def test_too_many_redirects_fail(stories_server: WeightServer) -> None:
    stories_server.inject("loop", HostFault(redirect_to="/loop"))
    with Fetcher(FetchPolicy(max_redirects=2)) as fetcher, pytest.raises(FetchError) as info:
        fetch_model(fetcher, stories_server.url("loop"))
    assert info.value.reason == FetchReason.TOO_MANY_REDIRECTS
    assert stories_server.request_count("loop") == 3  # the first request and two redirects


def test_redirects_can_be_disabled(stories_server: WeightServer) -> None:
    stories_server.inject("a", HostFault(redirect_to=f"/{MODEL}"))
    with Fetcher(FetchPolicy(max_redirects=0)) as fetcher, pytest.raises(FetchError) as info:
        fetch_model(fetcher, stories_server.url("a"))
    assert info.value.reason == FetchReason.TOO_MANY_REDIRECTS


def test_redirect_off_the_allow_list_is_rejected_before_following(
    stories_server: WeightServer, fetcher: Fetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    stories_server.inject("a", HostFault(redirect_to="http://example.com/stolen.bin"))
    resolved: list[object] = []
    real_getaddrinfo = socket.getaddrinfo

    def recording_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        resolved.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
    with pytest.raises(FetchError) as info:
        fetch_model(fetcher, stories_server.url("a"))
    assert info.value.reason == FetchReason.HOST_NOT_ALLOWED
    assert "redirect to http://example.com/stolen.bin" in str(info.value)
    assert "example.com" not in resolved


# --- several URLs --------------------------------------------------------------------------------


def test_fetch_any_falls_back_to_the_next_url(
    stories_server: WeightServer, fetcher: Fetcher
) -> None:
    stories_server.inject("broken.bin", HostFault(status=503))
    urls = ["http://example.com/m.bin", stories_server.url("broken.bin"), stories_server.url(MODEL)]
    data = fetcher.fetch_any(urls, expected_blake3=MODEL_BLAKE3, expected_size=MODEL_SIZE)
    assert len(data) == MODEL_SIZE
    assert stories_server.request_count("broken.bin") == 1


def test_fetch_any_reports_every_failure(stories_server: WeightServer) -> None:
    stories_server.inject(MODEL, HostFault(corrupt_offset=0))
    urls = [
        "http://example.com/m.bin",
        f"http://127.0.0.1:{unused_port()}/m",
        stories_server.url(MODEL),
    ]
    with pytest.raises(FetchError) as info:
        fetch_any(urls, expected_blake3=MODEL_BLAKE3)
    err = info.value
    assert len(err.failures) == 3
    assert [type(f) for f in err.failures] == [FetchError, FetchError, HashMismatch]
    for url in urls:
        assert url in str(err)


def test_fetch_any_with_only_wrong_bytes_is_a_hash_mismatch(stories_server: WeightServer) -> None:
    stories_server.inject(MODEL, HostFault(corrupt_offset=1))
    with pytest.raises(HashMismatch):
        fetch_any(
            [stories_server.url(MODEL), stories_server.url(MODEL)], expected_blake3=MODEL_BLAKE3
        )


def test_fetch_any_without_urls_fails() -> None:
    with pytest.raises(FetchError) as info:
        fetch_any([], expected_blake3=MODEL_BLAKE3)
    assert info.value.reason == FetchReason.NO_URLS
