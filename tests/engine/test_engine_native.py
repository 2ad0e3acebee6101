"""The native backend's own duties: a clear error when unbuilt, its errors, budgets (thread
safety, shared with the wasm engine, is in test_engine_parity.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgechain import errors
from edgechain.service.engine import Engine, GenerationParams, open_engine
from edgechain.testing.models import ModelFiles
from edgechain.testing.synth import shape_named, synthesize


def test_missing_module_says_how_to_build_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "edgechain_native", None)  # makes the import fail
    with pytest.raises(errors.EngineUnavailable, match="scripts/build_native.sh"):
        open_engine("native")


def test_engine_errors_keep_their_code_class_and_message(
    stories260k: ModelFiles, native_engine: Engine
) -> None:
    with pytest.raises(errors.InvalidCheckpoint, match="header implies"):
        native_engine.load(stories260k.weights.read_bytes()[:5000], b"")
    with pytest.raises(errors.InvalidTokenizer):
        native_engine.load(stories260k.weights.read_bytes(), b"\x01\x00")


def test_budget_is_enforced_between_tokens(tmp_path: Path) -> None:
    files = ModelFiles(tmp_path / "m.bin", tmp_path / "t.bin")
    synthesize(shape_named("15M"), 2, files.weights, files.tokenizer)
    with files.load(open_engine("native", timeout=0.05)) as model:
        gen = model.generate("Once upon a time", GenerationParams(max_positions=256))
        with pytest.raises(errors.Timeout, match="budget of 0.05 s"):
            list(gen)
        assert gen.generated_tokens < 240
        # Unlike an interrupted guest, the native model stays usable.
        assert len(list(model.generate("Once", GenerationParams(max_tokens=3), timeout=60))) == 3

