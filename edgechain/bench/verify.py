"""Benchmark: checking a claimed generation against making it, one row per engine and shape.

    python -m edgechain.bench.verify [--shapes 15M] [--engines wasm,native] [--tokens 256]
                                     [--temperature 0.8] [--top-p 0.9] [--repeats 3]

A deterministic synthetic model of each shape (``edgechain synth-model``'s, seed 1) is loaded
once per engine. The same query (prompt "Once upon a time", the given temperature and top-p,
seed 7, ``--tokens`` generated tokens) runs as a plain generation (token by token, as a node
streams it) and as ``LoadedModel.verify_claim`` of the tokens it produced (prefill-speed batched
passes, the sampler's rule checked at each position). Each is timed ``--repeats`` times,
alternating, and the best time counts. ``generate_tok_s`` and ``verify_tok_s`` are tokens per
second, ``ratio`` verification time / generation time (issue 23's goals at 256 tokens, 15M,
temperature 0.8: at most 0.25 native, 0.5 wasm). ``valid`` says the verdict accepted the claim.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from functools import partial
from pathlib import Path

from edgechain.bench.arguments import comma_separated
from edgechain.bench.rows import per_second, row_or_error
from edgechain.service.engine import GenerationParams, LoadedModel, open_engine
from edgechain.testing.synth import shape_named, synthesize

__all__ = ["run_row", "run_rows"]

PROMPT = "Once upon a time"


def _generate(model: LoadedModel, params: GenerationParams) -> tuple[float, list[int]]:
    started = time.perf_counter()
    ids = [t.id for t in model.generate(PROMPT, params)]
    return time.perf_counter() - started, ids


def _verify(model: LoadedModel, params: GenerationParams, ids: list[int]) -> tuple[float, bool]:
    started = time.perf_counter()
    verdict = model.verify_claim(PROMPT, params, ids)
    return time.perf_counter() - started, verdict.valid


def run_row(
    model: LoadedModel, shape: str, engine: str, params: GenerationParams, repeats: int
) -> dict[str, object]:
    """Generation and verification of one claim on a loaded model, best of ``repeats``."""
    _generate(model, GenerationParams(temperature=0, max_tokens=4))  # warm
    generate_s, verify_s, valid, tokens = float("inf"), float("inf"), True, 0
    for _ in range(repeats):
        seconds, ids = _generate(model, params)
        generate_s, tokens = min(generate_s, seconds), len(ids)
        seconds, ok = _verify(model, params, ids)
        verify_s, valid = min(verify_s, seconds), valid and ok
    return {
        "shape": shape,
        "engine": engine,
        "tokens": tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "cores": os.cpu_count(),
        "generate_s": round(generate_s, 3),
        "verify_s": round(verify_s, 3),
        "generate_tok_s": per_second(tokens, generate_s),
        "verify_tok_s": per_second(tokens, verify_s),
        "ratio": round(verify_s / generate_s, 3),
        "valid": valid,
    }


def _load_and_run(
    weights: Path,
    tokenizer: Path,
    shape: str,
    engine: str,
    params: GenerationParams,
    repeats: int,
) -> dict[str, object]:
    with open_engine(engine).load_files(weights, tokenizer) as model:
        return run_row(model, shape, engine, params, repeats)


def run_rows(
    shapes: list[str], engines: list[str], params: GenerationParams, repeats: int
) -> list[dict[str, object]]:
    """One row per shape and engine (an ``error`` entry for a row that failed)."""
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="edgechain-bench-verify-") as tmp:
        for shape in shapes:
            weights, tokenizer = Path(tmp) / f"{shape}.bin", Path(tmp) / f"{shape}-tok.bin"
            synthesize(shape_named(shape), 1, weights, tokenizer)
            for engine in engines:
                measure = partial(_load_and_run, weights, tokenizer, shape, engine, params, repeats)
                rows.append(row_or_error({"shape": shape, "engine": engine}, measure))
            weights.unlink()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="15M", help="comma-separated (default %(default)s)")
    parser.add_argument("--engines", default="wasm,native", help="default %(default)s")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    engines = comma_separated(args.engines)
    if not engines or any(e not in ("wasm", "native") for e in engines):
        parser.error("--engines: choose from wasm, native")
    params = GenerationParams(
        temperature=args.temperature, top_p=args.top_p, seed=7, max_tokens=args.tokens
    )
    shapes = comma_separated(args.shapes)
    rows = run_rows(shapes, engines, params, max(1, args.repeats))
    print(json.dumps(rows, indent=2))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
