"""Fixtures for the engine and CLI tests: the shared stories260K pair, both engines, the CLI.

The engines are required: a missing guest or native module makes these tests fail (with the
build script to run), never skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import REPO_ROOT, ModelFiles

from edgechain.service.engine import Engine, LoadedModel, open_engine


@pytest.fixture(scope="session")
def shared_models() -> Path:
    """repo_root/../shared/models (the read-only material next to the checkout)."""
    path = REPO_ROOT.parent / "shared" / "models"
    assert path.is_dir(), f"shared models not found at {path}"
    return path


@pytest.fixture(scope="session")
def stories260k(shared_models: Path) -> ModelFiles:
    files = ModelFiles(
        shared_models / "stories260K" / "stories260K.bin",
        shared_models / "stories260K" / "tok512.bin",
    )
    assert files.checkpoint.is_file() and files.tokenizer.is_file()
    return files


@pytest.fixture(scope="session")
def golden_once_upon_a_time(shared_models: Path) -> bytes:
    return (shared_models / "stories260K" / "greedy_once_upon_a_time_256.txt").read_bytes()


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
