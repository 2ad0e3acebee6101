"""Fixtures for the engine and CLI tests: both engines, stories260K loaded in each, its golden
output (the stories260K files themselves are the plugin's ``stories260k`` fixture).

The engines are required: a missing guest or native module makes these tests fail (with the
build script to run), never skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgechain.quantize import quantize_checkpoint
from edgechain.service.engine import Engine, LoadedModel, open_engine
from edgechain.testing.models import ModelFiles, stories260k_golden


@pytest.fixture(scope="session")
def golden_once_upon_a_time(stories260k: ModelFiles) -> bytes:
    return stories260k_golden(stories260k)


@pytest.fixture(scope="session")
def wasm_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return open_engine("wasm")


@pytest.fixture(scope="session")
def native_engine() -> Engine:
    return open_engine("native")


@pytest.fixture(scope="session", params=["wasm", "native"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Each engine in turn."""
    return request.getfixturevalue(f"{request.param}_engine")


@pytest.fixture(scope="session")
def wasm_260k(wasm_engine: Engine, stories260k: ModelFiles) -> Iterator[LoadedModel]:
    with stories260k.load(wasm_engine) as model:
        yield model


@pytest.fixture(scope="session")
def native_260k(native_engine: Engine, stories260k: ModelFiles) -> Iterator[LoadedModel]:
    with stories260k.load(native_engine) as model:
        yield model


@pytest.fixture(scope="session", params=["wasm", "native"])
def model_260k(request: pytest.FixtureRequest) -> LoadedModel:
    """stories260K loaded in each engine in turn."""
    return request.getfixturevalue(f"{request.param}_260k")


@pytest.fixture(scope="session")
def q8_260k(stories260k: ModelFiles, tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    """stories260K quantized with the default group size."""
    out = tmp_path_factory.mktemp("int8") / "stories260K_q8.bin"
    quantize_checkpoint(stories260k.weights, out)
    return ModelFiles(out, stories260k.tokenizer)
