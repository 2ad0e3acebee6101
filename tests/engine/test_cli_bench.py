"""`edgechain bench` on the tiny shape: one row per engine with every figure filled in."""

from __future__ import annotations

import json
from pathlib import Path

from engine_helpers import assert_clean_error, run_cli


def test_bench_json_reports_each_engine(tmp_path: Path) -> None:
    result = run_cli(
        "bench", "--shapes", "260K", "--steps", "24", "--json", "--cache-dir", tmp_path
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["shape"], r["engine"]) for r in rows] == [("260K", "wasm"), ("260K", "native")]
    for row in rows:
        assert "error" not in row, row
        assert row["load_s"] > 0 and row["first_token_s"] > 0
        assert row["decode_tok_s"] > 0 and row["peak_rss_mb"] > 10
        assert row["generated_tokens"] >= 2
    assert (tmp_path / "synth-260K-seed1.bin").is_file()


def test_bench_table_and_model_reuse(tmp_path: Path) -> None:
    args = ("bench", "--shapes", "260K", "--engines", "wasm", "--steps", "8")
    first = run_cli(*args, "--cache-dir", tmp_path)
    assert first.returncode == 0, first.stderr
    assert "synthesising 260K" in first.stderr
    header = first.stdout.decode().splitlines()[0]
    assert "decode tok/s" in header and "peak RSS MB" in header
    second = run_cli(*args, "--cache-dir", tmp_path)
    assert second.returncode == 0 and "synthesising" not in second.stderr


def test_bench_rejects_unknown_shapes_and_engines() -> None:
    assert_clean_error(run_cli("bench", "--shapes", "7B"), 2, "7B")
    assert_clean_error(run_cli("bench", "--engines", "gpu"), 2, "gpu")


def test_bench_int8_rows_quantize_the_synthetic_model_once(tmp_path: Path) -> None:
    args = ("bench", "--shapes", "260K", "--weights", "f32,int8", "--steps", "32")
    result = run_cli(*args, "--json", "--cache-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["weights"], r["engine"]) for r in rows] == [
        ("f32", "wasm"), ("f32", "native"), ("int8", "wasm"), ("int8", "native"),
    ]  # fmt: skip
    assert all("error" not in r and r["decode_tok_s"] > 0 for r in rows), rows
    assert rows[2]["file_mb"] < rows[0]["file_mb"] / 2
    assert (tmp_path / "synth-260K-seed1-int8.bin").is_file()
    table = run_cli(*args, "--engines", "native", "--cache-dir", tmp_path)
    assert table.returncode == 0 and "quantizing" not in table.stderr
    assert "native int8" in table.stdout.decode()
    assert "native int8 decodes at" in table.stdout.decode()
