"""Deterministic synthetic GGUF models of the architectures the engine runs (``llama``,
``qwen2``, ``qwen3``), for tests and references: the synthetic llama2.c weights' scheme
(:mod:`edgechain.testing.synth`: BLAKE3 bytes keyed by the seed, one stream per tensor, matrices
in +-[2^-7, 2^-5), norm weights in [0.5, 2)) under llama.cpp's tensor names, the synthetic
vocabulary as ``tokenizer.ggml.*``, and each architecture's own parts:

- ``llama``: tied output (no ``output.weight``), RoPE base 10000, rmsnorm epsilon 1e-5, the
  synthetic SentencePiece-style (``llama``) vocabulary;
- ``qwen2``: q/k/v biases (matrix-range values), tied output, RoPE base 1e6, epsilon 1e-6
  (Qwen2.5's), a byte-level BPE (``gpt2``, pre-tokenizer ``qwen2``) vocabulary;
- ``qwen3``: per-head q/k RMSNorm weights, a separate ``output.weight``, RoPE base 1e6,
  epsilon 1e-6, ``attention.key_length``/``value_length`` = head size, the ``gpt2`` vocabulary.

The ``gpt2`` vocabulary: the 256 byte tokens (GPT-2's byte-to-character map), then a merge per
synthetic piece (" t", "th", " th", "the", ... as the llama vocabulary's, each the merge of its
prefix and last character), then Qwen's special tokens ``<|endoftext|>`` (BOS),
``<|im_start|>`` and ``<|im_end|>`` (EOS), control tokens; no BOS added to a prompt.

Heads may be of another size than ``dim / n_heads`` (``head_dim``: wq and wo of
``n_heads x head_dim``, as Qwen3-0.6B's). Matrices may be stored quantized (``kind`` as
``edgechain convert --type``). Same seed, shape,
architecture and kind: the same bytes on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgechain.convert import (
    llama2c_pieces,
    model_metadata,
    quantized_tensor,
    tokenizer_metadata,
)
from edgechain.errors import InputError, InvalidParameter
from edgechain.files import write_atomically
from edgechain.service.engine import gguf_writer as gw
from edgechain.testing.synth import (
    _MATRIX_HIGH_BYTE,
    _NORM_HIGH_BYTE,
    ModelShape,
    _random_chunks,
    tokenizer_pieces,
)

#: The architectures synth-model writes as GGUF.
ARCHITECTURES = ("llama", "qwen2", "qwen3")


@dataclass(frozen=True)
class ArchTraits:
    """What an architecture adds to llama's layers, and its usual constants."""

    biases: bool
    qk_norm: bool
    tied_output: bool
    rope_base: float
    norm_eps: float
    #: ``tokenizer.ggml.model``: "llama" or "gpt2".
    tokenizer: str


TRAITS = {
    "llama": ArchTraits(False, False, True, 10000.0, 1e-5, "llama"),
    "qwen2": ArchTraits(True, False, True, 1e6, 1e-6, "gpt2"),
    "qwen3": ArchTraits(False, True, False, 1e6, 1e-6, "gpt2"),
}
#: Qwen's special tokens, the last ids of the ``gpt2`` vocabulary.
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def byte_level(data: bytes) -> str:
    """GPT-2's byte-level spelling of ``data`` (``bytes_to_unicode``)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table = {b: chr(b) for b in printable}
    extra = 256
    for b in range(256):
        if b not in table:
            table[b] = chr(extra)
            extra += 1
    return "".join(table[b] for b in data)


def gpt2_vocabulary(vocab_size: int) -> tuple[list[str], list[str]]:
    """The synthetic ``gpt2`` tokens (byte-level strings, specials last) and merges."""
    from edgechain.testing.synth import _merge_pieces

    tokens = [byte_level(bytes([b])) for b in range(256)]
    known = set(tokens)
    merges: list[str] = []
    room = vocab_size - len(SPECIALS)
    if room < 256:
        raise InvalidParameter(f"vocab_size must be at least {256 + len(SPECIALS)}")
    for piece in _merge_pieces():
        if len(tokens) == room:
            break
        whole = byte_level(piece.encode())
        left, right = byte_level(piece[:-1].encode()), byte_level(piece[-1].encode())
        if len(piece) < 2 or whole in known or left not in known:
            continue
        tokens.append(whole)
        known.add(whole)
        merges.append(f"{left} {right}")
    if len(tokens) != room:
        raise InvalidParameter(f"vocab_size {vocab_size} is larger than the synthetic vocabulary")
    return tokens + list(SPECIALS), merges


def gpt2_tokenizer_metadata(vocab_size: int) -> list[tuple[str, object]]:
    """``tokenizer.ggml.*`` of the synthetic ``gpt2`` vocabulary (pre-tokenizer qwen2)."""
    tokens, merges = gpt2_vocabulary(vocab_size)
    first_special = vocab_size - len(SPECIALS)
    types = [gw.I32(3 if i >= first_special else 1) for i in range(vocab_size)]
    return [
        ("tokenizer.ggml.model", "gpt2"),
        ("tokenizer.ggml.pre", "qwen2"),
        ("tokenizer.ggml.tokens", tokens),
        ("tokenizer.ggml.token_type", types),
        ("tokenizer.ggml.merges", merges),
        ("tokenizer.ggml.bos_token_id", first_special),
        ("tokenizer.ggml.eos_token_id", first_special + 2),
        ("tokenizer.ggml.add_bos_token", False),
    ]


def _random(seed: int, name: str, count: int, high: bytes) -> bytes:
    return b"".join(_random_chunks(seed, name, count, high))


def gguf_tensors(
    shape: ModelShape, arch: str, seed: int, kind: str, head_dim: int | None = None
) -> list[gw.Tensor]:
    """The model's tensors in llama.cpp's order and names, matrices stored as ``kind``; heads
    of ``head_dim`` (default ``dim / n_heads``)."""
    t = TRAITS[arch]
    d, hid, n = shape.dim, shape.hidden_dim, shape.n_layers
    hd = head_dim or shape.head_size
    qd, kv = shape.n_heads * hd, shape.n_kv_heads * hd

    def matrix(name: str, dims: tuple[int, int]) -> gw.Tensor:
        raw = _random(seed, name, dims[0] * dims[1], _MATRIX_HIGH_BYTE)
        return quantized_tensor(name, dims, raw, kind, n)

    def vector(name: str, length: int, high: bytes = _NORM_HIGH_BYTE) -> gw.Tensor:
        return gw.Tensor(name, (length,), gw.GGML_F32, _random(seed, name, length, high))

    out = [matrix("token_embd.weight", (shape.vocab_size, d)), vector("output_norm.weight", d)]
    if not t.tied_output:
        out.append(matrix("output.weight", (shape.vocab_size, d)))
    for layer in range(n):
        blk = f"blk.{layer}"
        out.append(vector(f"{blk}.attn_norm.weight", d))
        out.append(matrix(f"{blk}.attn_q.weight", (qd, d)))
        out.append(matrix(f"{blk}.attn_k.weight", (kv, d)))
        out.append(matrix(f"{blk}.attn_v.weight", (kv, d)))
        out.append(matrix(f"{blk}.attn_output.weight", (d, qd)))
        if t.biases:
            for name, length in (("attn_q", qd), ("attn_k", kv), ("attn_v", kv)):
                out.append(vector(f"{blk}.{name}.bias", length, _MATRIX_HIGH_BYTE))
        if t.qk_norm:
            out.append(vector(f"{blk}.attn_q_norm.weight", hd))
            out.append(vector(f"{blk}.attn_k_norm.weight", hd))
        out.append(vector(f"{blk}.ffn_norm.weight", d))
        out.append(matrix(f"{blk}.ffn_gate.weight", (hid, d)))
        out.append(matrix(f"{blk}.ffn_down.weight", (d, hid)))
        out.append(matrix(f"{blk}.ffn_up.weight", (hid, d)))
    return out


def gguf_metadata(
    shape: ModelShape, arch: str, kind: str, name: str, head_dim: int | None = None
) -> list[tuple[str, object]]:
    t = TRAITS[arch]
    meta = model_metadata(
        arch, shape, kind=kind, name=name, norm_eps=t.norm_eps, rope_base=t.rope_base
    )
    hd = head_dim or shape.head_size
    if head_dim is not None:
        meta = [(k, hd if k == f"{arch}.rope.dimension_count" else v) for k, v in meta]
    if arch == "qwen3" or head_dim is not None:
        meta += [
            (f"{arch}.attention.key_length", hd),
            (f"{arch}.attention.value_length", hd),
        ]
    if t.tokenizer == "gpt2":
        return meta + gpt2_tokenizer_metadata(shape.vocab_size)
    return meta + tokenizer_metadata(llama2c_pieces(tokenizer_pieces(shape.vocab_size)))


def synthesize_gguf(
    shape: ModelShape,
    arch: str,
    seed: int,
    out: Path,
    kind: str = "f32",
    head_dim: int | None = None,
    chat_template: str | None = None,
) -> int:
    """Write the GGUF file ``out`` atomically; returns its size. ``head_dim``: heads of that
    size instead of ``dim / n_heads`` (as Qwen3-0.6B's 128 for 1024 / 16), stated as
    ``attention.key_length``/``value_length``. ``chat_template``: Jinja source written as
    ``tokenizer.chat_template`` (:mod:`edgechain.testing.chat_templates` has the families')."""
    from edgechain.convert import TYPES

    if arch not in ARCHITECTURES:
        raise InvalidParameter(f"--arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    if kind not in TYPES:
        raise InvalidParameter(f"--type must be one of {', '.join(TYPES)}, got {kind!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise InvalidParameter(f"seed must be an integer in [0, 2^64), got {seed!r}")
    if head_dim is not None and (
        isinstance(head_dim, bool) or not isinstance(head_dim, int) or not 2 <= head_dim <= 4096
    ):
        raise InvalidParameter(f"head_dim must be an integer in [2, 4096], got {head_dim!r}")
    if head_dim is not None and head_dim % 2:
        raise InvalidParameter(f"head_dim must be even (RoPE pairs), got {head_dim}")
    metadata = gguf_metadata(shape, arch, kind, f"synthetic {arch} seed {seed}", head_dim)
    if chat_template is not None:
        metadata.append(("tokenizer.chat_template", chat_template))
    tensors = gguf_tensors(shape, arch, seed, kind, head_dim)
    written = 0

    def write(f) -> int:
        nonlocal written
        written = gw.write_gguf(f, metadata, tensors)
        return written

    write_atomically(out, write, "output file", InputError)
    return written
