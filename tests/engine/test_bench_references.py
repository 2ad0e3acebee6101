"""`edgechain bench --references DIR`, `--repeat` and the wasm-noepoch rows.

The reference programs here are stand-ins (CI never builds llama2.c): shell scripts that print
run.c's "achieved tok/s" line, and a tiny WASI command that does the same, so the rows, the
arguments they receive and the WASI runner are checked for real.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import wasmtime
from engine_helpers import assert_clean_error, run_cli

from edgechain.bench.engine import format_table
from edgechain.errors import InvalidParameter
from edgechain.service.engine import open_engine

_WASI_RUN = """
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "achieved tok/s: 7.500000\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 25))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_reference_rows_run_the_programs_with_the_benchmarks_arguments(tmp_path: Path) -> None:
    refs, models = tmp_path / "refs", tmp_path / "models"
    refs.mkdir()
    _script(refs / "run", f'echo "$@" >> {tmp_path}/run.args\necho "achieved tok/s: 50.5" >&2\n')
    _script(refs / "runq", f'echo "$@" >> {tmp_path}/runq.args\necho "achieved tok/s: 80" >&2\n')
    (refs / "run.wasm").write_bytes(wasmtime.wat2wasm(_WASI_RUN))
    args = ("bench", "--shapes", "260K", "--engines", "native", "--weights", "f32,int8")
    args += ("--steps", "16", "--temperature", "0", "--repeat", "2", "--json")
    result = run_cli(*args, "--references", refs, "--cache-dir", models)
    assert result.returncode == 0, result.stderr
    rows = {(r["engine"], r["weights"]): r for r in json.loads(result.stdout)}
    assert list(rows) == [
        ("native", "f32"), ("native", "int8"), ("run.c", "f32"), ("runq.c", "int8"),
        ("run.c wasm-noepoch", "f32"), ("run.c wasm", "f32"),
    ]  # fmt: skip
    assert rows[("run.c", "f32")]["decode_tok_s"] == 50.5
    assert rows[("runq.c", "int8")]["decode_tok_s"] == 80.0
    assert rows[("run.c wasm", "f32")]["decode_tok_s"] == 7.5
    assert rows[("run.c wasm-noepoch", "f32")]["decode_tok_s"] == 7.5
    assert all(r["repeats"] == 2 and r["peak_rss_mb"] > 0 for r in rows.values()), rows
    # Each program ran once per repetition, on the file of its weights, greedy.
    run_args = (tmp_path / "run.args").read_text().splitlines()
    runq_args = (tmp_path / "runq.args").read_text().splitlines()
    assert len(run_args) == len(runq_args) == 2
    assert run_args[0].split()[0] == str(models / "synth-260K-seed1.bin")
    assert runq_args[0].split()[0] == str(models / "synth-260K-seed1-int8.bin")
    assert " -t 0 " in run_args[0] and " -n 16 " in run_args[0]
    table = run_cli(*args[:-1], "--references", refs, "--cache-dir", models)
    assert "260K: native int8 decodes at" in table.stdout.decode()
    assert "x runq.c" in table.stdout.decode()


def test_a_failing_reference_is_an_error_row(tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    refs.mkdir()
    _script(refs / "run", 'echo "cannot open model" >&2\nexit 1\n')
    args = ("bench", "--shapes", "260K", "--engines", "native", "--steps", "8", "--json")
    result = run_cli(*args, "--references", refs, "--cache-dir", tmp_path / "m")
    assert result.returncode != 0
    rows = json.loads(result.stdout)
    assert rows[-1] == {
        "shape": "260K", "weights": "f32", "file_mb": rows[0]["file_mb"], "engine": "run.c",
        "error": "cannot open model",
    }  # fmt: skip


def test_bench_option_errors(tmp_path: Path) -> None:
    assert_clean_error(run_cli("bench", "--references", tmp_path / "nowhere"), 2, "nowhere")
    assert_clean_error(run_cli("bench", "--temperature", "-1"), 2, "--temperature")
    assert_clean_error(run_cli("bench", "--repeat", "0"), 2, "--repeat")


def test_wasm_noepoch_rows_decode_like_wasm(tmp_path: Path) -> None:
    args = ("bench", "--shapes", "260K", "--engines", "wasm,wasm-noepoch", "--steps", "24")
    result = run_cli(*args, "--temperature", "0", "--json", "--cache-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["engine"] for r in rows] == ["wasm", "wasm-noepoch"]
    assert rows[0]["generated_tokens"] == rows[1]["generated_tokens"] >= 2
    assert all(r["decode_tok_s"] > 0 for r in rows)


def test_an_engine_without_epoch_interruption_refuses_a_timeout() -> None:
    with pytest.raises(InvalidParameter, match="epoch interruption"):
        open_engine("wasm", epoch_interruption=False, timeout=1.0)


# candle's quantized Llama stand-in: grows its memory for the file, loads only a buffer that
# starts with GGUF's magic, and counts its decode steps at address 0.
_CANDLE = """
(module
  (memory (export "memory") 1)
  (func (export "ref_alloc") (param $len i32) (result i32)
    (i32.mul (memory.grow (i32.add (i32.shr_u (local.get $len) (i32.const 16)) (i32.const 1)))
             (i32.const 65536)))
  (func (export "ref_load") (param $ptr i32) (param $len i32) (result i32)
    (if (result i32) (i32.eq (i32.load (local.get $ptr)) (i32.const 0x46554747))
      (then (i32.const 0)) (else (i32.const -1))))
  (func (export "ref_step") (param $token i32) (param $pos i32) (result i64)
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (i64.extend_i32_u (i32.add (local.get $token) (i32.const 1)))))
"""


def test_the_candle_wasm_row_times_the_gguf_file_beside_the_guest(tmp_path: Path) -> None:
    refs, models = tmp_path / "refs", tmp_path / "models"
    refs.mkdir()
    (refs / "candle_quantized.wasm").write_bytes(wasmtime.wat2wasm(_CANDLE))
    args = ("bench", "--shapes", "260K", "--engines", "wasm", "--weights", "f32,gguf-f32")
    args += ("--steps", "16", "--temperature", "0")
    result = run_cli(*args, "--json", "--references", refs, "--cache-dir", models)
    assert result.returncode == 0, result.stderr
    rows = {(r["engine"], r["weights"]): r for r in json.loads(result.stdout)}
    # Only GGUF files have a candle row.
    assert list(rows) == [("wasm", "f32"), ("wasm", "gguf-f32"), ("candle wasm", "gguf-f32")]
    assert rows[("candle wasm", "gguf-f32")]["decode_tok_s"] > 0
    table = run_cli(*args, "--references", refs, "--cache-dir", models).stdout.decode()
    assert "260K: wasm gguf-f32 decodes at" in table and "x candle's wasm build" in table


def test_a_file_candle_cannot_load_is_an_error_row(tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "candle_quantized.wasm").write_bytes(wasmtime.wat2wasm(_CANDLE))
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"ggjt" + bytes(60))
    from edgechain.bench.engine_worker import Workload
    from edgechain.bench.references import available_references, run_reference

    (candle,) = available_references(refs, ["gguf-q8_0"])
    row = run_reference(candle, not_gguf, not_gguf, Workload(8, 1, "", 0.0))
    assert row == {"engine": "candle wasm", "error": "candle could not load model.gguf"}


def test_wasm_is_compared_with_run_c_wasm_in_the_same_interruption_mode() -> None:
    rows = [
        {"shape": "15M", "engine": e, "weights": "f32", "decode_tok_s": rate}
        for e, rate in (
            ("wasm", 300.0),
            ("wasm-noepoch", 330.0),
            ("run.c wasm", 100.0),
            ("run.c wasm-noepoch", 400.0),
        )
    ]
    lines = format_table(rows).splitlines()
    assert "15M: wasm f32 decodes at 0.82x run.c wasm, both without epoch interruption" in lines
    assert "15M: wasm f32 decodes at 3.00x run.c wasm, both with epoch interruption" in lines
