"""A slow or dripping weight host: the stall rule, one shared download per model, a download
nobody waits for any more is cancelled, and download progress is reported.

A real network, stories260K served over loopback by the fault-injecting weight server, the real
wasm guest (a missing guest fails these tests).
"""

from __future__ import annotations

import threading
import time

import pytest
from service_helpers import MODEL

from edgechain import errors
from edgechain.client import Client
from edgechain.service.fetch import Fetcher, FetchPolicy, FetchReason
from edgechain.service.runtime import GenerateQuery, PreparedQuery
from edgechain.testing.pytest_plugin import ServedModel
from edgechain.testing.weight_server import HostFault, WeightServer

DRIP = HostFault(chunk_size=1, chunk_delay=0.5)  # a byte every half second
QUERY = GenerateQuery(model="stories260K", prompt="Once", max_tokens=4, temperature=0)


@pytest.fixture()
def client(edgechain_network: Client, published: ServedModel) -> Client:
    """The plugin's network, with stories260K published (``published``)."""
    return edgechain_network


def _prepared_behind(
    fault: HostFault, client: Client, published: ServedModel, weight_server: WeightServer
) -> PreparedQuery:
    """QUERY resolved on ``client`` (in this thread: the client's storage is one thread's),
    with the weights' host behaving as ``fault`` says."""
    weight_server.inject(published.weights_file.name, fault)
    return client.service.prepare(QUERY)


def _generating_thread(
    client: Client, prepared: PreparedQuery, tokens: list[int]
) -> threading.Thread:
    """A thread that runs ``prepared`` to its end and appends its output token count."""

    def generate() -> None:
        tokens.append(client.service.start(prepared).collect().output_tokens)

    return threading.Thread(target=generate)


def test_a_dripping_host_fails_the_stall_rule_naming_the_rate(stories_server: WeightServer) -> None:
    stories_server.inject(MODEL, DRIP)
    policy = FetchPolicy(min_rate_bytes=4096, min_rate_window=1.0, read_timeout=30.0)
    started = time.monotonic()
    with Fetcher(policy) as fetcher, pytest.raises(errors.FetchError) as caught:
        fetcher.download(stories_server.url(MODEL))
    assert caught.value.reason == FetchReason.TOO_SLOW
    assert "below the minimum rate of 4096 bytes per 1 s" in str(caught.value)
    assert time.monotonic() - started < 10  # not the read timeout, not the total deadline


def test_the_default_policy_has_a_stall_rule() -> None:
    policy = FetchPolicy()
    assert policy.min_rate_bytes > 0 and policy.min_rate_window < policy.read_timeout
    with pytest.raises(errors.InvalidParameter):
        FetchPolicy(min_rate_window=0)


def test_a_cancel_event_stops_a_download(stories_server: WeightServer) -> None:
    stories_server.inject(MODEL, DRIP)
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    with Fetcher() as fetcher, pytest.raises(errors.Cancelled):
        fetcher.fetch(stories_server.url(MODEL), expected_blake3="0" * 64, cancel=cancel)


def test_concurrent_first_queries_share_one_download(
    client: Client, published: ServedModel, weight_server: WeightServer
) -> None:
    # Slow, not stalled; the wait and the download are shared.
    prepared = _prepared_behind(HostFault(chunk_delay=0.2), client, published, weight_server)
    results: list[int] = []
    threads = [_generating_thread(client, prepared, results) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [4, 4, 4]
    assert weight_server.request_count(published.weights_file.name) == 1


def test_a_download_every_waiter_left_is_cancelled_and_the_next_query_starts_afresh(
    client: Client, published: ServedModel, weight_server: WeightServer
) -> None:
    prepared = _prepared_behind(DRIP, client, published, weight_server)
    gone = threading.Event()
    failure: list[BaseException] = []

    def leaves() -> None:
        try:
            client.service.start(prepared, cancelled=gone.is_set)
        except BaseException as err:
            failure.append(err)

    waiter = threading.Thread(target=leaves)
    waiter.start()
    deadline = time.monotonic() + 10
    while not (loadings := list(client.service._loading.values())):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    [loading] = loadings
    while weight_server.request_count(published.weights_file.name) < 1:  # into the drip
        assert time.monotonic() < deadline
        time.sleep(0.01)
    started = time.monotonic()
    gone.set()
    waiter.join(5)
    assert [type(f) for f in failure] == [errors.Cancelled]
    # The download itself stops at its next byte (every 0.5 s), with Cancelled.
    assert loading.done.wait(5)
    print(f"\nwaiter left -> download stopped in {time.monotonic() - started:.2f} s")
    assert isinstance(loading.error, errors.Cancelled)
    assert not client.service._loading
    weight_server.inject(published.weights_file.name, None)
    assert client.service.start(prepared).collect().output_tokens == 4
    assert (
        weight_server.request_count(published.weights_file.name) == 2
    )  # a new download, not the dropped one


def test_a_waiter_leaving_does_not_cancel_the_download_another_waits_for(
    client: Client, published: ServedModel, weight_server: WeightServer
) -> None:
    prepared = _prepared_behind(HostFault(chunk_delay=0.3), client, published, weight_server)
    outcome: list[int] = []
    waiter = _generating_thread(client, prepared, outcome)
    waiter.start()
    deadline = time.monotonic() + 10
    while not any(loading.waiters for loading in list(client.service._loading.values())):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    gone = threading.Event()
    threading.Timer(0.5, gone.set).start()
    with pytest.raises(errors.Cancelled):
        client.service.start(prepared, cancelled=gone.is_set)
    waiter.join(60)
    assert outcome == [4]
    assert weight_server.request_count(published.weights_file.name) == 1


def test_the_first_generate_reports_download_progress(
    client: Client, published: ServedModel
) -> None:
    seen: list[tuple[str, int, int | None]] = []
    client.generate(QUERY, progress=lambda *event: seen.append(event)).collect()
    weights = [(done, total) for label, done, total in seen if label == "weights"]
    size = published.weights_file.stat().st_size
    assert weights[-1] == (size, size)
    assert [d for d, _ in weights] == sorted(d for d, _ in weights)
    assert any(label == "tokenizer" for label, _, _ in seen)
    seen.clear()
    client.generate(QUERY, progress=lambda *event: seen.append(event)).collect()
    assert seen == []  # loaded: nothing to download
