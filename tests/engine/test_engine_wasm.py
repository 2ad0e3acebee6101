"""The wasm backend's runtime duties: module cache, memory limit, deadline, traps (thread
safety, shared with the native engine, is in test_engine_parity.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import REPO_ROOT

from edgechain import errors
from edgechain.service.engine import Engine, GenerationParams, open_engine
from edgechain.service.engine import wasm as wasm_module
from edgechain.service.engine.wasm import PACKAGED_GUEST, WasmEngine, locate_guest
from edgechain.testing.models import ModelFiles
from edgechain.testing.synth import shape_named, synthesize

GREEDY = GenerationParams(temperature=0, max_tokens=30)


def test_compiled_module_is_cached_on_disk_for_the_next_process(tmp_path: Path) -> None:
    script = (
        "import json, sys; from edgechain.service.engine.wasm import WasmEngine; "
        "e = WasmEngine(cache_dir=sys.argv[1]); print(json.dumps(e.module_source))"
    )
    sources = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
            cwd=REPO_ROOT, check=True,
        )  # fmt: skip
        sources.append(json.loads(out.stdout))
    assert sources == ["compiled", "disk"]
    assert len(list(tmp_path.glob("*.cwasm"))) == 1


def test_a_damaged_cache_file_is_recompiled(tmp_path: Path) -> None:
    first = subprocess.run(
        [sys.executable, "-c",
         "import sys; from edgechain.service.engine.wasm import WasmEngine; "
         "WasmEngine(cache_dir=sys.argv[1])", str(tmp_path)],
        cwd=REPO_ROOT, check=True,
    )  # fmt: skip
    assert first.returncode == 0
    (cached,) = tmp_path.glob("*.cwasm")
    cached.write_bytes(b"not a module")
    out = subprocess.run(
        [sys.executable, "-c",
         "import sys; from edgechain.service.engine.wasm import WasmEngine; "
         "print(WasmEngine(cache_dir=sys.argv[1]).module_source)", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO_ROOT, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "compiled"
    assert cached.stat().st_size > 1000


def test_the_module_is_compiled_once_per_process(wasm_engine: Engine) -> None:
    again = WasmEngine()
    assert again.module is wasm_engine.module  # type: ignore[attr-defined]
    assert again.module_source == "memory"


def test_guest_location_explicit_env_then_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGECHAIN_GUEST_WASM", raising=False)
    assert locate_guest() == PACKAGED_GUEST
    monkeypatch.setenv("EDGECHAIN_GUEST_WASM", str(tmp_path / "missing.wasm"))
    with pytest.raises(errors.EngineUnavailable, match="scripts/build_guest.sh"):
        locate_guest()
    assert locate_guest(PACKAGED_GUEST) == PACKAGED_GUEST
    with pytest.raises(errors.EngineUnavailable, match="EDGECHAIN_GUEST_WASM"):
        open_engine("wasm")


def test_unknown_engine_kind() -> None:
    with pytest.raises(errors.InvalidParameter, match="wasm, native"):
        open_engine("gpu")


def test_memory_limit_traps_that_model_only(stories260k: ModelFiles, wasm_engine: Engine) -> None:
    small = WasmEngine(memory_limit=2 * 2**20)  # the 1 MB checkpoint cannot be parsed in 2 MB
    with pytest.raises(errors.GenerationError) as info:
        stories260k.load(small)
    assert isinstance(info.value, errors.GuestTrap)
    with stories260k.load(wasm_engine) as healthy:
        assert len(list(healthy.generate("Lily", GREEDY))) == 30


@pytest.fixture(scope="module")
def synthetic_15m(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    directory = tmp_path_factory.mktemp("synth15m")
    files = ModelFiles(directory / "m.bin", directory / "t.bin")
    synthesize(shape_named("15M"), 1, files.weights, files.tokenizer)
    return files


def test_deadline_interrupts_the_guest_and_discards_only_that_model(
    synthetic_15m: ModelFiles, stories260k: ModelFiles, wasm_engine: Engine
) -> None:
    other = stories260k.load(wasm_engine)
    slow = synthetic_15m.load(wasm_engine)
    # A long prompt makes the first step (the prefill) one long guest call, so the deadline
    # strikes inside the guest rather than between two calls.
    prompt = "Once upon a time " * 25
    gen = slow.generate(prompt, GenerationParams(max_positions=256), timeout=0.02)
    with pytest.raises(errors.Timeout, match="budget of 0.02 s"):
        list(gen)
    assert slow.discarded  # type: ignore[attr-defined]
    with pytest.raises(errors.GuestTrap, match="load it again"):
        slow.encode("hello")
    assert len(list(other.generate("Lily", GREEDY))) == 30
    other.close()
    slow.close()


def test_engine_wide_timeout_default(synthetic_15m: ModelFiles) -> None:
    engine = WasmEngine(timeout=0.05)
    with synthetic_15m.load(engine) as model, pytest.raises(errors.Timeout):
        list(model.generate("Once", GenerationParams(max_positions=256)))


def test_a_closed_model_refuses_calls(stories260k: ModelFiles, wasm_engine: Engine) -> None:
    model = stories260k.load(wasm_engine)
    model.close()
    with pytest.raises(errors.EdgechainError, match="closed"):
        model.encode("x")


def test_token_bytes_too_long_for_the_step_buffer_come_through_the_output_buffer(
    stories260k: ModelFiles, wasm_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with stories260k.load(wasm_engine) as model:
        expected = [(t.id, t.data) for t in model.generate("Once upon a time", GREEDY)]
        # Room for the record's head only: every token's bytes overflow into the output buffer.
        monkeypatch.setattr(wasm_module, "_STEP_BUFFER_BYTES", 20)
        gen = model.generate("Once upon a time", GREEDY)
        assert [(t.id, t.data) for t in gen] == expected
        assert len(expected) == 30 and gen.generated_tokens == 30
