"""The engine benchmark behind ``edgechain bench``: load time, time to first token, decode
tokens/s and peak RSS per (shape, weights, engine).

Synthetic models of the stories shapes are written once into a cache directory and reused. Each
measurement runs in a fresh subprocess (:mod:`edgechain.bench.engine_worker`) so its peak RSS is
its own. With a directory of llama2.c builds, the same run measures them too
(:mod:`edgechain.bench.references`); with ``repeat`` > 1 every row is measured that many times,
interleaved, and the medians are reported (a shared machine's load drifts between rows).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from edgechain.bench.engine_worker import Measurement, Workload
from edgechain.errors import InvalidCheckpoint
from edgechain.service.engine import ENGINE_KINDS
from edgechain.service.engine.model_files import read_checkpoint_header
from edgechain.service.engine.module_cache import user_cache_dir

__all__ = [
    "default_model_dir",
    "ensure_gguf",
    "ensure_int8",
    "ensure_model",
    "ensure_weights",
    "format_table",
    "run_engine_benchmark",
    "run_worker",
    "weight_kinds",
]


def default_model_dir() -> Path:
    """$EDGECHAIN_CACHE_DIR/bench-models, else $XDG_CACHE_HOME (~/.cache)/edgechain/bench-models."""
    return user_cache_dir("bench-models")


def ensure_model(directory: Path, shape_name: str, seed: int) -> tuple[Path, Path]:
    """The synthetic checkpoint and tokenizer for ``shape_name``, written unless present."""
    from edgechain.testing.synth import shape_named, synthesize

    shape = shape_named(shape_name)
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = directory / f"synth-{shape_name}-seed{seed}.bin"
    tokenizer = directory / f"synth-tokenizer-{shape.vocab_size}.bin"
    if not checkpoint.is_file() or checkpoint.stat().st_size != shape.file_size():
        print(f"synthesising {shape_name} -> {checkpoint}", file=sys.stderr)
        synthesize(shape, seed, checkpoint, tokenizer)
    elif not tokenizer.is_file():
        synthesize(shape, seed, checkpoint, tokenizer)
    return checkpoint, tokenizer


def ensure_int8(checkpoint: Path) -> Path:
    """``checkpoint`` quantized (default group size) next to it, written unless present."""
    from edgechain.quantize import quantize_checkpoint

    out = checkpoint.with_name(f"{checkpoint.stem}-int8.bin")
    try:
        if read_checkpoint_header(out).group_size is not None:
            return out
    except InvalidCheckpoint:
        pass  # absent, or left half-written by an interrupted run: written again
    print(f"quantizing {checkpoint.name} -> {out}", file=sys.stderr)
    quantize_checkpoint(checkpoint, out)
    return out


def weight_kinds() -> tuple[str, ...]:
    """The weights a row may read: the synthetic f32 checkpoint, its runq.c int8 quantization,
    or the same model converted to a GGUF file of each type ``edgechain convert`` writes."""
    from edgechain.convert import TYPES

    return ("f32", "int8", *(f"gguf-{kind}" for kind in TYPES))


def ensure_gguf(checkpoint: Path, tokenizer: Path, kind: str) -> Path:
    """``checkpoint`` and ``tokenizer`` as one GGUF file of type ``kind`` next to them,
    written unless present (the converter writes atomically: a file there is complete)."""
    from edgechain.convert import convert_to_gguf

    out = checkpoint.with_name(f"{checkpoint.stem}-{kind}.gguf")
    if not out.is_file():
        print(f"converting {checkpoint.name} -> {out}", file=sys.stderr)
        convert_to_gguf(checkpoint, tokenizer, out, kind)
    return out


def ensure_weights(f32: Path, tokenizer: Path, kind: str) -> tuple[Path, Path | None]:
    """The model file for weights ``kind`` and the tokenizer to load with it (None: a GGUF
    file carries its own)."""
    if kind == "f32":
        return f32, tokenizer
    if kind == "int8":
        return ensure_int8(f32), tokenizer
    return ensure_gguf(f32, tokenizer, kind.removeprefix("gguf-")), None


def run_worker(run: Measurement) -> dict[str, object]:
    """One measurement in a subprocess; an error entry (not an exception) if it fails."""
    cmd = [sys.executable, "-m", "edgechain.bench.engine_worker", *run.to_argv()]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        message = lines[-1].removeprefix("error: ") if lines else f"exit {proc.returncode}"
        return {"engine": run.engine, "error": message}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_engine_benchmark(
    directory: Path,
    shapes: Sequence[str],
    engines: Sequence[str],
    weights: Sequence[str],
    work: Workload,
    *,
    references: Path | None = None,
    repeat: int = 1,
) -> list[dict[str, object]]:
    """One row per (shape, weights kind, engine), each generating ``work``, then per reference
    program found in ``references``: the worker's figures plus ``shape``, ``weights`` and
    ``file_mb``, or an ``error`` entry for a measurement that failed. With ``repeat`` > 1, the
    median of each figure over that many interleaved measurements (``repeats``: how many
    succeeded)."""
    from edgechain.bench.references import available_references, run_reference

    if "wasm" in engines or "wasm-noepoch" in engines:
        _warm_wasm_cache()
    refs = available_references(references, weights) if references is not None else []
    plan: list[tuple[dict[str, object], Callable[[], dict[str, object]]]] = []
    for shape in shapes:
        f32, tokenizer = ensure_model(directory, shape, work.seed)
        files = {kind: ensure_weights(f32, tokenizer, kind) for kind in weights}
        for kind, (checkpoint, its_tokenizer) in files.items():
            for engine in engines:
                run = Measurement(engine, checkpoint, its_tokenizer, work)
                key = _row_key(shape, kind, checkpoint, engine)
                plan.append((key, lambda r=run: run_worker(r)))
        for ref in refs:
            checkpoint, _ = files.get(ref.weights) or ensure_weights(f32, tokenizer, ref.weights)
            args2 = (ref, checkpoint, tokenizer, work)
            key = _row_key(shape, ref.weights, checkpoint, ref.label)
            plan.append((key, lambda a=args2: run_reference(*a)))
    runs: list[list[dict[str, object]]] = [[] for _ in plan]
    for rep in range(repeat):
        for (key, measure), done in zip(plan, runs, strict=True):
            note = f" ({rep + 1}/{repeat})" if repeat > 1 else ""
            what = f"{key['shape']} {key['weights']} on {key['engine']}"
            print(f"measuring {what}{note}", file=sys.stderr)
            done.append({**key, **measure()})
    return [_median_row(rows) for rows in runs]


def _row_key(shape: str, kind: str, checkpoint: Path, engine: str) -> dict[str, object]:
    size = checkpoint.stat().st_size / 2**20
    return {"shape": shape, "weights": kind, "file_mb": size, "engine": engine}


def _median_row(rows: list[dict[str, object]]) -> dict[str, object]:
    """The first successful row with every numeric figure replaced by its median over the
    successful rows; the last error if none succeeded."""
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return rows[-1]
    if len(rows) == 1:
        return ok[0]
    merged = dict(ok[0])
    for name, value in ok[0].items():
        if isinstance(value, float):
            values = [r[name] for r in ok if isinstance(r.get(name), int | float)]
            merged[name] = statistics.median(values)  # type: ignore[arg-type]
    merged["repeats"] = len(ok)
    return merged


def _warm_wasm_cache() -> None:
    """Compile the guest once up front so no measured process pays for Cranelift."""
    from edgechain.service.engine import open_engine

    try:
        engine = open_engine("wasm")
    except Exception as err:  # noqa: BLE001 - the worker will report the same error per row
        print(f"warning: {err}", file=sys.stderr)
        return
    print(
        f"wasm guest module: {engine.module_source} in {engine.module_seconds:.2f} s",
        file=sys.stderr,
    )


def _fmt(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(results: list[dict[str, object]]) -> str:
    """A plain-text table, one row per (shape, weights, engine)."""
    header = ("shape", "engine", "load s", "1st token ms", "decode tok/s", "tokens", "peak RSS MB")
    rows = [header]
    for r in results:
        label = str(r["engine"])
        if r.get("weights", "f32") != "f32":
            label += f" {r['weights']}"
        if "error" in r:
            rows.append((str(r["shape"]), label, f"error: {r['error']}", "", "", "", ""))
            continue
        first = r.get("first_token_s")
        rows.append(
            (
                str(r["shape"]),
                label,
                _fmt(r.get("load_s"), ".2f"),
                _fmt(None if first is None else float(first) * 1000, ".0f"),
                _fmt(r.get("decode_tok_s"), ".1f"),
                _fmt(r.get("generated_tokens"), "d"),
                _fmt(r.get("peak_rss_mb"), ".0f"),
            )
        )
    widths = [max(len(row[i]) for row in rows if not row[i].startswith("error")) for i in range(7)]
    lines = []
    for row in rows:
        if row[2].startswith("error"):
            lines.append(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}")
        else:
            lines.append(
                "  ".join(
                    c.rjust(w) if i > 1 else c.ljust(w)
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )
    lines.extend(_ratios(results))
    return "\n".join(lines)


#: (numerator, denominator, what the ratio says), as (engine, weights) pairs; shown when both
#: rows were measured. The references' rows come from ``edgechain.bench.references``.
_REFERENCE_RATIOS = (
    (("wasm", "int8"), ("run.c", "f32"), "wasm int8 decodes at {:.2f}x run.c f32 native"),
    (("native", "int8"), ("runq.c", "int8"), "native int8 decodes at {:.2f}x runq.c"),
    (("native", "f32"), ("run.c", "f32"), "native f32 decodes at {:.2f}x run.c"),
    (
        ("wasm-noepoch", "f32"),
        ("run.c wasm-noepoch", "f32"),
        "wasm f32 decodes at {:.2f}x run.c wasm, both without epoch interruption",
    ),
    (
        ("wasm", "f32"),
        ("run.c wasm", "f32"),
        "wasm f32 decodes at {:.2f}x run.c wasm, both with epoch interruption",
    ),
    (("wasm", "f32"), ("wasm-noepoch", "f32"), "epoch interruption: wasm f32 at {:.2f}x"),
    (("wasm", "int8"), ("wasm-noepoch", "int8"), "epoch interruption: wasm int8 at {:.2f}x"),
    (
        ("run.c wasm", "f32"),
        ("run.c wasm-noepoch", "f32"),
        "epoch interruption: run.c wasm at {:.2f}x",
    ),
)


def _ratios(results: list[dict[str, object]]) -> list[str]:
    """Per shape: wasm's decode rate relative to native's (per weights kind), int8's relative
    to f32's (per engine), and the reference comparisons, where both rows were measured."""
    rates: dict[str, dict[tuple[str, str], float]] = {}
    for r in results:
        rate = r.get("decode_tok_s")
        if isinstance(rate, int | float) and rate > 0:
            key = (str(r["engine"]), str(r.get("weights", "f32")))
            rates.setdefault(str(r["shape"]), {})[key] = float(rate)
    lines = []
    for shape, by in rates.items():
        for kind in dict.fromkeys(k for _, k in by):
            if ("wasm", kind) in by and ("native", kind) in by:
                suffix = "" if kind == "f32" else f" ({kind})"
                ratio = by[("wasm", kind)] / by[("native", kind)]
                lines.append(f"{shape}: wasm decodes at {ratio:.2f}x native{suffix}")
        for engine in ENGINE_KINDS:
            for kind in dict.fromkeys(k for _, k in by):
                if kind != "f32" and (engine, "f32") in by and (engine, kind) in by:
                    ratio = by[(engine, kind)] / by[(engine, "f32")]
                    lines.append(f"{shape}: {engine} {kind} decodes at {ratio:.2f}x its f32")
        for kind in ("f32", "int8"):
            one = by.get(("native-t1", kind))
            for (engine, k), rate in sorted(by.items()):
                if not one or k != kind or engine == "native-t1":
                    continue
                if engine.startswith("native-t") or engine == "native":
                    threads = engine.removeprefix("native-t") if engine != "native" else "default"
                    lines.append(
                        f"{shape}: native {kind} with {threads} threads decodes at "
                        f"{rate / one:.2f}x one thread"
                    )
        for engine, kind in list(by):
            ours = engine in ENGINE_KINDS or engine.startswith("native-t")
            if kind.startswith("gguf-") and ours and ("llama.cpp", kind) in by:
                ratio = by[(engine, kind)] / by[("llama.cpp", kind)]
                what = f"{engine} {kind} decodes at {ratio:.2f}x llama.cpp (one thread)"
                lines.append(f"{shape}: {what}")
            if kind.startswith("gguf-") and engine == "wasm" and ("candle wasm", kind) in by:
                ratio = by[(engine, kind)] / by[("candle wasm", kind)]
                lines.append(f"{shape}: wasm {kind} decodes at {ratio:.2f}x candle's wasm build")
        for top, bottom, text in _REFERENCE_RATIOS:
            if top in by and bottom in by:
                lines.append(f"{shape}: " + text.format(by[top] / by[bottom]))
    return lines
