"""Benchmark of a service query over loopback: cold (fetch + verify + load + first token) and warm.

    python -m edgechain.bench.query [--shape 15M] [--tokens 64] [--engine wasm]

A deterministic synthetic model of the shape is served over loopback, published on a fresh
4-validator network (:mod:`edgechain.bench.network`) and queried through the client. "Cold"
uses an empty content cache and a new service (the compiled guest may come from the on-disk
module cache, as it would in a second process); "warm" is the same query again on the loaded
model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from edgechain.bench.network import BENCH_MODEL, synthetic_model_network
from edgechain.service.engine import ENGINE_KINDS, open_engine
from edgechain.service.query import GenerateQuery
from edgechain.service.runtime import GenerationRecord


def _row(label: str, wall_s: float, record: GenerationRecord) -> dict[str, float | str]:
    t = record.timings
    return {
        "query": label,
        "wall_ms": round(wall_s * 1000, 1),
        "fetch_ms": round(t.fetch_s * 1000, 1),
        "load_ms": round(t.load_s * 1000, 1),
        "first_token_ms": round(t.first_token_s * 1000, 1),
        "decode_tok_s": round(t.decode_tokens_per_s, 1),
    }


def run(shape_name: str, tokens: int, engine_kind: str) -> list[dict[str, float | str]]:
    """Run the cold and warm queries; return one row per query."""
    rows = []
    with synthetic_model_network(shape_name, 0, engine=open_engine(engine_kind)) as client:
        query = GenerateQuery(model=BENCH_MODEL, prompt="Once upon a time", max_tokens=1, seed=1)
        for label in ("cold, 1 token", "warm, 1 token"):
            started = time.perf_counter()
            record = client.generate(query).collect()
            rows.append(_row(label, time.perf_counter() - started, record))
        longer = dataclasses.replace(query, max_tokens=tokens)
        started = time.perf_counter()
        record = client.generate(longer).collect()
        rows.append(_row(f"warm, {tokens} tokens", time.perf_counter() - started, record))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="15M")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--engine", default="wasm", choices=ENGINE_KINDS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = run(args.shape, args.tokens, args.engine)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = list(rows[0])
    print(f"service query, shape {args.shape}, engine {args.engine}, loopback HTTP")
    print("  ".join(f"{c:>16}" for c in columns))
    for row in rows:
        print("  ".join(f"{row[c]!s:>16}" for c in columns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
