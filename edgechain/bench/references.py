"""Reference rows for ``edgechain bench --references DIR``: llama2.c's own programs on the same
checkpoints, measured in the same run as the engines (shared machines are noisy: only ratios
within one run are meaningful).

DIR holds what ``scripts/build_references.sh`` builds: ``run`` (run.c f32, native), ``runq``
(runq.c int8, native) and ``run.wasm`` (run.c for wasm32-wasi, run here in wasmtime-py with and
without epoch interruption), and what ``scripts/build_llamacpp_reference.sh`` builds:
``llama-bench`` (llama.cpp, one thread, on each GGUF file measured: its own decode of ``steps``
tokens without a prompt, so no sampling), and what ``scripts/build_candle_wasm_reference.sh``
builds: ``candle_quantized.wasm`` (candle's own quantized Llama, the model candle's wasm examples
run, for wasm32 + simd128 like the guest; greedy from BOS, epoch interruption on). A missing
program is skipped. Each row runs in its own process, so its peak RSS is its own; the decode
rate is the program's own "achieved tok/s" line (llama2.c), llama-bench's average, or the
decode steps timed by the host (candle).

    python -m edgechain.bench.references wasm|wasm-noepoch RUN_WASM CHECKPOINT TOKENIZER STEPS
        SEED PROMPT TEMP
    python -m edgechain.bench.references candle-wasm CANDLE_WASM MODEL.gguf STEPS

runs one of them once and prints one JSON object (decode_tok_s, peak_rss_mb).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgechain.bench.engine_worker import Workload

__all__ = ["Reference", "available_references", "run_reference"]

_ACHIEVED = re.compile(r"achieved tok/s:\s*([0-9.]+)")


@dataclass(frozen=True)
class Reference:
    """One reference row: its label, the weights it reads and how it runs."""

    label: str
    weights: str  # "f32", "int8" or "gguf-TYPE"
    program: Path
    #: "native" (a llama2.c program), "wasm" / "wasm-noepoch" (run.wasm in wasmtime-py, epoch
    #: interruption on / off), "llama-bench" or "candle-wasm".
    runner: str = "native"


def available_references(directory: Path, weights: Sequence[str] = ()) -> list[Reference]:
    """The reference programs present in ``directory``, in the table's column order (llama.cpp
    once per GGUF kind of ``weights``)."""
    found = []
    if (directory / "run").is_file():
        found.append(Reference("run.c", "f32", directory / "run"))
    if (directory / "runq").is_file():
        found.append(Reference("runq.c", "int8", directory / "runq"))
    if (directory / "run.wasm").is_file():
        wasm = directory / "run.wasm"
        found.append(Reference("run.c wasm-noepoch", "f32", wasm, "wasm-noepoch"))
        found.append(Reference("run.c wasm", "f32", wasm, "wasm"))
    gguf = [kind for kind in weights if kind.startswith("gguf-")]
    bench = directory / "llama-bench"
    if bench.is_file():
        found.extend(Reference("llama.cpp", kind, bench, "llama-bench") for kind in gguf)
    candle = directory / "candle_quantized.wasm"
    if candle.is_file():
        found.extend(Reference("candle wasm", kind, candle, "candle-wasm") for kind in gguf)
    return found


def _args(checkpoint: str, tokenizer: str, work: Workload) -> list[str]:
    # run.c's flags; its top-p (0.9) is the engines' default too.
    return [checkpoint, "-z", tokenizer, "-t", f"{work.temperature:g}", "-p", "0.9",
            "-s", str(work.seed), "-n", str(work.steps), "-i", work.prompt]  # fmt: skip


def _parse(stderr: str, engine: str) -> dict[str, object]:
    match = _ACHIEVED.search(stderr)
    if match is None:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        return {"engine": engine, "error": lines[-1] if lines else "no tok/s reported"}
    return {"engine": engine, "decode_tok_s": float(match.group(1))}


def run_reference(
    ref: Reference, checkpoint: Path, tokenizer: Path, work: Workload
) -> dict[str, object]:
    """One measurement in a subprocess: decode_tok_s and peak_rss_mb, or an ``error`` entry."""
    if ref.runner == "llama-bench":
        return _run_llama_bench(ref, checkpoint, work.steps)
    in_python = [sys.executable, "-m", "edgechain.bench.references", ref.runner, str(ref.program)]
    if ref.runner == "native":
        cmd = [str(ref.program), *_args(str(checkpoint), str(tokenizer), work)]
    elif ref.runner == "candle-wasm":
        cmd = [*in_python, str(checkpoint), str(work.steps)]
    else:
        cmd = [*in_python, str(checkpoint), str(tokenizer), *work.to_argv()]
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, text=True)
        # wait4: this child's own rusage (its peak RSS, KiB on Linux), not all children's.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    rss = usage.ru_maxrss / 1024
    if ref.runner != "native":
        if proc.returncode != 0 or not out.strip():
            return {"engine": ref.label, "error": (err.strip().splitlines() or ["failed"])[-1]}
        return {**json.loads(out.strip().splitlines()[-1]), "engine": ref.label}
    row = _parse(err, ref.label)
    if proc.returncode != 0 and "error" not in row:
        row = {"engine": ref.label, "error": f"exit {proc.returncode}"}
    if "error" not in row:
        row["peak_rss_mb"] = rss
    return row


def _run_llama_bench(ref: Reference, model: Path, steps: int) -> dict[str, object]:
    cmd = [str(ref.program), "-m", str(model), "-t", "1", "-p", "0", "-n", str(steps),
           "-r", "1", "-o", "json"]  # fmt: skip
    # A shared-library build keeps its libraries beside the program.
    env = {**os.environ, "LD_LIBRARY_PATH": str(ref.program.parent)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    try:
        tests = json.loads(proc.stdout)
        rate = next(float(t["avg_ts"]) for t in tests if t.get("n_gen", 0) > 0)
    except (ValueError, StopIteration, KeyError, TypeError):
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return {"engine": ref.label, "error": lines[-1] if lines else f"exit {proc.returncode}"}
    return {"engine": ref.label, "decode_tok_s": rate}


def _wasmtime_store(program: str, epochs: bool) -> tuple[Any, Any, Any]:
    """An engine, module and store for ``program``; with ``epochs``, epoch interruption on and
    ticking like the engine's."""
    import wasmtime

    config = wasmtime.Config()
    config.epoch_interruption = epochs
    engine = wasmtime.Engine(config)
    module = wasmtime.Module.from_file(engine, program)
    store = wasmtime.Store(engine)
    if epochs:
        store.set_epoch_deadline(1 << 40)

        def tick() -> None:
            while True:
                time.sleep(0.01)
                engine.increment_epoch()

        threading.Thread(target=tick, daemon=True).start()
    return engine, module, store


def _run_wasm(argv: list[str]) -> dict[str, object]:
    """Run run.wasm as a WASI command in wasmtime-py, epoch interruption on or off."""
    import wasmtime

    from edgechain.bench.engine_worker import peak_rss_mb

    kind, program, checkpoint, tokenizer = argv[:4]
    engine, module, store = _wasmtime_store(program, epochs=kind == "wasm")
    ckpt, tok = Path(checkpoint).resolve(), Path(tokenizer).resolve()
    wasi = wasmtime.WasiConfig()
    wasi.preopen_dir(str(ckpt.parent), "/m")
    wasi.preopen_dir(str(tok.parent), "/t")
    args = _args(f"/m/{ckpt.name}", f"/t/{tok.name}", Workload.from_argv(argv[4:8]))
    wasi.argv = ["run", *args]
    with tempfile.TemporaryDirectory() as tmp:
        out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        wasi.stdout_file = out_path
        wasi.stderr_file = err_path
        store.set_wasi(wasi)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        instance = linker.instantiate(store, module)
        try:
            instance.exports(store)["_start"](store)
        except wasmtime.ExitTrap as exit_trap:
            if exit_trap.code != 0:
                raise
        stderr = Path(err_path).read_text(errors="replace")
    row = _parse(stderr, kind)
    row["peak_rss_mb"] = peak_rss_mb()
    return row


def _run_candle_wasm(argv: list[str]) -> dict[str, object]:
    """Run candle's quantized Llama in wasmtime-py: load the file, then ``steps`` greedy decode
    steps from BOS, timed here (the load is not counted, as llama2.c's figure excludes it)."""
    import wasmtime

    from edgechain.bench.engine_worker import peak_rss_mb

    program, model, steps = argv[0], Path(argv[1]), int(argv[2])
    engine, module, store = _wasmtime_store(program, epochs=True)
    exports = wasmtime.Linker(engine).instantiate(store, module).exports(store)
    data = model.read_bytes()
    size = len(data)
    pointer = exports["ref_alloc"](store, size)
    exports["memory"].write(store, data, pointer)
    del data
    if exports["ref_load"](store, pointer, size) != 0:
        return {"engine": "candle wasm", "error": f"candle could not load {model.name}"}
    token, started, cpu = 1, time.perf_counter(), time.process_time()
    for position in range(steps):
        token = exports["ref_step"](store, token, position)
        if token < 0:
            return {"engine": "candle wasm", "error": f"candle's forward failed at {position}"}
    rate = steps / (time.perf_counter() - started)
    cpu_rate = steps / max(time.process_time() - cpu, 1e-9)
    return {"engine": "candle wasm", "decode_tok_s": rate, "decode_cpu_tok_s": cpu_rate,
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


if __name__ == "__main__":
    _RUNNERS = {"candle-wasm": _run_candle_wasm}
    run = _RUNNERS.get(sys.argv[1])
    print(json.dumps(run(sys.argv[2:]) if run else _run_wasm(sys.argv[1:])))
