"""The service benchmarks (edgechain/bench/) on tiny inputs: each runs and reports what it says."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edgechain.bench import cache, instances, query, story, verify
from edgechain.bench.network import BENCH_MODEL, synthetic_model_network


def test_the_cache_benchmark_reports_every_measurement(tmp_path: Path) -> None:
    results = cache.benchmark_verification((1,), repeats=1, directory=str(tmp_path))
    assert [r.what for r in results] == [
        "hash 1 thread",
        "hash all cores",
        "hash streamed",
        "cache get, first",
        "cache get, again",
        "cache get, always",
        "cache get_path",
    ]
    assert all(r.size_bytes == 1_000_000 and r.mb_per_s > 0 for r in results)
    assert list(tmp_path.iterdir()) == []


def test_the_synthetic_network_publishes_the_bench_model_and_cleans_up() -> None:
    with synthetic_model_network("260K", 3, validators=1) as client:
        model = client.model(BENCH_MODEL)
        assert model.entry.weights.urls[0].startswith("http://127.0.0.1:")
        assert model.entry.weights.urls[0].endswith("/model.bin")
        root = client.network.path.parent
        assert root.name.startswith("edgechain-bench-")
        assert Path(root).parent == Path(tempfile.gettempdir())
    assert not root.exists()


def test_the_query_benchmark_times_a_cold_then_warm_queries() -> None:
    rows = query.run("260K", 4, "wasm")
    assert [r["query"] for r in rows] == ["cold, 1 token", "warm, 1 token", "warm, 4 tokens"]
    cold, warm, longer = rows
    assert cold["fetch_ms"] > 0 and cold["load_ms"] > 0  # the cold query fetched and loaded
    assert warm["fetch_ms"] == 0 and warm["load_ms"] == 0  # the warm ones did neither
    assert longer["decode_tok_s"] > 0


def test_the_story_benchmark_mints_the_generated_story_on_each_engine(capsys) -> None:
    args = ["--shape", "260K", "--tokens", "8", "--validators", "2", "--engines", "wasm,native"]
    assert story.main([*args, "--repeats", "3"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["engines"] for r in rows] == ["wasm", "native"]
    for row, engine in zip(rows, ("wasm", "native"), strict=True):
        # Three interleaved rounds, each minted; the row is the median one.
        assert row["repeats"] == 3 and len(row["ratios"]) == len(row["cpu_ratios"]) == 3
        assert row["ratio"] == sorted(row["ratios"])[1]
        assert row["tokens"] == 8 and row["stop_reason"] == "max_tokens"
        assert row["validators"] == 2 and row["signers"] == 2
        assert row["validator_engines"] == {"v1": engine, "v2": engine}
        assert row["generate_s"] > 0 and row["proposer_s"] > 0 and row["certify_s"] > 0
        assert row["mint_s"] == pytest.approx(row["proposer_s"] + row["certify_s"], abs=0.002)
        # The breakdown: each signer checked with its model already loaded by the warm-up.
        phases = row["certify_phases"]
        assert set(phases) == {"proposal_s", "votes_s", "commit_s", "rest_s"}
        assert phases["votes_s"] <= row["certify_s"]
        for name in ("v1", "v2"):
            vote = row["votes"][name]
            assert vote["signed"] and vote["warm"] and vote["check_s"] > 0
            assert 0 <= vote["asked_at"] <= vote["answered_at"] <= row["certify_s"]
            # asked_at and answered_at are rounded to 1 ms, other_s to 0.1 ms: compare within
            # the rounding (a 260K check answers within a millisecond or two).
            assert 0 <= vote["other_s"] <= vote["answered_at"] - vote["asked_at"] + 0.001
        assert row["certify_cpu_s"] > 0 and row["generate_cpu_s"] > 0 and row["quorum_first"]
        assert row["proposer_cpu_s"] > 0


def test_the_chain_benchmark_runs_on_its_own() -> None:
    # A fresh process (no pytest plugin, no client imported): the benchmark registers the
    # application kinds it executes itself.
    args = ["--validators", "1", "--blocks", "2", "--reopen-blocks", "2", "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "edgechain.bench.chain", *args], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["reopen"]["blocks"] == 2


def test_the_streams_benchmark_runs_streams_together_with_their_solo_tokens() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgechain.cli", "bench", "--shapes", "260K", "--streams", "4"]
        + ["--steps", "16", "--json"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["shape"], r["engine"], r["streams"]) for r in rows] == [
        ("260K", "wasm", 4),
        ("260K", "native", 4),
    ]
    for row in rows:
        assert row["identical"] is True, row
        assert row["solo_tok_s"] > 0 and row["concurrent_tok_s"] > 0
        assert row["solo_cpu_tok_s"] > 0 and row["busy_cores"] > 0
        assert row["mean_batch"] > 1  # the streams did share engine calls


def test_the_instances_benchmark_times_one_and_two_wasm_instances_with_the_same_tokens() -> None:
    row = instances.run_instances("260K", streams=3, tokens=5, temperature=0.8)
    assert row["identical"] is True and row["tokens"] == 15, row
    assert row["critical_path_s"] <= row["two_instances_cpu_s"]


def test_the_verify_benchmark_verifies_the_claim_it_generated(capsys) -> None:
    args = ["--shapes", "260K", "--tokens", "20", "--repeats", "1", "--engines", "wasm,native"]
    assert verify.main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["engine"] for r in rows] == ["wasm", "native"]
    for row in rows:
        assert row["valid"] is True and row["tokens"] == 20 and row["temperature"] == 0.8
        assert row["generate_s"] > 0 and row["verify_s"] > 0
        # The times are rounded to the millisecond, the ratio from the unrounded ones: it lies
        # within what the rounded times allow.
        low = max(row["verify_s"] - 0.0005, 0) / (row["generate_s"] + 0.0005)
        high = (row["verify_s"] + 0.0005) / max(row["generate_s"] - 0.0005, 1e-9)
        assert low - 0.0005 <= row["ratio"] <= high + 0.0005, row


def test_the_engine_benchmark_measures_gguf_rows_beside_the_checkpoints(tmp_path: Path) -> None:
    from edgechain.bench.engine import format_table, run_engine_benchmark
    from edgechain.bench.engine_worker import Workload

    work = Workload(steps=12, seed=1, prompt="Once upon a time", temperature=0.0)
    rows = run_engine_benchmark(tmp_path, ["15M"], ["native"], ["f32", "gguf-q8_0"], work)
    assert [r["weights"] for r in rows] == ["f32", "gguf-q8_0"]
    assert all("error" not in r for r in rows), rows
    assert rows[0]["generated_tokens"] == rows[1]["generated_tokens"] > 0
    assert (tmp_path / "synth-15M-seed1-q8_0.gguf").is_file()
    assert "15M: native gguf-q8_0 decodes at" in format_table(rows)


def test_a_case_that_fails_is_a_row_that_says_why() -> None:
    from edgechain.bench.rows import row_or_error

    def fails() -> dict[str, object]:
        raise OSError("no such model")

    assert row_or_error({"shape": "15M", "engine": "wasm"}, fails) == {
        "shape": "15M",
        "engine": "wasm",
        "error": "no such model",
    }
    assert row_or_error({"shape": "15M"}, lambda: {"ok": 1}) == {"ok": 1}
