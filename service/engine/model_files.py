"""Check a llama2.c checkpoint and tokenizer.bin without loading the weights.

``model publish`` runs these checks before it proposes a block, so a file the engine would refuse
(random bytes, a truncated checkpoint, a tokenizer for another vocabulary) is never certified. The
rules mirror the engine's readers, which stay the reference: ``rust_guest/src/checkpoint/header.rs``
(header fields of run.c's f32 and runq.c's int8 formats, bounds, the exact byte count the
header implies) and
``rust_guest/src/tokenizer.rs`` (``max_token_length``, then per token an f32 score, an i32 length
and that many bytes, to the end of the file). Only the header of a checkpoint is read; a tokenizer
is walked record by record through a buffered stream, never held whole.
"""

from __future__ import annotations

import io
import math
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from edgechain.errors import InputError, InvalidCheckpoint, InvalidTokenizer, VocabMismatch
from edgechain.files import TOKENIZER_MAX_BYTES, input_errors, open_regular
from edgechain.service.engine.checkpoint_header import HEADER_I32_FIELDS, HeaderFields
from edgechain.service.engine.gguf_header import GgufInfo, is_gguf, read_gguf_header

__all__ = [
    "CheckpointHeader",
    "TokenizerInfo",
    "check_model_files",
    "parse_checkpoint_header",
    "read_checkpoint_header",
    "read_model_header",
    "read_tokenizer",
]

#: A local path, bytes already in memory, or an open seekable binary file (a download spooled to
#: a temporary file; read from its start, left open).
Source = str | os.PathLike[str] | bytes | BinaryIO

#: The run.c (version 0, f32) header: 7 int32.
HEADER_BYTES = 7 * 4
#: llama2.c's export.py writes this uint32 ("ak42") first in its versioned formats; version 2 is
#: runq.c's int8 (Q8_0) format, whose header is padded to 256 bytes.
Q8_MAGIC = 0x616B3432
Q8_VERSION = 2
Q8_HEADER_BYTES = 256
# The engine's bounds (checkpoint/header.rs): they reject garbage headers before any size
# arithmetic.
MAX_DIM = 1 << 16
MAX_LAYERS = 1 << 10
MAX_VOCAB = 1 << 20
MAX_SEQ_LEN = 1 << 20
MAX_TOKEN_LENGTH = 1 << 16
_HEADER = struct.Struct("<7i")
_RECORD = struct.Struct("<fi")


@dataclass(frozen=True)
class CheckpointHeader(HeaderFields):
    """A llama2.c checkpoint header: run.c's f32 (version 0, ``group_size`` None) or runq.c's
    int8 (version 2, Q8_0 in groups of ``group_size``)."""

    def matrices(self) -> list[int]:
        """Value counts of the matrices an int8 file stores in Q8_0, in its order."""
        d, h, kv, n = self.dim, self.hidden_dim, self.kv_dim, self.n_layers
        counts = [self.vocab_size * d]
        for per_layer in (d * d, d * kv, d * kv, d * d, d * h, h * d, d * h):
            counts += [per_layer] * n
        if not self.shared_classifier:
            counts.append(self.vocab_size * d)
        return counts

    @property
    def expected_bytes(self) -> int:
        """The exact file size this header implies (checkpoint/header.rs ``expected_bytes``)."""
        dim, hidden, vocab, n = self.dim, self.hidden_dim, self.vocab_size, self.n_layers
        if self.group_size is not None:
            quantized = sum(c + 4 * (c // self.group_size) for c in self.matrices())
            return Q8_HEADER_BYTES + 4 * (2 * n + 1) * dim + quantized
        per_layer = 2 * dim + 2 * dim * dim + 2 * dim * self.kv_dim + 3 * dim * hidden
        classifier = 0 if self.shared_classifier else vocab * dim
        weights = vocab * dim + n * per_layer + dim + self.seq_len * self.head_size + classifier
        return HEADER_BYTES + 4 * weights


@dataclass(frozen=True)
class TokenizerInfo:
    """What a tokenizer.bin walk found: its vocabulary size and ``max_token_length``."""

    vocab_size: int
    max_token_length: int


def parse_checkpoint_header(
    header: bytes, file_size: int | None, name: str = "checkpoint"
) -> CheckpointHeader:
    """The header in ``header`` (the file's first :data:`Q8_HEADER_BYTES` bytes, or all of a
    shorter file), checked as the engines check it; against ``file_size`` unless None."""
    size = len(header) if file_size is None else file_size
    group_size: int | None = None
    if len(header) >= 4 and struct.unpack_from("<I", header)[0] == Q8_MAGIC:
        if size < Q8_HEADER_BYTES or len(header) < Q8_HEADER_BYTES:
            raise InvalidCheckpoint(
                f"{name}: {size} bytes, shorter than the {Q8_HEADER_BYTES}-byte int8 (version 2) "
                "header"
            )
        (version,) = struct.unpack_from("<i", header, 4)
        if version != Q8_VERSION:
            raise InvalidCheckpoint(
                f"{name}: a llama2.c version-{version} export (magic 'ak42'); only run.c's "
                f"format (version 0, f32) and runq.c's (version {Q8_VERSION}, int8) are supported"
            )
        raw = _HEADER.unpack_from(header, 8)
        shared_flag, group_size = struct.unpack_from("<Bi", header, 8 + HEADER_BYTES)
        if shared_flag not in (0, 1):
            raise InvalidCheckpoint(
                f"{name}: header flag shared_classifier = {shared_flag} is neither 0 nor 1"
            )
        shared = bool(shared_flag)
    else:
        if size < HEADER_BYTES or len(header) < HEADER_BYTES:
            raise InvalidCheckpoint(
                f"{name}: {size} bytes, shorter than the {HEADER_BYTES}-byte llama2.c header"
            )
        raw = _HEADER.unpack_from(header)
        shared = raw[5] > 0  # a negative vocab_size: a separate classifier follows
    for field, value in zip(HEADER_I32_FIELDS, raw, strict=True):
        ok = value not in (0, -(2**31)) if field == "vocab_size" else value > 0
        if group_size is not None and field == "vocab_size":
            ok = value > 0  # version 2 says it with the flag
        if not ok:
            raise InvalidCheckpoint(
                f"{name}: header field {field} = {value} is not positive "
                "(not a llama2.c checkpoint?)"
            )
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = raw
    config = CheckpointHeader(
        dim, hidden, layers, heads, kv_heads, abs(vocab), seq_len, shared, group_size
    )
    for field, value, bound in (
        ("dim", dim, MAX_DIM),
        ("hidden_dim", hidden, 4 * MAX_DIM),
        ("n_layers", layers, MAX_LAYERS),
        ("n_heads", heads, dim),
        ("n_kv_heads", kv_heads, heads),
        ("vocab_size", abs(vocab), MAX_VOCAB),
        ("seq_len", seq_len, MAX_SEQ_LEN),
    ):
        if value > bound:
            raise InvalidCheckpoint(f"{name}: header field {field} = {value} exceeds {bound}")
    if dim % heads:
        raise InvalidCheckpoint(f"{name}: dim {dim} is not a multiple of n_heads {heads}")
    if heads % kv_heads:
        raise InvalidCheckpoint(
            f"{name}: n_heads {heads} is not a multiple of n_kv_heads {kv_heads}"
        )
    if config.head_size % 2:
        raise InvalidCheckpoint(f"{name}: head size {config.head_size} is odd (RoPE needs pairs)")
    if group_size is not None and (group_size <= 0 or dim % group_size or hidden % group_size):
        raise InvalidCheckpoint(
            f"{name}: group size {group_size} does not divide dim {dim} and hidden_dim {hidden}"
        )
    if file_size is not None and config.expected_bytes != file_size:
        kind = "int8" if group_size is not None else "f32"
        classifier = "shared" if config.shared_classifier else "separate"
        raise InvalidCheckpoint(
            f"{name}: the {kind} header (dim {dim}, {layers} layers, vocab {abs(vocab)}, "
            f"{classifier} classifier) implies {config.expected_bytes} bytes but the file is "
            f"{file_size} bytes"
        )
    return config


def read_checkpoint_header(source: Source, name: str | None = None) -> CheckpointHeader:
    """Read and check a checkpoint's header against its size; the weights are not read."""
    label = name or _label(source, "checkpoint")
    with _open(source, label, InvalidCheckpoint) as (stream, size):
        header = stream.read(Q8_HEADER_BYTES)  # a short file is judged by its size below
    return parse_checkpoint_header(header, size, label)


def read_model_header(source: Source, name: str | None = None) -> CheckpointHeader | GgufInfo:
    """A llama2.c checkpoint's header (:func:`read_checkpoint_header`), or a GGUF file's
    (:func:`edgechain.service.engine.gguf_header.read_gguf_header`: weights and tokenizer in
    one file), told apart by the first four bytes."""
    label = name or _label(source, "checkpoint")
    with _open(source, label, InvalidCheckpoint) as (stream, size):
        head = stream.read(4)
        stream.seek(0)
        if is_gguf(head):
            if not isinstance(stream, io.RawIOBase):
                return read_gguf_header(stream, size, label)
            buffered = io.BufferedReader(stream)  # the metadata is many small fields
            try:
                return read_gguf_header(buffered, size, label)
            finally:
                buffered.detach()
    return read_checkpoint_header(source, name)


def read_tokenizer(
    source: Source, name: str | None = None, *, model_vocab: int | None = None
) -> TokenizerInfo:
    """Walk a tokenizer.bin record by record (tokenizer.rs's rules), at most ``MAX_VOCAB``.

    With ``model_vocab``, the vocabulary must have exactly that many tokens (VocabMismatch).
    """
    label = name or _label(source, "tokenizer")
    with _open(source, label, InvalidTokenizer) as (stream, size):
        if size < 4:
            raise InvalidTokenizer(f"{label}: {size} bytes, too short for a tokenizer.bin header")
        (max_len,) = struct.unpack("<i", _read(stream, 4, label, InvalidTokenizer))
        if not 0 < max_len <= MAX_TOKEN_LENGTH:
            raise InvalidTokenizer(
                f"{label}: max_token_length {max_len} is out of range (1..{MAX_TOKEN_LENGTH}; "
                "not a llama2.c tokenizer.bin?)"
            )
        at, count = 4, 0
        while at < size:
            if count == MAX_VOCAB:
                raise InvalidTokenizer(f"{label}: more than {MAX_VOCAB} tokens")
            record = stream.read(_RECORD.size)
            if len(record) < _RECORD.size:
                raise InvalidTokenizer(
                    f"{label}: truncated at byte {at} in the record of token {count}"
                )
            score, length = _RECORD.unpack(record)
            if not 0 <= length <= max_len:
                raise InvalidTokenizer(
                    f"{label}: token {count} has length {length} (max_token_length is {max_len})"
                )
            if not math.isfinite(score):
                raise InvalidTokenizer(f"{label}: token {count} has a non-finite score")
            if len(stream.read(length)) < length:
                raise InvalidTokenizer(
                    f"{label}: truncated at byte {at + 8} in the bytes of token {count}"
                )
            at += _RECORD.size + length
            count += 1
    if count < 3:
        raise InvalidTokenizer(f"{label}: only {count} tokens (need at least <unk>, <s>, </s>)")
    if model_vocab is not None and count != model_vocab:
        raise VocabMismatch(
            f"{label} has {count} tokens but the model's vocab_size is {model_vocab}"
        )
    return TokenizerInfo(count, max_len)


def check_model_files(
    weights: Source,
    tokenizer: Source,
    *,
    weights_name: str | None = None,
    tokenizer_name: str | None = None,
) -> tuple[CheckpointHeader, TokenizerInfo]:
    """Both files parse and the tokenizer's vocabulary is the model's (what generate needs)."""
    header = read_checkpoint_header(weights, weights_name)
    return header, read_tokenizer(tokenizer, tokenizer_name, model_vocab=header.vocab_size)


# --- reading --------------------------------------------------------------------------------


def _label(source: Source, what: str) -> str:
    if isinstance(source, bytes) or hasattr(source, "read"):
        return f"downloaded {what}"
    return os.fspath(source)  # type: ignore[arg-type]


@contextmanager
def _open(source: Source, label: str, error: type[InputError]) -> Iterator[tuple[BinaryIO, int]]:
    """A buffered binary stream over ``source`` and its size; ``error`` if it cannot be read."""
    if isinstance(source, bytes):
        yield io.BytesIO(source), len(source)
        return
    if hasattr(source, "read"):
        with input_errors(label, error):
            size = source.seek(0, os.SEEK_END)
            source.seek(0)
        yield source, size  # type: ignore[misc]
        return
    cap = TOKENIZER_MAX_BYTES if error is InvalidTokenizer else None
    f = open_regular(source, None, error, cap)  # type: ignore[arg-type]
    with f, input_errors(label, error):
        yield f, os.fstat(f.fileno()).st_size


def _read(stream: BinaryIO, n: int, label: str, error: type[InputError]) -> bytes:
    data = stream.read(n)
    if len(data) < n:
        raise error(f"{label}: truncated ({len(data)} bytes where {n} were expected)")
    return data
