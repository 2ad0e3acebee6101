"""The guest's f32 decode kernel against the native module's (AVX, itself checked bit for bit
against the scalar definition by `cargo test`) on rows of odd widths, short and long, each
with a tail after the last whole 32-value chunk. The logits at every position are compared bit
for bit (a last-bit difference seldom moves a sampled token in f32), and the sampled tokens
too."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from engine_helpers import kernel_check_runs

from edgechain.service.engine import Engine
from edgechain.testing.synth import ModelShape, synthesize

SHAPES = {
    # dim 72 (tail 8), hidden 600 (w2's rows: tail 24), head size 18.
    "short dim, long hidden": ModelShape(72, 600, 2, 4, 2, 355, 64),
    # dim 520 (tail 8), hidden 200 (w2's rows: tail 8), head size 130.
    "long dim, short hidden": ModelShape(520, 200, 1, 4, 4, 355, 64),
    # Odd counts of whole chunks (the guest's loop takes two per trip, then one): dim 104 (3
    # chunks, tail 8), hidden 416 (13 chunks, no tail), head size 52 (1 chunk, tail 20).
    "odd chunk counts": ModelShape(104, 416, 1, 2, 2, 355, 64),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_wasm_and_native_f32_kernels_agree(
    tmp_path: Path, wasm_engine: Engine, native_engine: Engine, shape: str
) -> None:
    weights, tok = tmp_path / "m.bin", tmp_path / "tok.bin"
    synthesize(SHAPES[shape], 7, weights, tok)
    runs = {}
    for engine in (wasm_engine, native_engine):
        with engine.load_files(weights, tok) as model:
            tokens = kernel_check_runs(model)
            ids = [1, *range(3, 3 + 47)]
            rows = model.position_logits(ids)
            runs[engine.kind] = tokens, [struct.pack(f"<{len(r)}f", *r) for r in rows]
    assert sum(len(t) for t in runs["wasm"][0]) > 100  # a sampled BOS may end one run early
    assert len(runs["wasm"][1]) == 48
    assert runs["wasm"] == runs["native"]
