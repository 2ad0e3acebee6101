"""Int8 checkpoints: `edgechain quantize` (llama2.c's version-2 Q8_0 format) and both engines
reading them, against runq.c's greedy output (tests/engine/golden/README.md says how it was made).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from engine_helpers import REPO_ROOT, assert_clean_error, assert_engines_sample_alike, run_cli

from edgechain.errors import InvalidCheckpoint, InvalidParameter
from edgechain.quantize import default_group_size, quantize_checkpoint
from edgechain.service.engine import Engine
from edgechain.service.engine.model_files import Q8_HEADER_BYTES, Q8_MAGIC, parse_checkpoint_header
from edgechain.testing.models import ModelFiles
from edgechain.testing.synth import ModelShape, synthesize

GOLDEN = REPO_ROOT / "tests" / "engine" / "golden"
ENGINES = ["wasm", "native"]


# ---- quantize ----


def test_quantize_writes_runq_c_header_and_exact_size(
    stories260k: ModelFiles, q8_260k: ModelFiles
) -> None:
    data = q8_260k.weights.read_bytes()
    magic, version = struct.unpack_from("<Ii", data)
    assert (magic, version) == (Q8_MAGIC, 2)
    assert data[:4] == b"24ka"
    assert struct.unpack_from("<7i", data, 8) == (64, 172, 5, 8, 4, 512, 512)
    assert struct.unpack_from("<Bi", data, 36) == (1, 4)
    assert data[41:Q8_HEADER_BYTES] == bytes(Q8_HEADER_BYTES - 41)
    header = parse_checkpoint_header(data, None)
    assert header.group_size == 4 and header.shared_classifier
    assert header.expected_bytes == len(data)
    f32 = parse_checkpoint_header(stories260k.weights.read_bytes(), None)
    assert f32.group_size is None
    assert (f32.dim, f32.hidden_dim, f32.vocab_size) == (header.dim, 172, 512)
    # The rmsnorm weights come first, unchanged: layer 0's attention norm is the f32 file's
    # first float after the embedding.
    f32_data = stories260k.weights.read_bytes()
    norm_at = 28 + 4 * 512 * 64
    assert data[256 : 256 + 4 * 64] == f32_data[norm_at : norm_at + 4 * 64]


@pytest.mark.parametrize(
    ("dim", "hidden", "expected"),
    [(64, 172, 4), (288, 768, 32), (512, 1376, 32), (768, 2048, 64), (4096, 11008, 64), (6, 10, 2)],
)
def test_default_group_size_is_the_largest_power_of_two_up_to_64_dividing_both(
    dim: int, hidden: int, expected: int
) -> None:
    assert default_group_size(dim, hidden) == expected


def test_no_default_group_size_for_odd_dimensions() -> None:
    with pytest.raises(InvalidParameter, match="--group-size"):
        default_group_size(64, 171)


def test_explicit_group_size_is_written_and_must_divide(
    stories260k: ModelFiles, tmp_path: Path
) -> None:
    out = tmp_path / "q2.bin"
    result = run_cli("quantize", stories260k.weights, out, "--group-size", "2")
    assert result.returncode == 0, result.stderr
    assert b"int8 groups of 2" in result.stdout
    assert parse_checkpoint_header(out.read_bytes(), None).group_size == 2
    for bad in ("8", "3", "0", "-4"):  # 8 and 3 do not divide hidden_dim 172
        result = run_cli(
            "quantize", stories260k.weights, tmp_path / "x.bin", "--group-size", bad
        )
        assert_clean_error(result, 2, "group size")
    assert not (tmp_path / "x.bin").exists()


def test_quantize_refuses_bad_inputs_cleanly(
    stories260k: ModelFiles, q8_260k: ModelFiles, tmp_path: Path
) -> None:
    assert_clean_error(
        run_cli("quantize", q8_260k.weights, tmp_path / "again.bin"), 3, "already an int8"
    )
    assert_clean_error(run_cli("quantize", tmp_path / "missing.bin", tmp_path / "o.bin"), 3)
    assert_clean_error(
        run_cli("quantize", stories260k.weights, tmp_path / "no" / "o.bin"), 3, "directory"
    )
    truncated = tmp_path / "short.bin"
    truncated.write_bytes(stories260k.weights.read_bytes()[:-4])
    result = run_cli("quantize", truncated, tmp_path / "o.bin")
    assert_clean_error(result, 3, "implies 1056540 bytes")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.bin"]  # nothing partial left


# ---- the reader, through both engines ----


@pytest.mark.parametrize("engine", ENGINES)
def test_greedy_int8_output_matches_runq_c_byte_for_byte(engine: str, q8_260k: ModelFiles) -> None:
    result = run_cli(
        "run", q8_260k.weights, "-z", q8_260k.tokenizer, "--engine", engine,
        "-t", "0", "-n", "256", "-i", "Once upon a time",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    golden = (GOLDEN / "stories260K_q8_greedy_once_upon_a_time_256.txt").read_bytes()
    assert result.stdout == golden


def test_int8_wasm_and_native_sample_the_same_tokens(
    wasm_engine: Engine, native_engine: Engine, q8_260k: ModelFiles
) -> None:
    info = assert_engines_sample_alike(
        wasm_engine, native_engine, q8_260k.weights, q8_260k.tokenizer
    )
    assert getattr(info, "group_size", None) == 4


@pytest.mark.parametrize("weights", ["f32", "int8"])
def test_heads_of_18_sample_alike_on_both_engines(
    weights: str, wasm_engine: Engine, native_engine: Engine, tmp_path: Path
) -> None:
    """Head size 18: the guest's attention takes four score elements and 16 values per loop
    trip (for the epoch check), so 18 leaves a remainder in both; the output must not move."""
    f32 = ModelFiles(tmp_path / "m.bin", tmp_path / "t.bin")
    synthesize(ModelShape(36, 64, 2, 2, 2, 512, 128), 5, f32.weights, f32.tokenizer)
    files = f32
    if weights == "int8":
        files = ModelFiles(tmp_path / "m8.bin", f32.tokenizer)
        quantize_checkpoint(f32.weights, files.weights)
    info = assert_engines_sample_alike(wasm_engine, native_engine, files.weights, files.tokenizer)
    assert info.dim // info.n_heads == 18


@pytest.mark.parametrize("engine_kind", ENGINES)
def test_a_truncated_int8_checkpoint_is_an_invalid_checkpoint(
    engine_kind: str, wasm_engine: Engine, native_engine: Engine, q8_260k: ModelFiles,
    tmp_path: Path,
) -> None:  # fmt: skip
    engine = wasm_engine if engine_kind == "wasm" else native_engine
    data = q8_260k.weights.read_bytes()
    for size, fragment in ((len(data) - 1, "header implies"), (200, "256-byte")):
        short = tmp_path / f"short{size}.bin"
        short.write_bytes(data[:size])
        with pytest.raises(InvalidCheckpoint, match=fragment):
            engine.load_files(short, q8_260k.tokenizer)
        with pytest.raises(InvalidCheckpoint, match=fragment):
            engine.load(data[:size], q8_260k.tokenizer.read_bytes())
    bad_group = bytearray(data)
    bad_group[37:41] = struct.pack("<i", 3)
    with pytest.raises(InvalidCheckpoint, match="group size 3"):
        engine.load(bytes(bad_group), q8_260k.tokenizer.read_bytes())


def test_parse_header_rejects_malformed_int8_headers(q8_260k: ModelFiles) -> None:
    data = q8_260k.weights.read_bytes()[:Q8_HEADER_BYTES]
    cases = {
        "version": (4, struct.pack("<i", 1)),
        "shared_classifier": (36, b"\x02"),
        "group size": (37, struct.pack("<i", 0)),
        "dim": (8, struct.pack("<i", -64)),
    }
    for fragment, (at, patch) in cases.items():
        bad = bytearray(data)
        bad[at : at + len(patch)] = patch
        with pytest.raises(InvalidCheckpoint, match=fragment):
            parse_checkpoint_header(bytes(bad), None)
    with pytest.raises(InvalidCheckpoint, match="256-byte"):
        parse_checkpoint_header(data[:100], None)
