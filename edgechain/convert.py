"""``edgechain convert``: a llama2.c checkpoint and its tokenizer.bin as one GGUF file.

The GGUF file has llama.cpp's ``llama`` architecture and tensor names, the config as
``llama.*`` metadata and the SentencePiece-style vocabulary as ``tokenizer.ggml.*`` (tokens with
``▁`` for a space, their scores, token types, BOS 1 and EOS 2), so the engine (and llama.cpp)
reads weights and tokenizer from the one file. ``f32`` keeps every tensor; ``f16`` stores the
matrices in half precision; ``q8_0`` and ``q4_0`` store each matrix whose rows are whole blocks
of 32 in llama.cpp's Q8_0 or Q4_0 (the rest, and the norms, stay f32, as llama.cpp's converter
does). ``q4_k`` is llama.cpp's Q4_K_M mix (Q4_K, with Q6_K for ``output.weight`` and for
``attn_v``/``ffn_down`` in the layers llama.cpp's ``use_more_bits`` picks); ``q6_k`` is Q6_K
throughout. K-quants need rows of whole 256-value super-blocks: a matrix whose rows are not
falls back per tensor as llama.cpp's quantizer does (its Q6_K -> Q8_0; its Q4_K -> Q5_0, which
the engine does not run, so Q8_0 here), and to f32 when the rows are not whole blocks of 32
either (llama.cpp: F16). The K-quant arithmetic is llama.cpp's reference quantizers in Rust
(``edgechain_native.quantize_k``, rust_guest/src/kquants.rs). The bytes are deterministic.
Writer: :mod:`edgechain.service.engine.gguf_writer`; reader: rust_guest/src/gguf.rs.
"""

from __future__ import annotations

import os
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from edgechain.errors import InputError, InvalidCheckpoint, InvalidParameter, InvalidTokenizer
from edgechain.files import write_atomically
from edgechain.service.engine import gguf_writer as gw
from edgechain.service.engine.checkpoint_header import HeaderDims
from edgechain.service.engine.model_files import (
    HEADER_BYTES,
    Q8_HEADER_BYTES,
    CheckpointHeader,
    parse_checkpoint_header,
    read_tokenizer,
)

#: The ``--type`` choices.
TYPES = ("f32", "f16", "q8_0", "q4_0", "q4_k", "q6_k")
#: llama.cpp's ``general.file_type`` for each (LLAMA_FTYPE_ALL_F32, MOSTLY_F16, MOSTLY_Q8_0,
#: MOSTLY_Q4_0, MOSTLY_Q4_K_M, MOSTLY_Q6_K).
_FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "q4_0": 2, "q4_k": 15, "q6_k": 18}
#: Values per K-quant super-block.
QK_K = 256
#: llama.cpp's token types.
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert_to_gguf` wrote."""

    path: Path
    header: CheckpointHeader
    kind: str
    output_bytes: int
    #: Matrices stored in a 16-bit or quantized type, and those kept F32.
    quantized: int
    kept_f32: int
    #: How many tensors of each type the file holds ("Q4_K": 12, ...).
    type_counts: dict[str, int]


def _read_tokens(path: Path, vocab_size: int) -> list[tuple[str, float]]:
    """The (piece, score) records of a llama2.c tokenizer.bin, as SentencePiece pieces."""
    read_tokenizer(path, model_vocab=vocab_size)  # the engine's rules, one-line errors
    data = path.read_bytes()
    at, records = 4, []
    while at < len(data):
        score, length = struct.unpack_from("<fi", data, at)
        records.append((data[at + 8 : at + 8 + length], score))
        at += 8 + length
    try:
        return llama2c_pieces(records)
    except InvalidTokenizer as err:
        raise InvalidTokenizer(f"{path}: {err}") from None


def _token_type(index: int, text: str) -> int:
    if index == 0:
        return _UNKNOWN
    if index in (1, 2):
        return _CONTROL
    if len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
        return _BYTE
    return _NORMAL


def _f32_spans(h: CheckpointHeader) -> dict[str, list[tuple[int, int]]]:
    d, hid, kv, n = h.dim, h.hidden_dim, h.kv_dim, h.n_layers
    at = HEADER_BYTES
    spans: dict[str, list[tuple[int, int]]] = {}
    for kind, count, times in (
        ("embedding", h.vocab_size * d, 1),
        ("rms_att", d, n),
        ("wq", d * d, n),
        ("wk", d * kv, n),
        ("wv", d * kv, n),
        ("wo", d * d, n),
        ("rms_ffn", d, n),
        ("w1", d * hid, n),
        ("w2", hid * d, n),
        ("w3", d * hid, n),
        ("rms_final", d, 1),
        ("freq_cis", h.seq_len * h.head_size, 1),
        ("classifier", h.vocab_size * d, 0 if h.shared_classifier else 1),
    ):
        for _ in range(times):
            spans.setdefault(kind, []).append((at, 4 * count))
            at += 4 * count
    return spans


def _use_more_bits(layer: int, n_layers: int) -> bool:
    """llama.cpp's ``use_more_bits``: the first and last eighth of the layers and every third
    one between them get Q6_K for ``attn_v``/``ffn_down`` in a Q4_K_M file."""
    eighth = n_layers // 8
    return layer < eighth or layer >= 7 * n_layers // 8 or (layer - eighth) % 3 == 2


def _target_type(name: str, kind: str, n_layers: int) -> str:
    """The type llama.cpp's quantizer picks for matrix ``name`` in a ``kind`` file, before any
    fallback for its row length."""
    if kind == "q4_k":
        if name == "output.weight":
            return "q6_k"
        parts = name.split(".")
        more_bits = len(parts) == 4 and parts[2] in ("attn_v", "ffn_down")
        if more_bits and _use_more_bits(int(parts[1]), n_layers):
            return "q6_k"
    return kind


def _tensor(name: str, dims: tuple[int, ...], raw: bytes, kind: str, n_layers: int) -> gw.Tensor:
    """``raw`` (little-endian f32) as the tensor of a ``kind`` file: norms stay F32; a matrix
    is F16, or quantized when its rows are whole blocks (else the fallback, else F32)."""
    if kind == "f32" or len(dims) != 2:
        return gw.Tensor(name, dims, gw.GGML_F32, raw)
    target = _target_type(name, kind, n_layers)
    if target in ("q4_k", "q6_k"):
        if dims[1] % QK_K == 0:
            from edgechain.service.engine.native import import_native

            data = import_native().quantize_k(target, raw)
            ggml = gw.GGML_Q4_K if target == "q4_k" else gw.GGML_Q6_K
            return gw.Tensor(name, dims, ggml, data)
        target = "q8_0"
    values = array("f")
    values.frombytes(raw)
    if struct.pack("=I", 1) != struct.pack("<I", 1):
        values.byteswap()
    if target == "f16":
        return gw.Tensor(name, dims, gw.GGML_F16, gw.to_f16(values.tolist()))
    if dims[1] % gw.Q8_0_BLOCK:
        return gw.Tensor(name, dims, gw.GGML_F32, raw)
    if target == "q4_0":
        return gw.Tensor(name, dims, gw.GGML_Q4_0, gw.quantize_q4_0(values.tolist()))
    return gw.Tensor(name, dims, gw.GGML_Q8_0, gw.quantize_q8_0(values.tolist()))


def model_metadata(
    arch: str,
    h: HeaderDims,
    *,
    kind: str,
    name: str,
    norm_eps: float = 1e-5,
    rope_base: float = 10000.0,
) -> list[tuple[str, object]]:
    """The ``general.*`` and ``ARCH.*`` metadata of a model of dims ``h`` stored as ``kind``."""
    return [
        ("general.architecture", arch),
        ("general.name", name),
        ("general.file_type", _FILE_TYPES[kind]),
        (f"{arch}.context_length", h.seq_len),
        (f"{arch}.embedding_length", h.dim),
        (f"{arch}.block_count", h.n_layers),
        (f"{arch}.feed_forward_length", h.hidden_dim),
        (f"{arch}.rope.dimension_count", h.head_size),
        (f"{arch}.attention.head_count", h.n_heads),
        (f"{arch}.attention.head_count_kv", h.n_kv_heads),
        (f"{arch}.attention.layer_norm_rms_epsilon", norm_eps),
        (f"{arch}.rope.freq_base", rope_base),
    ]


def tokenizer_metadata(tokens: list[tuple[str, float]]) -> list[tuple[str, object]]:
    """``tokenizer.ggml.*`` for a SentencePiece-style (``llama``) vocabulary of (piece, score):
    ``▁`` for a space, <unk> 0, BOS 1, EOS 2, byte tokens typed as such."""
    return [
        ("tokenizer.ggml.model", "llama"),
        ("tokenizer.ggml.tokens", [t for t, _ in tokens]),
        ("tokenizer.ggml.scores", [float(s) for _, s in tokens]),
        (
            "tokenizer.ggml.token_type",
            [gw.I32(_token_type(i, t)) for i, (t, _) in enumerate(tokens)],
        ),
        ("tokenizer.ggml.bos_token_id", 1),
        ("tokenizer.ggml.eos_token_id", 2),
        ("tokenizer.ggml.unknown_token_id", 0),
        ("tokenizer.ggml.add_bos_token", True),
        ("tokenizer.ggml.add_eos_token", False),
    ]


def llama2c_pieces(pieces: list[tuple[bytes, float]]) -> list[tuple[str, float]]:
    """A llama2.c tokenizer.bin's (piece, score) records as SentencePiece pieces: llama2.c
    writes <s> and </s> between newlines and SentencePiece's ▁ as a space."""
    out = []
    for i, (raw, score) in enumerate(pieces):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidTokenizer(f"token {i} is not UTF-8") from None
        out.append(({1: "<s>", 2: "</s>"}.get(i, text.replace(" ", "\u2581")), score))
    return out


def quantized_tensor(
    name: str, dims: tuple[int, ...], raw: bytes, kind: str, n_layers: int
) -> gw.Tensor:
    """The tensor ``name`` (f32 little-endian ``raw``) as a ``kind`` file stores it."""
    return _tensor(name, dims, raw, kind, n_layers)


def convert_to_gguf(
    src: str | os.PathLike[str],
    tokenizer: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    kind: str = "f32",
) -> ConvertResult:
    """Write the f32 llama2.c checkpoint ``src`` and its ``tokenizer`` as the GGUF file ``dst``
    (``kind``: one of :data:`TYPES`). ``dst`` appears only once complete. Errors:
    InvalidParameter (kind), InvalidCheckpoint (bad or int8 input),
    InvalidTokenizer/VocabMismatch, InputError (cannot write), EngineUnavailable (q4_k/q6_k
    without edgechain_native)."""
    from edgechain.service.engine.files import open_input

    if kind not in TYPES:
        raise InvalidParameter(f"--type must be one of {', '.join(TYPES)}, got {kind!r}")
    src_path, dst_path = Path(src), Path(dst)
    with open_input(src_path, "checkpoint", InvalidCheckpoint) as f:
        size = os.fstat(f.fileno()).st_size
        h = parse_checkpoint_header(f.read(Q8_HEADER_BYTES), size, str(src_path))
        if h.group_size is not None:
            raise InvalidCheckpoint(
                f"{src_path} is an int8 (version 2) checkpoint: convert the f32 one"
            )
        tokens = _read_tokens(Path(tokenizer), h.vocab_size)
        tensors = _tensors(f, h, kind)
    if not dst_path.parent.is_dir():
        raise InputError(f"output directory does not exist: {dst_path.parent}")
    metadata = model_metadata("llama", h, kind=kind, name=src_path.stem)
    metadata += tokenizer_metadata(tokens)
    written = 0

    def write(out: BinaryIO) -> None:
        nonlocal written
        written = gw.write_gguf(out, metadata, tensors)

    write_atomically(dst_path, write, "GGUF file")
    matrices = [t for t in tensors if len(t.dims) == 2]
    quantized = sum(t.kind != gw.GGML_F32 for t in matrices)
    counts: dict[str, int] = {}
    for t in tensors:
        counts[gw.TYPE_NAMES[t.kind]] = counts.get(gw.TYPE_NAMES[t.kind], 0) + 1
    kept = len(matrices) - quantized
    return ConvertResult(dst_path, h, kind, written, quantized, kept, dict(sorted(counts.items())))


def _tensors(f: BinaryIO, h: CheckpointHeader, kind: str) -> list[gw.Tensor]:
    spans = _f32_spans(h)

    def raw(span: tuple[int, int]) -> bytes:
        f.seek(span[0])
        data = f.read(span[1])
        if len(data) != span[1]:
            raise InvalidCheckpoint("checkpoint changed while it was read")
        return data

    d, hid, kv = h.dim, h.hidden_dim, h.kv_dim
    shapes = {
        "wq": ("attn_q", (d, d)),
        "wk": ("attn_k", (kv, d)),
        "wv": ("attn_v", (kv, d)),
        "wo": ("attn_output", (d, d)),
        "w1": ("ffn_gate", (hid, d)),
        "w2": ("ffn_down", (d, hid)),
        "w3": ("ffn_up", (hid, d)),
    }
    n = h.n_layers

    def tensor(name: str, dims: tuple[int, ...], span: tuple[int, int]) -> gw.Tensor:
        return _tensor(name, dims, raw(span), kind, n)

    out = [tensor("token_embd.weight", (h.vocab_size, d), spans["embedding"][0])]
    for layer in range(h.n_layers):
        out.append(tensor(f"blk.{layer}.attn_norm.weight", (d,), spans["rms_att"][layer]))
        for key in ("wq", "wk", "wv", "wo"):
            short, dims = shapes[key]
            out.append(tensor(f"blk.{layer}.{short}.weight", dims, spans[key][layer]))
        out.append(tensor(f"blk.{layer}.ffn_norm.weight", (d,), spans["rms_ffn"][layer]))
        for key in ("w1", "w2", "w3"):
            short, dims = shapes[key]
            out.append(tensor(f"blk.{layer}.{short}.weight", dims, spans[key][layer]))
    out.append(tensor("output_norm.weight", (d,), spans["rms_final"][0]))
    if not h.shared_classifier:
        out.append(tensor("output.weight", (h.vocab_size, d), spans["classifier"][0]))
    return out
