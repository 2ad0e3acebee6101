"""``edgechain bench``: the engine benchmark's options; the measuring is in
:mod:`edgechain.bench.engine`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgechain.cli.common import bounded_int, ensure_directory
from edgechain.cli.network_options import add_json_option
from edgechain.errors import GenerationError, InvalidParameter
from edgechain.service.engine.base import text_to_utf8
from edgechain.service.engine.model_files import MAX_SEQ_LEN

NAME = "bench"
HELP = "benchmark the engines on synthetic stories-shaped models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register bench's flags."""
    parser.add_argument(
        "--shapes", default="15M,42M,110M", help="comma-separated (default %(default)s)"
    )
    parser.add_argument(
        "--engines",
        default="wasm,native",
        help="comma-separated wasm, native, native-tN (N threads; native alone: "
        "$EDGECHAIN_THREADS, else the cores), wasm-iN (N guest instances per model; wasm "
        "alone: $EDGECHAIN_WASM_INSTANCES, else 1), wasm-noepoch (the guest without epoch "
        "interruption, to measure its cost) (default %(default)s)",
    )
    parser.add_argument(
        "--steps",
        type=bounded_int(2, MAX_SEQ_LEN),
        default=256,
        help="positions incl. prompt (default 256)",
    )
    parser.add_argument(
        "--seed",
        type=bounded_int(0, 2**64 - 1),
        default=1,
        help="weights and sampling seed (default 1)",
    )
    parser.add_argument(
        "--weights",
        default="f32",
        help="comma-separated f32, int8, gguf-f32, gguf-f16, gguf-q8_0, gguf-q4_0, ... "
        "(default %(default)s; int8 = the model after `edgechain quantize` with its default "
        "group size; gguf-TYPE = the model after `edgechain convert --type TYPE`)",
    )
    parser.add_argument("--prompt", default="Once upon a time", help="prompt (default %(default)r)")
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="sampling temperature, top-p 0.9 (default %(default)s; 0: greedy)",
    )
    parser.add_argument(
        "--references",
        metavar="DIR",
        help="also measure llama2.c's run, runq and run.wasm found in DIR "
        "(built by scripts/build_references.sh)",
    )
    parser.add_argument(
        "--repeat",
        type=bounded_int(1, 100),
        default=1,
        help="measure every row this many times, interleaved; report medians (default 1)",
    )
    parser.add_argument(
        "--cache-dir", help="where synthetic models are kept (default per-user cache)"
    )
    parser.add_argument(
        "--streams",
        type=bounded_int(2, 256),
        help="instead of the engine rows: N concurrent generations through the service against "
        "one at a time (continuous batching; --steps counts tokens per stream)",
    )
    add_json_option(parser, "print JSON instead of a table")


def _split(value: str, allowed: tuple[str, ...] | None, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise InvalidParameter(f"--{what} is empty")
    if allowed is not None:
        for item in items:
            if item not in allowed:
                raise InvalidParameter(
                    f"unknown {what[:-1]} {item!r}: choose from {', '.join(allowed)}"
                )
    return items


def execute(args: argparse.Namespace) -> int:
    """Check the options, measure, print."""
    from edgechain.bench.engine import (
        default_model_dir,
        format_table,
        run_engine_benchmark,
        weight_kinds,
    )
    from edgechain.bench.engine_worker import Workload, engine_options
    from edgechain.testing.synth import SHAPES

    shapes = _split(args.shapes, tuple(SHAPES), "shapes")
    engines = _split(args.engines, None, "engines")
    for engine in engines:
        if engine_options(engine) is None:
            raise InvalidParameter(
                f"unknown engine {engine!r}: choose from wasm, native, native-tN, wasm-noepoch"
            )
    weights = _split(args.weights, weight_kinds(), "weights")
    text_to_utf8(args.prompt, "--prompt")  # InvalidText now, not once per measured row
    if not args.temperature >= 0.0 or args.temperature == float("inf"):
        raise InvalidParameter(
            f"--temperature must be a finite number >= 0, got {args.temperature}"
        )
    if args.streams is not None:
        from edgechain.bench.streams import format_streams_table, run_streams_benchmark

        rows = run_streams_benchmark(
            shapes, engines, args.streams, args.steps, args.prompt, args.temperature
        )
        print(json.dumps(rows, indent=2) if args.json else format_streams_table(rows))
        return GenerationError.exit_code if any("error" in r for r in rows) else 0
    directory = ensure_directory(
        Path(args.cache_dir) if args.cache_dir else default_model_dir(), "--cache-dir"
    )
    references = None
    if args.references is not None:
        references = Path(args.references)
        if not references.is_dir():
            raise InvalidParameter(f"--references: no such directory: {references}")
    results = run_engine_benchmark(
        directory,
        shapes,
        engines,
        weights,
        Workload(args.steps, args.seed, args.prompt, args.temperature),
        references=references,
        repeat=args.repeat,
    )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_table(results))
    # Rows that failed are shown, and the exit code says the run was incomplete.
    return GenerationError.exit_code if any("error" in r for r in results) else 0
