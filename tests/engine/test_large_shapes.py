"""The 1.1B shape (TinyLlama's): its header, the wasm guest refusing it in f32 before reading
weights (checked on a header alone: no 4 GB file), and quantizing in bounded pieces."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from engine_helpers import assert_clean_error, run_cli

import edgechain.quantize as quantize
from edgechain.errors import CheckpointTooLarge
from edgechain.service.engine import Engine
from edgechain.service.engine.model_files import parse_checkpoint_header
from edgechain.service.engine.wasm import DEFAULT_MEMORY_LIMIT, check_fits
from edgechain.testing.models import ModelFiles
from edgechain.testing.synth import SHAPES, shape_named

TINYLLAMA = (2048, 5632, 22, 32, 4, 32000, 2048)


def _f32_header(name: str = "1.1B") -> bytes:
    return struct.pack("<7i", *SHAPES[name].i32_values())


def test_the_1_1b_shape_is_tinyllamas() -> None:
    shape = shape_named("1.1b")
    assert shape.i32_values() == TINYLLAMA
    assert (shape.head_size, shape.kv_dim) == (64, 256)
    header = parse_checkpoint_header(_f32_header(), None)
    assert header.expected_bytes == shape.file_size() == 4_138_573_852
    int8 = parse_checkpoint_header(quantize.q8_header_bytes(header, 64), None)
    assert int8.group_size == 64 and int8.expected_bytes < shape.file_size() // 3
    assert quantize.default_group_size(shape.dim, shape.hidden_dim) == 64


def test_the_wasm_guest_refuses_1_1b_f32_from_its_header(
    tmp_path: Path, wasm_engine: Engine, stories260k: ModelFiles
) -> None:
    only_header = tmp_path / "tinyllama-f32.bin"  # 28 bytes that declare 4.1 GB
    only_header.write_bytes(_f32_header())
    with pytest.raises(CheckpointTooLarge) as err:
        wasm_engine.load_files(only_header, stories260k.tokenizer)
    message = str(err.value)
    assert "\n" not in message
    assert "f32" in message and "3.94 GiB" in message and "3.0 GiB" in message
    assert "quantize it with `edgechain quantize`" in message
    result = run_cli("run", only_header, "-z", stories260k.tokenizer, "--engine", "wasm")
    assert_clean_error(result, 3, "too large for the wasm guest", "edgechain quantize")


def test_the_address_space_is_the_limit_without_a_memory_limit() -> None:
    check_fits(_f32_header(), None)  # 3.94 GiB: may fit in 4 GiB without a limit
    twice_the_vocab = struct.pack("<7i", *TINYLLAMA[:5], 64000, TINYLLAMA[6])
    with pytest.raises(CheckpointTooLarge, match="wasm32 address space"):
        check_fits(twice_the_vocab, None)
    # 110M in f32 and 1.1B in int8 fit the default limit.
    check_fits(_f32_header("110M"), DEFAULT_MEMORY_LIMIT)
    int8 = quantize.q8_header_bytes(parse_checkpoint_header(_f32_header(), None), 64)
    check_fits(int8, DEFAULT_MEMORY_LIMIT)
    with pytest.raises(CheckpointTooLarge, match="int8 .* use the native engine"):
        check_fits(int8, 2**30)
    check_fits(b"not a checkpoint", DEFAULT_MEMORY_LIMIT)  # left to the guest's own error


def test_quantizing_in_pieces_writes_the_same_file(
    tmp_path: Path, stories260k: ModelFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = tmp_path / "whole.bin"
    quantize.quantize_checkpoint(stories260k.weights, whole)
    # Pieces of 3 groups of 4: every matrix is split, most with a partial last piece.
    monkeypatch.setattr(quantize, "CHUNK_BYTES", 3 * 4 * 4)
    pieces = tmp_path / "pieces.bin"
    quantize.quantize_checkpoint(stories260k.weights, pieces)
    assert pieces.read_bytes() == whole.read_bytes()
