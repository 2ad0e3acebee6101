"""The guest's int8 kernel paths against the native module's (AVX2, itself checked bit for bit
against the scalar definition by `cargo test`): group sizes 16 and 32 (unrolled), 48 (read at
run time), rows in blocks of four plus 1-3 left over (vocabulary 355), rows with and without
groups after the last block of four. Any wrong lane, row or order shows up within a few tokens:
every layer re-quantizes its activations."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgechain.quantize import quantize_checkpoint
from edgechain.service.engine import Engine, GenerationParams
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
            tokens = []
            for temperature, seed in ((0.0, 1), (1.0, 2), (1.0, 3)):
                params = GenerationParams(temperature=temperature, seed=seed, max_positions=64)
                tokens.append([t.id for t in model.generate("Once upon a time", params)])
            runs[engine.kind] = tokens
    assert sum(len(t) for t in runs["wasm"]) > 100  # a sampled BOS may end one run early
    assert runs["wasm"] == runs["native"]
