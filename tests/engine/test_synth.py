"""Synthetic models: exact sizes, determinism across seeds, a tokenizer that parses."""

from __future__ import annotations

import struct
from pathlib import Path

import blake3
import pytest
from engine_helpers import run_cli

from edgechain.errors import InvalidParameter
from edgechain.service.engine import Engine, GenerationParams
from edgechain.testing.models import ModelFiles
from edgechain.testing.synth import SHAPES, shape_named, synthesize, tokenizer_pieces


def _hash(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


def test_260k_shape_has_the_real_files_size(stories260k: ModelFiles) -> None:
    assert SHAPES["260K"].file_size() == stories260k.weights.stat().st_size
    # stories15M.bin as published is 60,816,028 bytes.
    assert SHAPES["15M"].file_size() == 60_816_028


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    shape = shape_named("15M")
    a, b, c = tmp_path / "a.bin", tmp_path / "b.bin", tmp_path / "c.bin"
    synthesize(shape, 7, a, tmp_path / "tok.bin")
    synthesize(shape, 7, b)
    synthesize(shape, 8, c)
    assert a.stat().st_size == shape.file_size()
    assert _hash(a) == _hash(b)
    assert _hash(a) != _hash(c)
    assert struct.unpack("<7i", a.read_bytes()[:28]) == (288, 768, 6, 6, 6, 32000, 256)


def test_cli_writes_the_same_hash_for_the_same_seed(tmp_path: Path) -> None:
    outs = []
    for name, seed in (("x.bin", 3), ("y.bin", 3), ("z.bin", 4)):
        result = run_cli("synth-model", "--shape", "260K", "--seed", seed, tmp_path / name)
        assert result.returncode == 0, result.stderr
        outs.append(result.stdout.decode().split("blake3 ")[1].strip())
    assert outs[0] == outs[1] != outs[2]
    assert outs[0] == _hash(tmp_path / "x.bin")


def test_tokenizer_layout() -> None:
    pieces = tokenizer_pieces(32000)
    assert len(pieces) == 32000
    assert [p for p, _ in pieces[3:6]] == [b"<0x00>", b"<0x01>", b"<0x02>"]
    assert pieces[258][0] == b"<0xFF>"
    assert len({p for p, _ in pieces}) == 32000  # lookups need unique pieces
    merges = [score for _, score in pieces[259:]]
    assert merges == sorted(merges, reverse=True)
    assert len(tokenizer_pieces(512)) == 512


def test_unknown_shape_is_a_usage_error() -> None:
    with pytest.raises(InvalidParameter, match="choose one of 260K, 15M, 42M, 110M"):
        shape_named("7B")


def test_synthetic_260k_loads_and_generates_the_same_on_both_engines(
    tmp_path: Path, wasm_engine: Engine, native_engine: Engine
) -> None:
    files = ModelFiles(tmp_path / "m.bin", tmp_path / "t.bin")
    synthesize(shape_named("260K"), 1, files.weights, files.tokenizer)
    params = GenerationParams(temperature=0.8, seed=5, max_tokens=40)
    ids = {}
    for engine in (wasm_engine, native_engine):
        with files.load(engine) as model:
            assert model.info.vocab_size == 512 and model.info.n_kv_heads == 4
            text = "Once upon a time, é 日本"
            assert model.decode(model.encode(text)) == text
            gen = model.generate("Once upon a time", params)
            ids[engine.kind] = [t.id for t in gen]
            assert gen.prompt_text == "Once upon a time"
    assert len(ids["wasm"]) >= 1
    assert ids["wasm"] == ids["native"]
