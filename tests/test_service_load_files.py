"""ModelService loads cached models by path (Engine.load_files: one copy of the weights in the
process) and falls back to the verified bytes when a cached file changes under it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgechain.client import Client
from edgechain.service.engine.base import LoadedModel
from edgechain.service.engine.wasm import WasmEngine
from edgechain.service.fetch import FetchPolicy
from edgechain.service.runtime import GenerateQuery, ModelService
from edgechain.testing.weight_server import WeightServer

MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "stories260K"
QUERY = GenerateQuery(model="stories260K", prompt="Once upon a time", max_tokens=20, temperature=0)


class SpyEngine(WasmEngine):
    """The wasm engine, recording how models were loaded; ``tamper`` runs after load_files."""

    def __init__(self) -> None:
        super().__init__(cache_dir=False)
        self.calls: list[tuple[str, ...]] = []
        self.tamper: list[Path] = []

    def load(self, checkpoint: bytes, tokenizer: bytes) -> LoadedModel:
        self.calls.append(("bytes",))
        return super().load(checkpoint, tokenizer)

    def load_files(
        self, checkpoint: str | os.PathLike[str], tokenizer: str | os.PathLike[str]
    ) -> LoadedModel:
        self.calls.append(("files", str(checkpoint), str(tokenizer)))
        model = super().load_files(checkpoint, tokenizer)
        for path in self.tamper:  # every time: the fallback must end in the verified bytes
            data = bytearray(path.read_bytes())
            data[500] ^= 0xFF
            path.write_bytes(bytes(data))
        return model


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[Client]:
    policy = FetchPolicy(read_timeout=0.5, connect_timeout=0.5, total_timeout=5.0)
    with Client.up(tmp_path / "net", validators=4, fetch_policy=policy) as c:
        yield c


@pytest.fixture()
def server(client: Client) -> Iterator[WeightServer]:
    with WeightServer(MODELS) as srv:
        client.publish_model(
            "stories260K",
            weights=MODELS / "stories260K.bin",
            tokenizer=MODELS / "tok512.bin",
            weights_urls=[srv.url("stories260K.bin")],
            tokenizer_urls=[srv.url("tok512.bin")],
        )
        yield srv


def test_a_cached_model_is_loaded_from_its_verified_path(client: Client, server: WeightServer):
    first = client.generate(QUERY).collect()
    weights = client.service.cache.path_for(first.model.entry.weights.blake3)
    engine = SpyEngine()
    with ModelService(client.registry, cache_dir=client.cache_dir, engine=engine) as service:
        again = service.generate(QUERY).collect()
    assert again.text == first.text
    assert [c[:2] for c in engine.calls] == [("files", str(weights))]
    assert server.request_count("stories260K.bin") == 1


def test_a_cached_file_changed_during_the_load_falls_back_to_verified_bytes(
    client: Client, server: WeightServer
) -> None:
    first = client.generate(QUERY).collect()
    weights = client.service.cache.path_for(first.model.entry.weights.blake3)
    engine = SpyEngine()
    engine.tamper.append(weights)
    with ModelService(client.registry, cache_dir=client.cache_dir, engine=engine) as service:
        again = service.generate(QUERY).collect()
    assert again.text == first.text
    # Refused, downloaded again (the altered file is not trusted), that copy altered too: the
    # bytes are fetched once more (the cache refuses the altered file again) and loaded.
    assert [c[0] for c in engine.calls] == ["files", "files", "bytes"]
    assert server.request_count("stories260K.bin") == 3


def test_a_downloaded_model_is_loaded_from_the_stored_file(
    client: Client, server: WeightServer, tmp_path: Path
) -> None:
    engine = SpyEngine()
    with ModelService(client.registry, cache_dir=tmp_path / "fresh", engine=engine) as service:
        record = service.generate(QUERY).collect()
        weights = service.cache.path_for(record.model.entry.weights.blake3)
    assert [c[:2] for c in engine.calls] == [("files", str(weights))]
    assert server.request_count("stories260K.bin") == 1
    assert record.text == client.generate(QUERY).collect().text
