"""The native engine's threads (rust_guest/src/parallel.rs): every large matrix product's rows
split across 1, 2 or 3 threads give the same tokens and text, f32 and int8, for one session
(its prompt prefilled in a batch), a hinted replay (positions computed ahead in batches) and
several sessions stepped together in one weight pass. The logits themselves are compared bit
for bit by `cargo test` (transformer and parallel tests). Also: the option's sources and errors.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgechain.errors import InvalidParameter
from edgechain.quantize import quantize_checkpoint
from edgechain.service.engine import GenerationParams, LoadedModel, open_engine
from edgechain.service.engine.native import THREADS_ENV, NativeEngine, resolve_threads
from edgechain.testing.models import ModelFiles
from edgechain.testing.synth import ModelShape, synthesize

# dim 256: wq/wo (256x256 = 65536, parallel.rs's MIN_PARALLEL_WEIGHTS), w1/w2/w3 and the
# classifier are split; wk/wv (kv_dim 128: 32768 weights) stay on one thread.
SHAPE = ModelShape(256, 768, 2, 4, 2, 1000, 96)
PROMPTS = ["Once upon a time", "Lily", "The cat and the dog went to the park"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("threads")
    f32, tok, q8 = directory / "m.bin", directory / "tok.bin", directory / "q8.bin"
    synthesize(SHAPE, 11, f32, tok)
    quantize_checkpoint(f32, q8)
    return {"f32": (f32, tok), "int8": (q8, tok)}


def params(seed: int, temperature: float = 1.0, tokens: int = 40) -> GenerationParams:
    return GenerationParams(temperature=temperature, top_p=0.9, seed=seed, max_tokens=tokens)


def stepped_together(model: LoadedModel) -> list[list[int]]:
    """Every prompt's tokens, all sessions advanced by one `step_batch` call per step."""
    generations = [model.generate(p, params(i + 5)) for i, p in enumerate(PROMPTS)]
    drivers = [g._driver for g in generations]
    ids: list[list[int]] = [[] for _ in drivers]
    live = list(range(len(drivers)))
    while live:
        steps = model.step_batch([drivers[i] for i in live], None)
        assert all(s.error is None for s in steps)
        for i, step in zip(live, steps, strict=True):
            if step.produced is not None:
                ids[i].append(step.produced[0])
        live = [i for i, s in zip(live, steps, strict=True) if s.produced is not None]
    for g in generations:
        g.cancel()
    return ids


def outputs(threads: int, files: tuple[Path, Path]) -> dict[str, object]:
    engine = NativeEngine(threads=threads)
    with engine.load_files(*files) as model:
        assert model.threads == threads  # type: ignore[attr-defined]
        greedy = model.generate(PROMPTS[2], params(1, temperature=0.0, tokens=60))
        greedy_ids = [t.id for t in greedy]
        sampled = model.generate(PROMPTS[0], params(2))
        sampled_ids = [t.id for t in sampled]
        hinted = model.generate(PROMPTS[0], params(2), hint=sampled_ids)
        return {
            "greedy": (greedy_ids, greedy.text),
            "sampled": (sampled_ids, sampled.text),
            "hinted": [t.id for t in hinted],
            "together": stepped_together(model),
        }


@pytest.mark.parametrize("weights", ["f32", "int8"])
def test_one_two_and_three_threads_give_the_same_tokens(
    checkpoints: dict[str, tuple[Path, Path]], weights: str
) -> None:
    runs = {n: outputs(n, checkpoints[weights]) for n in (1, 2, 3)}
    one = runs[1]
    greedy_ids, _ = one["greedy"]  # type: ignore[misc]
    assert len(greedy_ids) == 60
    assert one["hinted"] == one["sampled"][0]  # type: ignore[index]
    assert sum(len(t) for t in one["together"]) > 60  # type: ignore[arg-type]
    assert runs[2] == one
    assert runs[3] == one


def test_the_wasm_guest_agrees_with_threaded_native(
    checkpoints: dict[str, tuple[Path, Path]],
) -> None:
    files = checkpoints["int8"]
    p = params(3)
    with open_engine("wasm").load_files(*files) as model:
        expected = [t.id for t in model.generate(PROMPTS[1], p)]
    with NativeEngine(threads=2).load_files(*files) as model:
        assert [t.id for t in model.generate(PROMPTS[1], p)] == expected


def test_thread_count_comes_from_the_argument_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert resolve_threads(None) is None  # the module's default: the cores
    assert resolve_threads(3) == 3
    monkeypatch.setenv(THREADS_ENV, "2")
    assert resolve_threads(None) == 2
    assert resolve_threads(1) == 1
    assert NativeEngine().threads == 2


@pytest.mark.parametrize(
    ("given", "env", "message"),
    [
        (0, None, "threads must be between 1 and 256, got 0"),
        (257, None, "threads must be between 1 and 256, got 257"),
        ("2", None, "threads must be an integer, got '2'"),
        (None, "two", "EDGECHAIN_THREADS must be an integer, got 'two'"),
        (None, "-1", "EDGECHAIN_THREADS must be between 1 and 256, got -1"),
    ],
)
def test_bad_thread_counts_are_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, given: object, env: str | None, message: str
) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    if env is not None:
        monkeypatch.setenv(THREADS_ENV, env)
    with pytest.raises(InvalidParameter) as err:
        NativeEngine(threads=given)  # type: ignore[arg-type]
    assert str(err.value) == message


def test_the_default_is_every_core(
    monkeypatch: pytest.MonkeyPatch, stories260k: ModelFiles
) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    with stories260k.load(NativeEngine()) as model:
        assert model.threads == len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
