"""Check a llama2.c checkpoint and tokenizer.bin without loading the weights.

``model publish`` runs these checks before it proposes a block, so a file the engine would refuse
(random bytes, a truncated checkpoint, a tokenizer for another vocabulary) is never certified. The
rules mirror the engine's readers, which stay the reference: ``rust_guest/src/checkpoint.rs``
(header fields, bounds, the exact byte count the header implies) and
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

__all__ = [
    "CheckpointHeader",
    "TokenizerInfo",
    "check_model_files",
    "read_checkpoint_header",
    "read_tokenizer",
]

#: A local path, bytes already in memory, or an open seekable binary file (a download spooled to
#: a temporary file; read from its start, left open).
Source = str | os.PathLike[str] | bytes | BinaryIO

HEADER_BYTES = 7 * 4
# The engine's bounds (checkpoint.rs): they reject garbage headers before any size arithmetic.
MAX_DIM = 1 << 16
MAX_LAYERS = 1 << 10
MAX_VOCAB = 1 << 20
MAX_SEQ_LEN = 1 << 20
MAX_TOKEN_LENGTH = 1 << 16
# llama2.c's export.py writes this uint32 first in its versioned formats (v1 fp32, v2 int8 "Q8_0").
_VERSIONED_MAGIC = 0x616B3432  # "ak42"
_FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")
_HEADER = struct.Struct("<7i")
_RECORD = struct.Struct("<fi")


@dataclass(frozen=True)
class CheckpointHeader:
    """A llama2.c (run.c, version 0) checkpoint header that matches its file's size."""

    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.dim * self.n_kv_heads // self.n_heads

    @property
    def expected_bytes(self) -> int:
        """The exact file size this header implies (checkpoint.rs ``expected_bytes``)."""
        dim, hidden, vocab = self.dim, self.hidden_dim, self.vocab_size
        per_layer = 2 * dim + 2 * dim * dim + 2 * dim * self.kv_dim + 3 * dim * hidden
        classifier = 0 if self.shared_classifier else vocab * dim
        weights = (
            vocab * dim
            + self.n_layers * per_layer
            + dim
            + self.seq_len * self.head_size
            + classifier
        )
        return HEADER_BYTES + 4 * weights


@dataclass(frozen=True)
class TokenizerInfo:
    """What a tokenizer.bin walk found: its vocabulary size and ``max_token_length``."""

    vocab_size: int
    max_token_length: int


def parse_checkpoint_header(
    header: bytes, file_size: int, name: str = "checkpoint"
) -> CheckpointHeader:
    """The header in ``header`` (the file's first bytes), checked against ``file_size``."""
    if file_size < HEADER_BYTES or len(header) < HEADER_BYTES:
        raise InvalidCheckpoint(
            f"{name}: {file_size} bytes, shorter than the {HEADER_BYTES}-byte llama2.c header"
        )
    raw = _HEADER.unpack_from(header)
    if struct.unpack_from("<I", header)[0] == _VERSIONED_MAGIC:
        version = raw[1]
        raise InvalidCheckpoint(
            f"{name}: a llama2.c version-{version} export (magic 'ak42'); only the original "
            "run.c format (version 0, export.py --version 0) is supported"
        )
    for field, value in zip(_FIELDS, raw, strict=True):
        ok = value not in (0, -(2**31)) if field == "vocab_size" else value > 0
        if not ok:
            raise InvalidCheckpoint(
                f"{name}: header field {field} = {value} is not positive "
                "(not a llama2.c checkpoint?)"
            )
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = raw
    config = CheckpointHeader(
        dim, hidden, layers, heads, kv_heads, abs(vocab), seq_len, shared_classifier=vocab > 0
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
    if config.expected_bytes != file_size:
        classifier = "shared" if config.shared_classifier else "separate"
        raise InvalidCheckpoint(
            f"{name}: the header (dim {dim}, {layers} layers, vocab {abs(vocab)}, {classifier} "
            f"classifier) implies {config.expected_bytes} bytes but the file is {file_size} bytes"
        )
    return config


def read_checkpoint_header(source: Source, name: str | None = None) -> CheckpointHeader:
    """Read and check a checkpoint's header against its size; the weights are not read."""
    label = name or _label(source, "checkpoint")
    with _open(source, label, InvalidCheckpoint) as (stream, size):
        header = stream.read(HEADER_BYTES)  # a short file is judged by its size below
    return parse_checkpoint_header(header, size, label)


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
        try:
            size = source.seek(0, os.SEEK_END)
            source.seek(0)
        except OSError as exc:
            raise error(f"{label}: cannot read ({exc.strerror or exc})") from None
        yield source, size  # type: ignore[misc]
        return
    try:
        f = open(source, "rb")  # noqa: SIM115 (closed below; errors while open are typed)
    except FileNotFoundError:
        raise error(f"{label}: no such file") from None
    except IsADirectoryError:
        raise error(f"{label}: is a directory, not a file") from None
    except OSError as exc:
        raise error(f"{label}: cannot read ({exc.strerror or exc})") from None
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            yield f, size
        except OSError as exc:
            raise error(f"{label}: cannot read ({exc.strerror or exc})") from None


def _read(stream: BinaryIO, n: int, label: str, error: type[InputError]) -> bytes:
    data = stream.read(n)
    if len(data) < n:
        raise error(f"{label}: truncated ({len(data)} bytes where {n} were expected)")
    return data
