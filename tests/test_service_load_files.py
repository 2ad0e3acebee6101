"""ModelService loads cached models by path (Engine.load_files: one copy of the weights in the
process) and falls back to the verified bytes when a cached file changes under it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgechain.client import Client
from edgechain.service.engine.base import LoadedModel
from edgechain.service.engine.wasm import WasmEngine
from edgechain.service.runtime import GenerateQuery, ModelService
from edgechain.testing.pytest_plugin import ServedModel
from edgechain.testing.weight_server import WeightServer

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
def client(edgechain_network: Client, published: ServedModel) -> Client:
    """The plugin's network, with stories260K published (``published``)."""
    return edgechain_network


def test_a_cached_model_is_loaded_from_its_verified_path(
    client: Client, published: ServedModel, weight_server: WeightServer
):
    first = client.generate(QUERY).collect()
    weights = client.service.cache.path_for(first.model.entry.weights.blake3)
    engine = SpyEngine()
    with ModelService(client.registry, cache_dir=client.cache_dir, engine=engine) as service:
        again = service.generate(QUERY).collect()
    assert again.text == first.text
    assert [c[:2] for c in engine.calls] == [("files", str(weights))]
    assert weight_server.request_count(published.weights_file.name) == 1


def test_a_cached_file_changed_during_the_load_falls_back_to_verified_bytes(
    client: Client, published: ServedModel, weight_server: WeightServer
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
    assert weight_server.request_count(published.weights_file.name) == 3


def test_a_downloaded_model_is_loaded_from_the_stored_file(
    client: Client, published: ServedModel, weight_server: WeightServer, tmp_path: Path
) -> None:
    engine = SpyEngine()
    with ModelService(client.registry, cache_dir=tmp_path / "fresh", engine=engine) as service:
        record = service.generate(QUERY).collect()
        weights = service.cache.path_for(record.model.entry.weights.blake3)
    assert [c[:2] for c in engine.calls] == [("files", str(weights))]
    assert weight_server.request_count(published.weights_file.name) == 1
    assert record.text == client.generate(QUERY).collect().text
