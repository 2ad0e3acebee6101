"""The guest's side of the regression guard (perf_budget.json; the native side's instruction
count is scripts/instruction_budget.sh): how many calls into the wasm guest a fixed greedy
decode of stories260K costs, prompt to end. Each call crosses wasmtime-py's ctypes boundary and
resets the epoch deadline, so a change that adds calls per token shows here, exactly, whatever
the machine's load. An intended change updates the budget in the same commit (docs/toolchain.md,
"Instruction budget")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgechain.service.engine import GenerationParams
from edgechain.service.engine.wasm import WasmEngine, _Guest
from edgechain.testing.models import ModelFiles

BUDGET = Path(__file__).resolve().parents[2] / "perf_budget.json"


def test_guest_calls_for_a_fixed_decode_stay_within_the_budget(
    monkeypatch: pytest.MonkeyPatch, stories260k: ModelFiles
) -> None:
    budget = json.loads(BUDGET.read_text())["guest_calls_260k"]
    # The budget is one instance's calls (EDGECHAIN_WASM_INSTANCES would load the model twice).
    with stories260k.load(WasmEngine(instances=1)) as model:
        calls: list[str] = []
        original = _Guest.call

        def counted(self: _Guest, name: str, *args: int, **kwargs: Any) -> int:
            calls.append(name)
            return original(self, name, *args, **kwargs)

        monkeypatch.setattr(_Guest, "call", counted)
        generation = model.generate(
            "Once upon a time", GenerationParams(temperature=0.0, max_positions=256)
        )
        tokens = sum(1 for _ in generation)
    assert tokens == 252  # 256 positions: BOS and 4 prompt tokens fed, then 252 generated
    per_token = len(calls) / tokens
    assert abs(len(calls) - budget["count"]) <= budget["tolerance"] * budget["count"], (
        f"{len(calls)} guest calls ({per_token:.2f} per token), budget {budget['count']}: "
        f"{sorted(set(calls))}"
    )
