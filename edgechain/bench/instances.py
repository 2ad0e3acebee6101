"""Benchmark: what a second wasm guest instance buys 16 concurrent streams, in CPU time
(``python -m edgechain.bench.instances --shape 15M --temperature 0``).

Wall-clock ratios of concurrent streams need free cores; on a shared machine they measure the
neighbours. This times the same N sessions of a synthetic model with each calling thread's CPU
clock: stepped one at a time (solo), batched in one instance, and batched in two instances, each
instance's share timed apart. ``critical_path`` sums, step by step, the larger of the two shares:
the wall time two free cores would take for the guest work. Every session's tokens are checked
equal in the three runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgechain.service.engine import GenerationParams, LoadedModel, open_engine
from edgechain.testing.synth import shape_named, synthesize

__all__ = ["run_instances"]

Shares = Callable[[list[int], list[Any]], list[tuple[Any, list[int]]]]


def _timed(model: Any, drivers: Sequence[Any]) -> tuple[list[Any], float]:
    started = time.thread_time()
    steps = model.step_batch(drivers, None)
    return steps, time.thread_time() - started


def _solo(model: LoadedModel, prompt: str, params: list[GenerationParams]) -> tuple[Any, float]:
    cpu, ids = 0.0, []
    for p in params:
        gen = model.generate(prompt, p)
        tokens = []
        while True:
            (step,), spent = _timed(model, [gen._driver])  # noqa: SLF001
            cpu += spent
            if step.produced is None:
                break
            tokens.append(step.produced[0])
        gen.cancel()
        ids.append(tokens)
    return ids, cpu


def _batched(
    model: LoadedModel, prompt: str, params: list[GenerationParams], shares: Shares
) -> tuple[list[list[int]], float, float]:
    gens = [model.generate(prompt, p) for p in params]
    ids: list[list[int]] = [[] for _ in gens]
    live = set(range(len(gens)))
    path = serial = 0.0
    while live:
        costs = []
        for part, indices in shares(sorted(live), gens):
            steps, spent = _timed(part, [gens[i]._driver for i in indices])  # noqa: SLF001
            costs.append(spent)
            for i, step in zip(indices, steps, strict=True):
                if step.produced is None:
                    live.discard(i)
                    gens[i].cancel()
                else:
                    ids[i].append(step.produced[0])
        path += max(costs)
        serial += sum(costs)
    return ids, path, serial


def run_instances(
    shape: str, streams: int, tokens: int, temperature: float, prompt: str = "Once upon a time"
) -> dict[str, object]:
    """One row: CPU seconds of ``streams`` sessions solo, batched in one and in two instances."""
    params = [
        GenerationParams(temperature=temperature, seed=1000 + i, max_tokens=tokens)
        for i in range(streams)
    ]
    with tempfile.TemporaryDirectory() as directory:
        checkpoint, tokenizer = Path(directory) / "model.bin", Path(directory) / "tokenizer.bin"
        synthesize(shape_named(shape), 1, checkpoint, tokenizer)
        with open_engine("wasm").load_files(checkpoint, tokenizer) as one:
            solo_ids, solo_cpu = _solo(one, prompt, params)
            one_ids, one_cpu, _ = _batched(one, prompt, params, lambda live, _: [(one, live)])
        with open_engine("wasm", instances=2).load_files(checkpoint, tokenizer) as two:
            instances = two.models  # type: ignore[attr-defined]

            def split(live: list[int], gens: list[Any]) -> list[tuple[Any, list[int]]]:
                by_instance = [
                    (m, [i for i in live if gens[i]._driver._model is m])  # noqa: SLF001
                    for m in instances
                ]
                return [(m, indices) for m, indices in by_instance if indices]

            two_ids, path, serial = _batched(two, prompt, params, split)
    return {
        "shape": shape,
        "streams": streams,
        "temperature": temperature,
        "tokens": sum(map(len, solo_ids)),
        "solo_cpu_s": round(solo_cpu, 2),
        "one_instance_cpu_s": round(one_cpu, 2),
        "two_instances_cpu_s": round(serial, 2),
        "critical_path_s": round(path, 2),
        "one_instance_x": round(solo_cpu / one_cpu, 2),
        "two_instances_x": round(solo_cpu / path, 2),
        "identical": one_ids == solo_ids and two_ids == solo_ids,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="15M")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0)
    args = parser.parse_args(argv)
    row = run_instances(args.shape, args.streams, args.tokens, args.temperature)
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
