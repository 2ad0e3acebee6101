"""Helpers for the engine and CLI tests (imported by the tests and conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from network_cli_helpers import run_edgechain

from edgechain.service.engine import Engine, GenerationParams
from edgechain.service.engine.base import LoadedModel, ModelInfo

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLING_PROMPT = "Once upon a time"


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: bytes
    stderr: str


def run_cli(*args: str | Path, timeout: float = 300, stdin: bytes = b"") -> CliResult:
    """Run ``python -m edgechain.cli ARGS`` in a subprocess (``stdin`` is all it reads)."""
    proc = run_edgechain(args, stdin=stdin, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def assert_clean_error(result: CliResult, exit_code: int, *fragments: str) -> None:
    """A user error: the given exit code, one ``error: ...`` line on stderr, no traceback."""
    assert result.returncode == exit_code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment.lower() in error_lines[0].lower(), (fragment, error_lines[0])


def sampled(
    engine: Engine, weights: Path, tokenizer: Path | None, seed: int
) -> tuple[list[int], ModelInfo]:
    """The tokens plain sampling (temperature 1, top-p 1) gives after SAMPLING_PROMPT, and the
    model's info."""
    with engine.load_files(weights, tokenizer) as model:
        params = GenerationParams(temperature=1.0, top_p=1.0, seed=seed, max_positions=200)
        return [t.id for t in model.generate(SAMPLING_PROMPT, params)], model.info


def greedy_text(path: Path, engine: str, positions: int, prompt: str) -> bytes:
    """What ``edgechain run`` prints for a greedy run of the GGUF file ``path`` on ``engine``."""
    result = run_cli("run", path, "--engine", engine, "-t", "0", "-n", str(positions), "-i", prompt)
    assert result.returncode == 0, result.stderr
    return result.stdout


def sampled_ids(engine: Engine, path: Path, seed: int, prompt: str) -> list[int]:
    """The tokens plain sampling gives for ``prompt`` with the GGUF file ``path`` (60
    positions)."""
    with engine.load_files(path, None) as model:
        params = GenerationParams(temperature=1.0, top_p=1.0, seed=seed, max_positions=60)
        return [t.id for t in model.generate(prompt, params)]


def kernel_check_runs(model: LoadedModel) -> list[list[int]]:
    """The tokens of one greedy and two sampled generations (seeds 2, 3; 64 positions) of
    ``model``: the kernel tests compare them across engines."""
    runs = []
    for temperature, seed in ((0.0, 1), (1.0, 2), (1.0, 3)):
        params = GenerationParams(temperature=temperature, seed=seed, max_positions=64)
        runs.append([t.id for t in model.generate("Once upon a time", params)])
    return runs


def assert_engines_sample_alike(
    wasm_engine: Engine, native_engine: Engine, weights: Path, tokenizer: Path | None
) -> ModelInfo:
    """Both engines sample the same tokens (more than 50) for seeds 1 to 3 and read the same
    model info, which is returned. Plain sampling at temperature 1 turns any difference in the
    logits' bits into a different token sooner or later."""
    for seed in (1, 2, 3):
        wasm_ids, wasm_info = sampled(wasm_engine, weights, tokenizer, seed)
        native_ids, native_info = sampled(native_engine, weights, tokenizer, seed)
        assert wasm_ids == native_ids
        assert len(wasm_ids) > 50
    assert wasm_info == native_info
    return wasm_info
