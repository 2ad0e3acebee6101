"""K-quants (Q4_K, Q6_K: the blocks of Q4_K_M files): the engine's decoding against a reference
decoding written here from llama.cpp's block layout (``dequantize_row_q4_K``/``_q6_K``), over
random block bytes and over the quantizer's output; `edgechain convert --type q4_k|q6_k` (which
tensors get which type, the fallbacks, deterministic bytes); and both engines running such files
bit for bit alike."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from engine_helpers import greedy_text, run_cli, sampled_ids

from edgechain.convert import convert_to_gguf
from edgechain.service.engine import Engine
from edgechain.service.engine.gguf_header import read_gguf_header
from edgechain.service.engine.native import import_native
from edgechain.testing.models import ModelFiles
from edgechain.testing.synth import ModelShape, synthesize

PROMPT = "Once upon a time"
#: A llama2.c shape whose matrices all have rows of whole 256-value super-blocks, with
#: grouped-query attention (4 heads, 2 kv heads).
KSHAPE = ModelShape(256, 512, 2, 4, 2, 512, 64)


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _f16(raw: bytes, at: int) -> float:
    return struct.unpack_from("<e", raw, at)[0]


def ref_q4_k(raw: bytes) -> list[float]:
    """llama.cpp's Q4_K decoding, block by block (144 bytes: d, dmin, 12 bytes of 6-bit
    scales/mins, 128 of nibbles; sub-block 2k is the low nibbles of bytes 32k.., 2k+1 the high)."""
    out: list[float] = []
    for at in range(0, len(raw), 144):
        d, dmin = _f16(raw, at), _f16(raw, at + 2)
        sc = raw[at + 4 : at + 16]
        qs = raw[at + 16 : at + 144]
        for j in range(8):
            if j < 4:
                s, m = sc[j] & 63, sc[j + 4] & 63
            else:
                s = (sc[j + 4] & 0x0F) | ((sc[j - 4] >> 6) << 4)
                m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4)
            scale, offset = _f32(d * s), _f32(dmin * m)
            nibbles = qs[32 * (j // 2) : 32 * (j // 2) + 32]
            shift = 4 * (j % 2)
            out += [_f32(_f32(scale * ((b >> shift) & 15)) - offset) for b in nibbles]
    return out


def ref_q6_k(raw: bytes) -> list[float]:
    """llama.cpp's Q6_K decoding (210 bytes: 128 of low nibbles, 64 of high bit pairs, 16 int8
    scales, d): per 128 values, value l + 32k takes nibble k // 2 of ql[l + 32 (k % 2)] and bits
    2k.. of qh[l]."""
    out: list[float] = []
    for at in range(0, len(raw), 210):
        ql, qh = raw[at : at + 128], raw[at + 128 : at + 192]
        scales = struct.unpack_from("<16b", raw, at + 192)
        d = _f16(raw, at + 208)
        block = [0.0] * 256
        for half in range(2):
            for k in range(4):
                for lane in range(32):
                    lo = (ql[64 * half + lane + 32 * (k % 2)] >> (4 * (k // 2))) & 15
                    hi = (qh[32 * half + lane] >> (2 * k)) & 3
                    i = 128 * half + 32 * k + lane
                    block[i] = _f32(_f32(d * scales[i // 16]) * ((lo | hi << 4) - 32))
        out += block
    return out


def _floats(raw: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _random_blocks(kind: str, count: int, rng: random.Random) -> bytes:
    """Random block bytes with finite, moderate f16 scales (random bits elsewhere)."""
    size = 144 if kind == "q4_k" else 210
    out = bytearray()
    for _ in range(count):
        block = bytearray(rng.randbytes(size))
        for at in (0, 2) if kind == "q4_k" else (208,):
            struct.pack_into("<e", block, at, rng.uniform(-0.01, 0.01))
        out += block
    return bytes(out)


@pytest.mark.parametrize(("kind", "ref"), [("q4_k", ref_q4_k), ("q6_k", ref_q6_k)])
def test_engine_decoding_matches_the_reference_on_random_blocks(kind: str, ref) -> None:
    native = import_native()
    raw = _random_blocks(kind, 40, random.Random(25))
    got = _floats(native.dequantize_k(kind, raw))
    assert got == ref(raw)
    assert len(set(got)) > 1000


@pytest.mark.parametrize(
    ("kind", "ref", "bound"), [("q4_k", ref_q4_k, 0.1), ("q6_k", ref_q6_k, 0.02)]
)
def test_quantizer_output_decodes_close_to_its_input(kind: str, ref, bound: float) -> None:
    native = import_native()
    rng = random.Random(7)
    values = [rng.gauss(0.0, 1.0) * (1 + i // 256) for i in range(256 * 6)]
    values[256:512] = [0.0] * 256  # an all-zero block
    raw = struct.pack(f"<{len(values)}f", *values)
    data = native.quantize_k(kind, raw)
    assert data == native.quantize_k(kind, raw)
    assert len(data) == 6 * (144 if kind == "q4_k" else 210)
    decoded = ref(data)
    assert _floats(native.dequantize_k(kind, data)) == decoded
    assert decoded[256:512] == [0.0] * 256
    for b in range(6):
        block = values[256 * b : 256 * (b + 1)]
        peak = max(abs(v) for v in block)
        err = max(abs(a - c) for a, c in zip(block, decoded[256 * b : 256 * (b + 1)], strict=True))
        assert err <= bound * peak, (kind, b, err, peak)


@pytest.fixture(scope="module")
def kshape_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("kquants")
    model, tok = out / "k.bin", out / "k_tok.bin"
    synthesize(KSHAPE, 25, model, tok)
    return model, tok


@pytest.fixture(scope="module")
def kshape_gguf(kshape_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("kquants_gguf")
    paths = {}
    for kind in ("f32", "q8_0", "q4_k", "q6_k"):
        paths[kind] = out / f"k-{kind}.gguf"
        convert_to_gguf(*kshape_files, paths[kind], kind)
    return paths


def _tensor_types(path: Path) -> dict[str, str]:
    """Each tensor's type name, read from the header here (no engine involved)."""
    names = {0: "F32", 1: "F16", 2: "Q4_0", 8: "Q8_0", 12: "Q4_K", 14: "Q6_K"}
    data = path.read_bytes()
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    at = 24

    def string(at: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<Q", data, at)
        return data[at + 8 : at + 8 + n].decode(), at + 8 + n

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    for _ in range(n_kv):
        _, at = string(at)
        (kind,) = struct.unpack_from("<I", data, at)
        at += 4
        if kind == 8:
            _, at = string(at)
        elif kind == 9:
            item, count = struct.unpack_from("<IQ", data, at)
            at += 12
            for _ in range(count):
                if item == 8:
                    _, at = string(at)
                else:
                    at += sizes[item]
        else:
            at += sizes[kind]
    out = {}
    for _ in range(n_tensors):
        name, at = string(at)
        (n_dims,) = struct.unpack_from("<I", data, at)
        at += 4 + 8 * n_dims
        kind, _ = struct.unpack_from("<IQ", data, at)
        at += 12
        out[name] = names[kind]
    return out


def test_convert_q4_k_is_llama_cpps_q4_k_m_mix_and_deterministic(
    kshape_files: tuple[Path, Path], kshape_gguf: dict[str, Path], tmp_path: Path
) -> None:
    types = _tensor_types(kshape_gguf["q4_k"])
    # use_more_bits for 2 layers: layer 0 (first eighth is empty: (0 - 0) % 3 != 2), layer 1
    # (>= 7 * 2 // 8 = 1): only layer 1's attn_v and ffn_down are Q6_K.
    assert types["blk.1.attn_v.weight"] == types["blk.1.ffn_down.weight"] == "Q6_K"
    assert types["blk.0.attn_v.weight"] == types["blk.0.ffn_down.weight"] == "Q4_K"
    assert types["token_embd.weight"] == types["blk.0.attn_q.weight"] == "Q4_K"
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert set(_tensor_types(kshape_gguf["q6_k"]).values()) == {"Q6_K", "F32"}
    again = tmp_path / "again.gguf"
    result = convert_to_gguf(*kshape_files, again, "q4_k")
    assert again.read_bytes() == kshape_gguf["q4_k"].read_bytes()
    assert result.type_counts == {"F32": 5, "Q4_K": 13, "Q6_K": 2}
    info = read_gguf_header(again.open("rb"), again.stat().st_size, str(again))
    assert info.header.group_size == 16
    assert info.tensor_types == ("F32", "Q4_K", "Q6_K")


def _greedy(path: Path, engine: str) -> bytes:
    return greedy_text(path, engine, 48, PROMPT)


def _sampled(engine: Engine, path: Path, seed: int) -> list[int]:
    return sampled_ids(engine, path, seed, PROMPT)


@pytest.mark.parametrize("kind", ["q4_k", "q6_k"])
def test_k_quant_files_run_bit_for_bit_alike_on_both_engines(
    kind: str, kshape_gguf: dict[str, Path], wasm_engine: Engine, native_engine: Engine
) -> None:
    path = kshape_gguf[kind]
    wasm = _greedy(path, "wasm")
    assert wasm == _greedy(path, "native")
    assert len(wasm) > 40
    for seed in (1, 2):
        ids = _sampled(wasm_engine, path, seed)
        assert ids == _sampled(native_engine, path, seed)
        assert len(ids) > 20
    # The K-quant weights are what runs: sampling diverges from the f32 file's.
    assert [_sampled(native_engine, path, s) for s in (1, 2)] != [
        _sampled(native_engine, kshape_gguf["f32"], s) for s in (1, 2)
    ]


def test_stories260k_q4_k_falls_back_to_q8_0_and_f32(
    stories260k: ModelFiles, tmp_path: Path
) -> None:
    # Rows of 64 and 172 values are not whole 256-value super-blocks: every matrix falls back
    # (Q8_0 for rows of 64, f32 for ffn_down's rows of 172), as the q8_0 file has them.
    q4k, q8 = tmp_path / "q4_k.gguf", tmp_path / "q8_0.gguf"
    result = convert_to_gguf(stories260k.weights, stories260k.tokenizer, q4k, "q4_k")
    convert_to_gguf(stories260k.weights, stories260k.tokenizer, q8, "q8_0")
    assert result.type_counts == {"F32": 16, "Q8_0": 31}
    assert _tensor_types(q4k) == _tensor_types(q8)
    assert _greedy(q4k, "wasm") == _greedy(q4k, "native") == _greedy(q8, "native")


def test_cli_convert_q6_k_prints_the_tensor_types(
    kshape_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "q6.gguf"
    model, tok = kshape_files
    result = run_cli("convert", model, "--tokenizer", tok, "--type", "q6_k", out)
    assert result.returncode == 0, result.stderr
    assert b"(tensors: 5 F32, 15 Q6_K)" in result.stdout
