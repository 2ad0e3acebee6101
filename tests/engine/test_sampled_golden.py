"""Sampled text equals run.c's for the same seed, temperature and top-p (tests/engine/golden/
README.md says how the files were made): the sampler, not only the forward pass, is run.c's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from engine_helpers import run_cli

from edgechain.service.engine import GenerationParams, LoadedModel
from edgechain.testing.models import ModelFiles

SAMPLED = Path(__file__).parent / "golden" / "sampled"
NAME = re.compile(r"stories260K_t([0-9.]+)_p([0-9.]+)_s([0-9]+)_once_upon_a_time_256\.txt")
GOLDENS = sorted(SAMPLED.glob("*.txt"))


def _flags(golden: Path) -> tuple[str, str, str]:
    match = NAME.fullmatch(golden.name)
    assert match is not None, golden.name
    temperature, top_p, seed = match.groups()
    return temperature, top_p, seed


def test_the_sampled_goldens_are_there() -> None:
    assert len(GOLDENS) == 7
    assert {_flags(g)[1] for g in GOLDENS} == {"0.5", "0.9", "0.95", "1.0"}


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: p.stem)
def test_sampled_output_matches_run_c_byte_for_byte(model_260k: LoadedModel, golden: Path) -> None:
    temperature, top_p, seed = _flags(golden)
    params = GenerationParams(
        temperature=float(temperature), top_p=float(top_p), seed=int(seed), max_positions=256
    )
    generation = model_260k.generate("Once upon a time", params)
    text = generation.prompt_data + b"".join(t.data for t in generation) + b"\n"
    assert text == golden.read_bytes()


@pytest.mark.parametrize("engine", ["wasm", "native"])
def test_edgechain_run_prints_run_c_sampled_text(engine: str, stories260k: ModelFiles) -> None:
    golden = SAMPLED / "stories260K_t0.8_p0.9_s42_once_upon_a_time_256.txt"
    result = run_cli(
        "run", stories260k.weights, "-z", stories260k.tokenizer, "--engine", engine,
        "-t", "0.8", "-p", "0.9", "-s", "42", "-n", "256", "-i", "Once upon a time",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == golden.read_bytes()
