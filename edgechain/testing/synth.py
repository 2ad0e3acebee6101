"""Deterministic synthetic llama2.c checkpoints and tokenizers of the real stories shapes.

Weights are BLAKE3 XOF bytes (keyed by the seed, one stream per tensor) turned into float32 bit
patterns by fixing the sign/exponent byte: matrices get values in +-[2^-7, 2^-5), RMSNorm
weights in [0.5, 2). Only byte operations are involved, so the output is the same on every
machine, and the file is written tensor by tensor in chunks (the 110M shape is 438 MB).

The tokenizer is llama2.c's tokenizer.bin format: <unk>, BOS, EOS, the 256 byte tokens
<0x00>..<0xFF> at ids 3..258, the printable ASCII characters, then merge tokens built from
frequent English letters (" t", "th", " th", "the", ...) with scores that decrease with id, so
any text encodes (unknown characters fall back to byte tokens) and decodes back.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import blake3

from edgechain.errors import InputError, InvalidParameter
from edgechain.files import write_atomically
from edgechain.service.engine.checkpoint_header import HeaderDims


@dataclass(frozen=True)
class ModelShape(HeaderDims):
    """A llama2.c header (vocab_size positive: shared classifier)."""

    def tensors(self) -> list[tuple[str, int, str]]:
        """(name, float count, kind) in llama2.c's file order (legacy format, shared classifier)."""
        d, h, n, v = self.dim, self.hidden_dim, self.n_layers, self.vocab_size
        half_rope = self.seq_len * self.head_size // 2
        return [
            ("token_embedding_table", v * d, "matrix"),
            ("rms_att_weight", n * d, "norm"),
            ("wq", n * d * d, "matrix"),
            ("wk", n * d * self.kv_dim, "matrix"),
            ("wv", n * d * self.kv_dim, "matrix"),
            ("wo", n * d * d, "matrix"),
            ("rms_ffn_weight", n * d, "norm"),
            ("w1", n * h * d, "matrix"),
            ("w2", n * d * h, "matrix"),
            ("w3", n * h * d, "matrix"),
            ("rms_final_weight", d, "norm"),
            ("freq_cis_real", half_rope, "rope_real"),
            ("freq_cis_imag", half_rope, "rope_imag"),
        ]

    def file_size(self) -> int:
        """Bytes of the checkpoint: the 28-byte header plus every tensor."""
        return 28 + 4 * sum(count for _, count, _ in self.tensors())


#: The stories shapes (Karpathy's tinyllamas), keyed by their usual names.
SHAPES: dict[str, ModelShape] = {
    "260K": ModelShape(64, 172, 5, 8, 4, 512, 512),
    "15M": ModelShape(288, 768, 6, 6, 6, 32000, 256),
    "42M": ModelShape(512, 1376, 8, 8, 8, 32000, 1024),
    "110M": ModelShape(768, 2048, 12, 12, 12, 32000, 1024),
    # TinyLlama 1.1B's shape (grouped-query attention): 4.4 GB in f32, more than the wasm32
    # guest can address, so the guest runs it only in int8 (1.2 GB).
    "1.1B": ModelShape(2048, 5632, 22, 32, 4, 32000, 2048),
    # Not a stories model: the smallest shape whose every matrix has rows of whole 256-value
    # K-quant super-blocks (Q4_K, Q6_K), with grouped-query attention (4 heads, 2 kv heads).
    "1.3M": ModelShape(256, 512, 2, 4, 2, 512, 128),
}

_CHUNK_FLOATS = 1 << 20
# High byte of a little-endian float32: keep the random sign bit, fix the exponent's top bits.
_MATRIX_HIGH_BYTE = bytes(0x3C | (b & 0x80) for b in range(256))  # exponent 120..121
_NORM_HIGH_BYTE = bytes([0x3F] * 256)  # positive, exponent 126..127


def shape_named(name: str) -> ModelShape:
    """The shape called ``name`` (case-insensitive), or InvalidParameter listing the choices."""
    for key, shape in SHAPES.items():
        if key.lower() == name.strip().lower():
            return shape
    raise InvalidParameter(f"unknown shape {name!r}: choose one of {', '.join(SHAPES)}")


def _tensor_stream(seed: int, name: str) -> blake3.blake3:
    key = blake3.blake3(f"edgechain-synth-model|seed={seed}".encode()).digest()
    return blake3.blake3(name.encode(), key=key)


def _random_chunks(seed: int, name: str, count: int, high_byte: bytes) -> Iterator[bytes]:
    stream = _tensor_stream(seed, name)
    for start in range(0, count, _CHUNK_FLOATS):
        n = min(_CHUNK_FLOATS, count - start)
        data = bytearray(stream.digest(length=4 * n, seek=4 * start))
        data[3::4] = data[3::4].translate(high_byte)
        yield bytes(data)


def _rope_chunk(shape: ModelShape, part: str) -> bytes:
    # The legacy format still stores RoPE tables (run.c skips them); write the true values.
    hs = shape.head_size
    fn = math.cos if part == "rope_real" else math.sin
    values = [
        fn(pos / (10000.0 ** (i / hs))) for pos in range(shape.seq_len) for i in range(0, hs, 2)
    ]
    return struct.pack(f"<{len(values)}f", *values)


def write_checkpoint(out: BinaryIO, shape: ModelShape, seed: int) -> int:
    """Write a llama2.c checkpoint of ``shape``, weights derived from ``seed``; bytes written."""
    written = out.write(struct.pack("<7i", *shape.i32_values()))
    for name, count, kind in shape.tensors():
        if kind in ("rope_real", "rope_imag"):
            chunk = _rope_chunk(shape, kind)
            if len(chunk) != 4 * count:
                raise RuntimeError(f"{name}: expected {count} floats")
            written += out.write(chunk)
            continue
        high = _MATRIX_HIGH_BYTE if kind == "matrix" else _NORM_HIGH_BYTE
        for chunk in _random_chunks(seed, name, count, high):
            written += out.write(chunk)
    return written


# --- tokenizer ---------------------------------------------------------------------------------

_LETTERS_BY_FREQUENCY = "etaoinshrdlcumwfgypbvkjxqz"


def _merge_pieces() -> Iterator[str]:
    """Printable ASCII, then " x" and "X"-led pieces, pairs and triples by letter frequency."""
    yield from (chr(c) for c in range(0x20, 0x7F))
    rank = {c: i for i, c in enumerate(_LETTERS_BY_FREQUENCY)}
    letters = sorted(_LETTERS_BY_FREQUENCY, key=rank.__getitem__)
    yield from (" " + c for c in letters)
    yield from (" " + c.upper() for c in letters)

    def by_rank(n: int) -> list[str]:
        combos = ("".join(p) for p in itertools.product(letters, repeat=n))
        return sorted(combos, key=lambda s: (sum(rank[c] for c in s), s))

    for group in (by_rank(2), by_rank(3)):
        # Interleave "ab" with " ab" so both word-initial and inner pieces appear early.
        for piece in group:
            yield piece
            yield " " + piece


def tokenizer_pieces(vocab_size: int) -> list[tuple[bytes, float]]:
    """The (piece, score) list of the synthetic tokenizer, ``vocab_size`` entries."""
    if vocab_size < 259 + 95:
        raise InvalidParameter(f"vocab_size must be at least {259 + 95}, got {vocab_size}")
    pieces: list[tuple[bytes, float]] = [(b"<unk>", 0.0), (b"\n<s>\n", 0.0), (b"\n</s>\n", 0.0)]
    pieces += [(f"<0x{b:02X}>".encode(), 0.0) for b in range(256)]
    for rank, piece in enumerate(_merge_pieces()):
        if len(pieces) == vocab_size:
            break
        pieces.append((piece.encode(), float(-rank)))
    if len(pieces) != vocab_size:
        raise InvalidParameter(f"vocab_size {vocab_size} is larger than the synthetic vocabulary")
    return pieces


def write_tokenizer(out: BinaryIO, vocab_size: int) -> int:
    """Write a tokenizer.bin of ``vocab_size`` tokens; bytes written."""
    pieces = tokenizer_pieces(vocab_size)
    max_len = max(len(p) for p, _ in pieces)
    parts = [struct.pack("<i", max_len)]
    for piece, score in pieces:
        parts.append(struct.pack("<fi", score, len(piece)))
        parts.append(piece)
    return out.write(b"".join(parts))


def synthesize(
    shape: ModelShape, seed: int, checkpoint: Path, tokenizer: Path | None = None
) -> None:
    """Write the checkpoint (and the tokenizer) atomically: a crash never leaves half a file."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise InvalidParameter(f"seed must be an integer in [0, 2^64), got {seed!r}")
    _atomic_write(checkpoint, lambda f: write_checkpoint(f, shape, seed))
    if tokenizer is not None:
        _atomic_write(tokenizer, lambda f: write_tokenizer(f, shape.vocab_size))


def _atomic_write(path: Path, writer: Callable[[BinaryIO], int]) -> None:
    write_atomically(path, writer, "output file", InputError)
