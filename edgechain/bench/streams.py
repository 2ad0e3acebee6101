"""Benchmark: concurrent generations of one model (continuous batching, service/engine/batcher.py)
against one at a time, through the service (``edgechain bench --streams N``, or
``python -m edgechain.bench.streams``).

A deterministic synthetic model of the shape is served over loopback and published on a fresh
network; the service loads it once (not timed). Each of N queries (`--temperature`, default
1.0, its own seed) runs alone, one after the other, then all N at once, each in its own thread as
the node runs its streams. ``solo_tok_s`` is the solo runs' total tokens over their total time,
``concurrent_tok_s`` the concurrent runs' total tokens over the wall time; ``identical`` says
every concurrent stream's token ids equal its solo run's; ``mean_batch`` is the model's steps per
engine call while they ran. ``solo_cpu_tok_s`` and ``concurrent_cpu_tok_s`` count tokens per
second of the process's CPU time (steadier than wall time on a shared machine: batching shows as
fewer CPU seconds per token), ``busy_cores`` the concurrent phase's CPU seconds per wall second (how
many cores the streams kept busy).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Sequence

from edgechain.bench.engine_worker import open_labelled_engine
from edgechain.bench.network import BENCH_MODEL, synthetic_model_network
from edgechain.bench.rows import per_second, row_or_error
from edgechain.service.query import GenerateQuery
from edgechain.service.runtime import ModelService

__all__ = ["format_streams_table", "run_streams", "run_streams_benchmark"]


def _tokens(service: ModelService, query: GenerateQuery) -> list[int]:
    stream = service.start(service.prepare(query))
    stream.collect()
    return list(stream.token_ids)


def run_streams(
    shape_name: str,
    engine: str,
    streams: int,
    tokens: int,
    prompt: str = "Once upon a time",
    temperature: float = 1.0,
) -> dict[str, object]:
    """One row: ``streams`` queries run one by one, then all at once, on ``engine``."""
    opened = open_labelled_engine(engine)
    with synthetic_model_network(shape_name, 1, validators=1, engine=opened) as c:
        service = c.service
        queries = [
            GenerateQuery(
                model=BENCH_MODEL,
                prompt=prompt,
                temperature=temperature,
                seed=1000 + i,
                max_tokens=tokens,
            )
            for i in range(streams)
        ]
        _tokens(service, queries[0])  # loads the model
        started, cpu_started = time.perf_counter(), time.process_time()
        solo = [_tokens(service, q) for q in queries]
        solo_s = time.perf_counter() - started
        solo_cpu_s = time.process_time() - cpu_started
        prepared = [service.prepare(q) for q in queries]
        results: list[list[int] | BaseException] = [[] for _ in queries]
        barrier = threading.Barrier(streams + 1)

        def one(i: int) -> None:
            # Every generation is started (a member of the model's batcher) before any steps,
            # so the first steps already wait for each other instead of racing the starts.
            try:
                stream = service.start(prepared[i])
            except BaseException as err:  # reported in the row
                results[i] = err
                barrier.wait()
                return
            barrier.wait()
            try:
                stream.collect()
                results[i] = list(stream.token_ids)
            except BaseException as err:  # reported in the row
                results[i] = err

        threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
        for t in threads:
            t.start()
        (loaded,) = service._models.values()  # noqa: SLF001 - the one model the queries share
        batcher = loaded._step_batcher()  # noqa: SLF001
        calls, steps = batcher.calls, batcher.steps
        barrier.wait()
        started, cpu_started = time.perf_counter(), time.process_time()
        for t in threads:
            t.join()
        concurrent_s = time.perf_counter() - started
        concurrent_cpu_s = time.process_time() - cpu_started
        calls, steps = batcher.calls - calls, batcher.steps - steps
        errors = [str(r) for r in results if isinstance(r, BaseException)]
        solo_tokens = sum(len(ids) for ids in solo)
        concurrent_tokens = sum(len(r) for r in results if isinstance(r, list))
        solo_rate = solo_tokens / solo_s
        concurrent_rate = concurrent_tokens / concurrent_s
        return {
            "shape": shape_name,
            "engine": engine,
            "streams": streams,
            "tokens_per_stream": tokens,
            "cores": os.cpu_count(),
            "solo_tok_s": per_second(solo_tokens, solo_s),
            "concurrent_tok_s": per_second(concurrent_tokens, concurrent_s),
            "speedup": round(concurrent_rate / solo_rate, 2),
            "solo_cpu_tok_s": per_second(solo_tokens, solo_cpu_s),
            "concurrent_cpu_tok_s": per_second(concurrent_tokens, concurrent_cpu_s),
            "busy_cores": round(concurrent_cpu_s / concurrent_s, 2),
            "identical": not errors and results == solo,
            "mean_batch": round(steps / calls, 2) if calls else None,
            **({"errors": errors[:3]} if errors else {}),
        }


def run_streams_benchmark(
    shapes: Sequence[str],
    engines: Sequence[str],
    streams: int,
    tokens: int,
    prompt: str = "Once upon a time",
    temperature: float = 1.0,
) -> list[dict[str, object]]:
    """One row per (shape, engine); a row that failed has an ``error`` entry."""
    return [
        row_or_error(
            {"shape": shape, "engine": engine},
            lambda shape=shape, engine=engine: run_streams(
                shape, engine, streams, tokens, prompt, temperature
            ),
        )
        for shape in shapes
        for engine in engines
    ]


def format_streams_table(rows: list[dict[str, object]]) -> str:
    """A plain-text table, one line per (shape, engine)."""
    lines = [
        "shape  engine   streams  1 stream tok/s  N streams tok/s  speedup  identical  batch"
        "  cpu tok/s 1 / N  busy cores"
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['shape']:<5}  {r['engine']:<6}  error: {r['error']}")
            continue
        lines.append(
            f"{r['shape']:<5}  {r['engine']:<7}  {r['streams']:>7}  {r['solo_tok_s']:>14}  "
            f"{r['concurrent_tok_s']:>15}  {r['speedup']:>6}x  {str(r['identical']):>9}  "
            f"{r['mean_batch']!s:>5}  {r['solo_cpu_tok_s']:>7} / {r['concurrent_cpu_tok_s']:<7}"
            f"  {r['busy_cores']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="15M")
    parser.add_argument("--engines", default="wasm,native")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = run_streams_benchmark([args.shape], args.engines.split(","), args.streams, args.tokens)
    print(json.dumps(rows, indent=2) if args.json else format_streams_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
