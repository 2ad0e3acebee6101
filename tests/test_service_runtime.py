"""The service runtime end to end: certified entry -> verified fetch -> named model -> tokens.

The plugin's 4-validator network and weight server (stories260K served over loopback), the real
wasm guest (a missing guest fails these tests). Faults come from the weight server's knobs, a
committee that did not certify the entry, and the WAT stand-in guest for traps and loops.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import wasmtime
from chain_helpers import local_file_ref
from service_helpers import FAST_FETCH, run_in_threads

from edgechain import errors
from edgechain.chain.committee import Committee
from edgechain.chain.keys import generate_key, public_bytes
from edgechain.client import Client
from edgechain.contract.operations import RegisterModel
from edgechain.service.engine.wasm import WasmEngine
from edgechain.service.fetch import FetchPolicy
from edgechain.service.runtime import GenerateQuery, ModelService
from edgechain.testing.models import ModelFiles, stories260k_golden
from edgechain.testing.pytest_plugin import ServedModel
from edgechain.testing.weight_server import HostFault, WeightServer

MOCK_GUEST = Path(__file__).resolve().parent / "engine" / "mock_guest.wat"


@pytest.fixture()
def edgechain_fetch_policy() -> FetchPolicy:
    return FAST_FETCH


@pytest.fixture()
def client(edgechain_network: Client) -> Client:
    """The plugin's network (with the quick fetch policy above)."""
    return edgechain_network


def greedy(prompt: str = "Once upon a time", max_tokens: int = 120) -> GenerateQuery:
    return GenerateQuery(model="stories260K", prompt=prompt, max_tokens=max_tokens, temperature=0)


def test_greedy_query_reproduces_run_c_and_reports_what_was_verified(
    client: Client, published: ServedModel
) -> None:
    stream = client.generate(greedy(max_tokens=200))
    pieces = [t.text for t in stream]
    record = stream.record
    assert record is not None
    golden = stories260k_golden().decode("utf-8")
    assert stream.prompt_text + "".join(pieces) == golden[: len(stream.prompt_text + record.text)]
    assert record.text == "".join(pieces) and len(record.text) > 400
    assert (record.output_tokens, record.stop_reason) == (200, "max_tokens")
    assert record.input_tokens >= 2  # BOS + the prompt
    entry = record.model.entry
    assert entry.weights.blake3 == (
        "33b6153460934101fae04b6653a29b8b73f6fbc63fb7c7235e1dd384a8466761"
    )
    assert record.model.height == 0
    assert record.seed_source == "derived"
    assert record.to_dict()["model"]["certificate_height"] == 0


def test_same_query_same_state_same_bytes_and_the_seed_is_reported(
    client: Client, published: ServedModel, weight_server: WeightServer
) -> None:
    query = GenerateQuery(model="stories260K", prompt="A cat", max_tokens=60, temperature=0.9)
    first = client.generate(query).collect()
    second = client.generate(query).collect()
    assert (first.text, first.seed) == (second.text, second.seed)
    explicit = client.generate(dataclasses.replace(query, seed=first.seed)).collect()
    assert explicit.text == first.text and explicit.seed_source == "query"
    other = client.generate(dataclasses.replace(query, prompt="A dog")).collect()
    assert other.seed != first.seed
    assert weight_server.request_count(published.weights_file.name) == 1  # cached and loaded once


def test_a_changed_byte_is_a_hash_mismatch_and_nothing_is_kept(
    client: Client, published: ServedModel, weight_server: WeightServer
) -> None:
    weight_server.inject(published.weights_file.name, HostFault(corrupt_offset=1000))
    with pytest.raises(errors.HashMismatch, match="stories260K.bin"):
        client.generate(greedy())
    entry = client.model("stories260K").entry
    assert client.service.cache.get_path(entry.weights.blake3) is None
    assert client.service.loaded_models() == []
    weight_server.inject(published.weights_file.name, None)
    assert client.generate(greedy(max_tokens=5)).collect().output_tokens == 5


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (HostFault(truncate_to=1000), "truncated"),
        (HostFault(extra_bytes=10), "too large"),
        (HostFault(extra_bytes=10, chunked=True), "too large"),
        (HostFault(delay=2.0), "timed out"),
        (HostFault(status=500), "500"),
    ],
)
def test_bad_downloads_are_fetch_errors(
    client: Client,
    published: ServedModel,
    weight_server: WeightServer,
    fault: HostFault,
    reason: str,
) -> None:
    weight_server.inject(published.weights_file.name, fault)
    with pytest.raises(errors.FetchError, match=reason):
        client.generate(greedy())
    assert client.service.loaded_models() == []


def test_a_host_off_the_allow_list_is_refused_without_a_connection(
    client: Client, stories260k: ModelFiles, weight_server: WeightServer, weight_server_dir: Path
) -> None:
    shutil.copy(stories260k.tokenizer, weight_server_dir)
    client.publish_model(
        "stories260K",
        weights=stories260k.weights,
        tokenizer=stories260k.tokenizer,
        weights_urls=["http://weights.example.com/stories260K.bin"],
        tokenizer_urls=[weight_server.url(stories260k.tokenizer.name)],
        check_urls=False,  # the point: a host the service may not reach
    )
    with pytest.raises(errors.FetchError, match="not allowed"):
        client.generate(greedy())


def test_a_server_that_is_down_is_a_fetch_error(
    client: Client, published: ServedModel, weight_server: WeightServer
) -> None:
    weight_server.stop()
    with pytest.raises(errors.FetchError):
        client.generate(greedy())


def test_an_entry_whose_certificate_does_not_verify_is_refused(
    client: Client, published: ServedModel, weight_server: WeightServer
) -> None:
    registry = client.registry
    strangers = Committee.from_public_keys([public_bytes(generate_key()) for _ in range(4)])

    class ForgedSource:
        committee = strangers

        def query_model(self, name: str, version: str | None = None):  # noqa: ANN202
            return registry.query_model(name, version)

    with (
        ModelService(ForgedSource(), cache_dir=client.cache_dir) as service,
        pytest.raises(errors.CertificateError),
    ):
        service.generate(greedy())
    assert weight_server.request_count() == 0  # refused before any fetch


def test_a_retired_model_fails_cleanly_even_when_loaded(
    client: Client, published: ServedModel
) -> None:
    assert client.generate(greedy(max_tokens=3)).collect().output_tokens == 3
    client.retire_model("stories260K", "1")
    with pytest.raises(errors.ModelRetired, match="retired"):
        client.generate(greedy())
    with pytest.raises(errors.ModelNotFound):
        client.generate(dataclasses.replace(greedy(), model="nope"))


def test_concurrent_queries_download_and_load_once(
    client: Client, published: ServedModel, weight_server: WeightServer
) -> None:
    results, failures = run_in_threads(
        lambda: client.generate(greedy(max_tokens=40)).collect().text, 4
    )
    assert not failures
    assert len(results) == 4 and len(set(results)) == 1
    assert weight_server.request_count(published.weights_file.name) == 1
    assert weight_server.request_count(published.tokenizer_file.name) == 1
    assert len(client.service.loaded_models()) == 1


def test_a_corrupted_cache_file_is_detected_and_replaced(
    client: Client, published: ServedModel, weight_server: WeightServer, tmp_path: Path
) -> None:
    first = client.generate(greedy(max_tokens=10)).collect()
    path = client.service.cache.path_for(first.model.entry.weights.blake3)
    data = bytearray(path.read_bytes())
    data[500] ^= 0xFF
    path.write_bytes(bytes(data))
    # A new service (as in a new process) must not trust the altered file.
    with ModelService(client.registry, cache_dir=client.cache_dir) as service:
        again = service.generate(greedy(max_tokens=10)).collect()
    assert again.text == first.text
    assert weight_server.request_count(published.weights_file.name) == 2


@pytest.fixture()
def mock_engine(tmp_path: Path) -> WasmEngine:
    wasm = tmp_path / "mock.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(MOCK_GUEST.read_text()))
    return WasmEngine(guest_path=wasm, cache_dir=False)


def test_a_trapping_or_looping_guest_is_an_error_and_the_service_keeps_serving(
    client: Client,
    mock_engine: WasmEngine,
    stories260k: ModelFiles,
    weight_server: WeightServer,
    weight_server_dir: Path,
) -> None:
    # The stand-in guest traps on a checkpoint whose first byte is 0xFF, spins on "spin".
    files = {"trap.bin": b"\xff" + b"\x00" * 63, "good.bin": b"\x01" + b"\x00" * 63}
    files["tok.bin"] = stories260k.tokenizer.read_bytes()
    for name, data in files.items():
        (weight_server_dir / name).write_bytes(data)
    for name in ("trap", "good"):
        # register_model: publish_model would refuse these stand-in checkpoints unparsed
        client.register_model(
            RegisterModel(
                name,
                "1",
                weights=local_file_ref(
                    weight_server_dir / f"{name}.bin", weight_server.url(f"{name}.bin")
                ),
                tokenizer=local_file_ref(
                    weight_server_dir / "tok.bin", weight_server.url("tok.bin")
                ),
            )
        )
    _trap_then_loop_then_serve(client, mock_engine)


def _trap_then_loop_then_serve(client: Client, mock_engine: WasmEngine) -> None:
    with ModelService(
        client.registry, cache_dir=client.cache_dir, engine=mock_engine, query_timeout=0.3
    ) as service:
        with pytest.raises(errors.GuestTrap):
            service.generate(GenerateQuery(model="trap", prompt="hi"))
        with pytest.raises(errors.Timeout):
            service.generate(GenerateQuery(model="good", prompt="spin")).collect()
        record = service.generate(GenerateQuery(model="good", prompt="hi")).collect()
        assert record.text == "abcde"


def test_a_loaded_model_is_scoped_to_its_application(
    client: Client, published: ServedModel
) -> None:
    other_chain = client.network.create_chain("other")
    other_registry = other_chain.application("model-registry")
    assert other_registry.id != client.registry.id
    client.generate(greedy(max_tokens=2)).collect()
    engine = client.service.engine
    with ModelService(other_registry, cache_dir=client.cache_dir, engine=engine) as other:
        # Loaded next door, registered next door: still not reachable from this application.
        with pytest.raises(errors.ModelNotFound):
            other.generate(greedy())
        assert other.loaded_models() == []
    assert len(client.service.loaded_models()) == 1
