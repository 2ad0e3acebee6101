"""Reference rows for ``edgechain bench --references DIR``: llama2.c's own programs on the same
checkpoints, measured in the same run as the engines (shared machines are noisy: only ratios
within one run are meaningful).

DIR holds what ``scripts/build_references.sh`` builds: ``run`` (run.c f32, native), ``runq``
(runq.c int8, native) and ``run.wasm`` (run.c for wasm32-wasi, run here in wasmtime-py with and
without epoch interruption), and what ``scripts/build_llamacpp_reference.sh`` builds:
``llama-bench`` (llama.cpp, one thread, on each GGUF file measured: its own decode of ``steps``
tokens without a prompt, so no sampling). A missing program is skipped. Each row runs in its own
process, so its peak RSS is its own; the decode rate is the program's own "achieved tok/s" line.

    python -m edgechain.bench.references wasm|wasm-noepoch RUN_WASM CHECKPOINT TOKENIZER STEPS
        SEED PROMPT TEMP

runs run.wasm once and prints one JSON object (decode_tok_s, peak_rss_mb).
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

__all__ = ["Reference", "available_references", "run_reference"]

_ACHIEVED = re.compile(r"achieved tok/s:\s*([0-9.]+)")


@dataclass(frozen=True)
class Reference:
    """One reference row: its label, the weights it reads and how it runs."""

    label: str
    weights: str  # "f32", "int8" or "gguf-TYPE"
    program: Path
    wasm_epochs: bool | None = None  # None: a native program
    llama_bench: bool = False  # llama.cpp's llama-bench rather than a llama2.c program


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
        found.append(Reference("run.c wasm-noepoch", "f32", wasm, wasm_epochs=False))
        found.append(Reference("run.c wasm", "f32", wasm, wasm_epochs=True))
    bench = directory / "llama-bench"
    if bench.is_file():
        gguf = [kind for kind in weights if kind.startswith("gguf-")]
        found.extend(Reference("llama.cpp", kind, bench, llama_bench=True) for kind in gguf)
    return found


def _args(checkpoint: str, tokenizer: str, steps: int, seed: int, prompt: str, temp: float):
    # run.c's flags; its top-p (0.9) is the engines' default too.
    return [checkpoint, "-z", tokenizer, "-t", f"{temp:g}", "-p", "0.9", "-s", str(seed),
            "-n", str(steps), "-i", prompt]  # fmt: skip


def _parse(stderr: str, engine: str) -> dict[str, object]:
    match = _ACHIEVED.search(stderr)
    if match is None:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        return {"engine": engine, "error": lines[-1] if lines else "no tok/s reported"}
    return {"engine": engine, "decode_tok_s": float(match.group(1))}


def run_reference(
    ref: Reference,
    checkpoint: Path,
    tokenizer: Path,
    steps: int,
    seed: int,
    prompt: str,
    temperature: float,
) -> dict[str, object]:
    """One measurement in a subprocess: decode_tok_s and peak_rss_mb, or an ``error`` entry."""
    args = _args(str(checkpoint), str(tokenizer), steps, seed, prompt, temperature)
    if ref.llama_bench:
        return _run_llama_bench(ref, checkpoint, steps)
    if ref.wasm_epochs is None:
        cmd = [str(ref.program), *args]
    else:
        kind = "wasm" if ref.wasm_epochs else "wasm-noepoch"
        cmd = [sys.executable, "-m", "edgechain.bench.references", kind, str(ref.program)]
        cmd += [str(checkpoint), str(tokenizer), str(steps), str(seed), prompt, str(temperature)]
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, text=True)
        # wait4: this child's own rusage (its peak RSS, KiB on Linux), not all children's.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    rss = usage.ru_maxrss / 1024
    if ref.wasm_epochs is not None:
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


def _run_wasm(argv: list[str]) -> dict[str, object]:
    """Run run.wasm as a WASI command in wasmtime-py, epoch interruption on (ticking like the
    engine's) or off."""
    import wasmtime

    from edgechain.bench.engine_worker import peak_rss_mb

    kind, program, checkpoint, tokenizer, steps, seed, prompt, temp = argv[:8]
    epochs = kind == "wasm"
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
    ckpt, tok = Path(checkpoint).resolve(), Path(tokenizer).resolve()
    wasi = wasmtime.WasiConfig()
    wasi.preopen_dir(str(ckpt.parent), "/m")
    wasi.preopen_dir(str(tok.parent), "/t")
    args = _args(f"/m/{ckpt.name}", f"/t/{tok.name}", int(steps), int(seed), prompt, float(temp))
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


if __name__ == "__main__":
    print(json.dumps(_run_wasm(sys.argv[1:])))
