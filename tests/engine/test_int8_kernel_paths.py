"""The guest's int8 kernel paths against the native module's (AVX-512 or AVX2, each checked bit
for bit against the scalar definition by `cargo test`): group sizes 16 and 32 (unrolled), 48
(read at run time), rows in blocks of four plus 1-3 left over (vocabulary 355), rows with and
without groups after the last block of four. Any wrong lane, row or order shows up within a few
tokens: every layer re-quantizes its activations."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from engine_helpers import kernel_check_runs

from edgechain.quantize import quantize_checkpoint
from edgechain.service.engine import Engine
from edgechain.service.engine.model_files import Q8_HEADER_BYTES, parse_checkpoint_header
from edgechain.testing.synth import ModelShape, synthesize

# dim 96 (6 groups of 16: one block of four + 2; 2 of 48; 3 of 32), kv_dim 48, vocab 355 = 4*88+3.
SHAPES = {
    16: ModelShape(96, 208, 2, 4, 2, 355, 64),  # hidden 208: 13 groups (3 blocks + 1)
    32: ModelShape(96, 192, 2, 4, 2, 355, 64),  # hidden 192: 6 groups (1 block + 2)
    48: ModelShape(96, 192, 2, 4, 2, 355, 64),  # hidden 192: 4 groups (1 block)
}


@pytest.mark.parametrize("group_size", sorted(SHAPES))
def test_wasm_and_native_int8_kernels_agree(
    tmp_path: Path, wasm_engine: Engine, native_engine: Engine, group_size: int
) -> None:
    f32, tok, q8 = tmp_path / "m.bin", tmp_path / "tok.bin", tmp_path / "q8.bin"
    synthesize(SHAPES[group_size], 5, f32, tok)
    assert quantize_checkpoint(f32, q8, group_size).header.group_size == group_size
    runs = {}
    for engine in (wasm_engine, native_engine):
        with engine.load_files(q8, tok) as model:
            tokens = kernel_check_runs(model)
            runs[engine.kind] = tokens
    assert sum(len(t) for t in runs["wasm"]) > 100  # a sampled BOS may end one run early
    assert runs["wasm"] == runs["native"]


def _set_weights_to_minus_128(path: Path, group_size: int, every: int) -> int:
    """Every ``every``-th int8 weight of every quantized tensor of the int8 checkpoint at
    ``path`` set to -128 (which `edgechain quantize` never writes, a file from elsewhere may);
    returns how many were set."""
    data = bytearray(path.read_bytes())
    h = parse_checkpoint_header(bytes(data[:Q8_HEADER_BYTES]), None)
    d, hid, kv, n = h.dim, h.hidden_dim, h.kv_dim, h.n_layers
    at = Q8_HEADER_BYTES + 4 * (2 * n * d + d)  # after the f32 rmsnorm weights
    counts = [h.vocab_size * d] + [d * d] * n + [d * kv] * 2 * n + [d * d] * n
    counts += [d * hid] * 3 * n + ([] if h.shared_classifier else [h.vocab_size * d])
    changed = 0
    for count in counts:  # export.py's order: each tensor's values, then its scales
        for i in range(at, at + count, every):
            data[i] = 0x80
            changed += 1
        at += count + 4 * (count // group_size)
    assert at == len(data)
    path.write_bytes(bytes(data))
    return changed


@pytest.mark.parametrize("group_size", sorted(SHAPES))
def test_minus_128_weights_give_the_same_logits_on_both_engines(
    tmp_path: Path, wasm_engine: Engine, native_engine: Engine, group_size: int
) -> None:
    """The guest's kernel splits each 16-byte load into odd and even weights without widening
    them (src/q8/simd128.rs): exact for every int8 value, -128 included, so every position's
    logits are the same bits as the native module's (AVX-512 or AVX2, checked against the scalar
    definition with -128 weights by `cargo test`)."""
    f32, tok, q8 = tmp_path / "m.bin", tmp_path / "tok.bin", tmp_path / "q8.bin"
    synthesize(SHAPES[group_size], 7, f32, tok)
    quantize_checkpoint(f32, q8, group_size)
    assert _set_weights_to_minus_128(q8, group_size, 5) > 1000
    ids = [1, 20, 300, 45, 7, 354, 0, 99]
    rows = {}
    for engine in (wasm_engine, native_engine):
        with engine.load_files(q8, tok) as model:
            rows[engine.kind] = model.position_logits(ids)
    wasm_bits = [struct.pack(f"<{len(r)}f", *r) for r in rows["wasm"]]
    native_bits = [struct.pack(f"<{len(r)}f", *r) for r in rows["native"]]
    assert len(wasm_bits) == len(ids) and wasm_bits == native_bits
