"""`edgechain run` end to end in a subprocess: run.c's golden output and clean user errors."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from engine_helpers import assert_clean_error, run_cli

from edgechain.testing.models import ModelFiles
from edgechain.testing.synth import write_tokenizer

ENGINES = ["wasm", "native"]


def _run(files: ModelFiles, *args: str | int | Path, engine: str = "wasm"):
    return run_cli("run", files.weights, "-z", files.tokenizer, "--engine", engine, *args)


@pytest.mark.parametrize("engine", ENGINES)
def test_greedy_output_matches_run_c_byte_for_byte(
    engine: str, stories260k: ModelFiles, golden_once_upon_a_time: bytes
) -> None:
    result = _run(stories260k, "-t", "0", "-n", "256", "-i", "Once upon a time", engine=engine)
    assert result.returncode == 0, result.stderr
    assert result.stdout == golden_once_upon_a_time
    assert "achieved tok/s" in result.stderr


def test_long_flags_and_the_console_script_name_give_the_same_output(
    stories260k: ModelFiles, golden_once_upon_a_time: bytes
) -> None:
    result = run_cli(
        "run", stories260k.weights, "--tokenizer", stories260k.tokenizer,
        "--temperature", "0", "--steps", "256", "--prompt", "Once upon a time",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == golden_once_upon_a_time


@pytest.mark.parametrize("prompt", ["", "Lily", "The dog ran to the park and", "Ça va? 日本 🎉"])
def test_engines_agree_on_other_prompts(stories260k: ModelFiles, prompt: str) -> None:
    outs = [_run(stories260k, "-t", "0", "-n", "120", "-i", prompt, engine=e) for e in ENGINES]
    for out in outs:
        assert out.returncode == 0, out.stderr
        assert out.stdout.endswith(b"\n")
    assert outs[0].stdout == outs[1].stdout
    assert outs[0].stdout.startswith(prompt.encode())
    assert len(outs[0].stdout) > len(prompt.encode()) + 1


def test_prompt_file_reads_utf8(stories260k: ModelFiles, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Once upon a time", encoding="utf-8")
    via_file = _run(stories260k, "-t", "0", "-n", "64", "-f", prompt)
    via_flag = _run(stories260k, "-t", "0", "-n", "64", "-i", "Once upon a time")
    assert via_file.returncode == 0, via_file.stderr
    assert via_file.stdout == via_flag.stdout


def test_sampling_with_a_seed_is_reproducible_and_reports_the_seed(
    stories260k: ModelFiles,
) -> None:
    a = _run(stories260k, "-t", "1.0", "-s", "42", "-n", "100", "-i", "Lily")
    b = _run(stories260k, "-t", "1.0", "-s", "42", "-n", "100", "-i", "Lily")
    c = _run(stories260k, "-t", "1.0", "-s", "43", "-n", "100", "-i", "Lily")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout != c.stdout
    assert "seed: 42" in a.stderr


def test_seed_zero_is_time_based_and_printed(stories260k: ModelFiles) -> None:
    result = _run(stories260k, "-n", "20")
    assert result.returncode == 0, result.stderr
    seed_line = next(line for line in result.stderr.splitlines() if line.startswith("seed: "))
    assert int(seed_line.split()[1]) > 1_600_000_000


# --- user errors: one line, non-zero exit, no traceback -----------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_missing_checkpoint(engine: str, stories260k: ModelFiles, tmp_path: Path) -> None:
    files = ModelFiles(tmp_path / "nope.bin", stories260k.tokenizer)
    assert_clean_error(_run(files, engine=engine), 3, "checkpoint not found")


def test_missing_tokenizer(stories260k: ModelFiles, tmp_path: Path) -> None:
    files = ModelFiles(stories260k.weights, tmp_path / "nope.bin")
    assert_clean_error(_run(files), 3, "tokenizer not found")


@pytest.mark.parametrize("engine", ENGINES)
def test_truncated_checkpoint(engine: str, stories260k: ModelFiles, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.bin"
    bad.write_bytes(stories260k.weights.read_bytes()[:100_000])
    assert_clean_error(_run(ModelFiles(bad, stories260k.tokenizer), engine=engine), 3)


@pytest.mark.parametrize("engine", ENGINES)
def test_checkpoint_shorter_than_a_header(
    engine: str, stories260k: ModelFiles, tmp_path: Path
) -> None:
    bad = tmp_path / "tiny.bin"
    bad.write_bytes(b"\x40\x00")
    assert_clean_error(_run(ModelFiles(bad, stories260k.tokenizer), engine=engine), 3)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("n_layers", [4, 6])
def test_header_not_matching_the_file_size(
    engine: str, n_layers: int, stories260k: ModelFiles, tmp_path: Path
) -> None:
    data = bytearray(stories260k.weights.read_bytes())
    struct.pack_into("<i", data, 8, n_layers)  # the real file has 5 layers
    bad = tmp_path / f"layers{n_layers}.bin"
    bad.write_bytes(bytes(data))
    assert_clean_error(_run(ModelFiles(bad, stories260k.tokenizer), engine=engine), 3)


@pytest.mark.parametrize("engine", ENGINES)
def test_truncated_tokenizer(engine: str, stories260k: ModelFiles, tmp_path: Path) -> None:
    bad = tmp_path / "tok.bin"
    bad.write_bytes(stories260k.tokenizer.read_bytes()[:3000])
    assert_clean_error(_run(ModelFiles(stories260k.weights, bad), engine=engine), 3)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("vocab", [1000, 32000])
def test_tokenizer_vocab_differs_from_the_model(
    engine: str, vocab: int, stories260k: ModelFiles, tmp_path: Path
) -> None:
    tok = tmp_path / f"tok{vocab}.bin"
    with open(tok, "wb") as f:
        write_tokenizer(f, vocab)
    result = _run(ModelFiles(stories260k.weights, tok), engine=engine)
    assert_clean_error(result, 3)


@pytest.mark.parametrize("engine", ENGINES)
def test_prompt_longer_than_seq_len(engine: str, stories260k: ModelFiles) -> None:
    prompt = " ".join(["Lily and Tom went to the park to play."] * 80)  # > 512 tokens
    result = _run(stories260k, "-i", prompt, engine=engine)
    assert_clean_error(result, 7, "512")


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (("-t", "-0.5"), "temperature"),
        (("-p", "0"), "top_p"),
        (("-p", "1.5"), "top_p"),
        (("-n", "-1"), "steps"),
        (("-t", "warm"), "invalid float"),
        # Issue 26: the guest samples in f32, where these arrived as inf ("got inf").
        (("-t", "1e308"), "temperature must be >= 0 and <= 3.4028234663852886e+38, got 1e+308"),
        (("--repeat-penalty", "1e39"), "repeat_penalty must be >= 1.0 and <= 3.40282346638"),
    ],
)
def test_bad_parameters_are_usage_errors(
    flags: tuple[str, ...], fragment: str, stories260k: ModelFiles
) -> None:
    assert_clean_error(_run(stories260k, *flags), 2, fragment)


def test_non_utf8_prompt_file(stories260k: ModelFiles, tmp_path: Path) -> None:
    prompt = tmp_path / "latin1.txt"
    prompt.write_bytes("Café".encode("latin-1"))
    assert_clean_error(_run(stories260k, "-f", prompt), 3, "not valid utf-8")


def test_missing_prompt_file(stories260k: ModelFiles, tmp_path: Path) -> None:
    assert_clean_error(_run(stories260k, "-f", tmp_path / "none.txt"), 3, "prompt file not found")


def test_unknown_engine_is_a_usage_error(stories260k: ModelFiles) -> None:
    assert_clean_error(_run(stories260k, engine="gpu"), 2, "invalid choice")


@pytest.mark.parametrize("threads", ["1", "3"])
def test_native_threads_give_run_c_output(
    stories260k: ModelFiles, golden_once_upon_a_time: bytes, threads: str
) -> None:
    result = _run(
        stories260k, "-t", "0", "-n", "256", "-i", "Once upon a time", "--threads", threads,
        engine="native",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == golden_once_upon_a_time


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--threads", "2"), "--threads applies to the native engine"),
        (("--engine", "native", "--threads", "0"), "threads must be between 1 and 256, got 0"),
    ],
)
def test_bad_threads_are_one_clear_error(
    stories260k: ModelFiles, args: tuple[str, ...], fragment: str
) -> None:
    result = run_cli("run", stories260k.weights, "-z", stories260k.tokenizer, "-n", "8", *args)
    assert_clean_error(result, 2, fragment)
