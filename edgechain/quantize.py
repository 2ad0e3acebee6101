"""Int8 checkpoints: llama2.c's version-2 format (runq.c's ``ak42`` header, Q8_0 groups).

:func:`quantize_checkpoint` converts an f32 llama2.c checkpoint into it the way llama2.c's
``export.py`` (``version2_export``) does; both headers are read and checked by
:func:`edgechain.service.engine.model_files.parse_checkpoint_header` (the layout is documented in
rust_guest/ABI.md, "Checkpoint formats"). The per-group arithmetic
runs in Rust (``edgechain_native.quantize_q80``, the engine's own ``q8`` module): pure Python
would spend about a microsecond per weight (minutes for 110M); here Python only moves each
tensor from its place in the f32 file to its place in the int8 file, one tensor in memory at a
time, and a large tensor in pieces of whole groups (the 1.1B shape's embedding table is 262 MB
of f32), so memory stays bounded by :data:`CHUNK_BYTES` whatever the model's size.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from edgechain.errors import InputError, InvalidCheckpoint, InvalidParameter
from edgechain.files import write_atomically
from edgechain.service.engine.model_files import (
    HEADER_BYTES,
    Q8_HEADER_BYTES,
    Q8_MAGIC,
    Q8_VERSION,
    CheckpointHeader,
    parse_checkpoint_header,
)

#: The default group size is the largest power of two up to this that divides dim and hidden_dim.
MAX_DEFAULT_GROUP = 64
#: At most this many bytes of f32 weights are read and quantized at once.
CHUNK_BYTES = 16 * 2**20


def default_group_size(dim: int, hidden_dim: int) -> int:
    """The largest power of two <= 64 dividing both ``dim`` and ``hidden_dim`` (runq.c also
    quantizes the activations, dim and hidden_dim long, in these groups). Group size 1 would
    store a 4-byte scale per 1-byte weight, so InvalidParameter when only 1 divides."""
    size = MAX_DEFAULT_GROUP
    while size > 1:
        if dim % size == 0 and hidden_dim % size == 0:
            return size
        size //= 2
    raise InvalidParameter(
        f"no group size from {MAX_DEFAULT_GROUP} down to 2 divides dim {dim} and hidden_dim "
        f"{hidden_dim}; pass --group-size N with N dividing both"
    )


@dataclass(frozen=True)
class QuantizeResult:
    """What :func:`quantize_checkpoint` wrote."""

    path: Path
    header: CheckpointHeader
    input_bytes: int
    output_bytes: int


def _f32_tensors(h: CheckpointHeader) -> dict[str, list[tuple[int, int]]]:
    """Byte (offset, length) of every tensor of an f32 file, by kind, in layer order."""
    d, hid, kv, n = h.dim, h.hidden_dim, h.kv_dim, h.n_layers
    at = HEADER_BYTES
    spans: dict[str, list[tuple[int, int]]] = {}

    def take(kind: str, count: int, times: int = 1) -> None:
        nonlocal at
        for _ in range(times):
            spans.setdefault(kind, []).append((at, 4 * count))
            at += 4 * count

    take("embedding", h.vocab_size * d)
    take("rms_att", d, n)
    take("wq", d * d, n)
    take("wk", d * kv, n)
    take("wv", d * kv, n)
    take("wo", d * d, n)
    take("rms_ffn", d, n)
    take("w1", d * hid, n)
    take("w2", hid * d, n)
    take("w3", d * hid, n)
    take("rms_final", d)
    take("freq_cis", h.seq_len * h.head_size)
    if not h.shared_classifier:
        take("classifier", h.vocab_size * d)
    return spans


def _q8_order(spans: dict[str, list[tuple[int, int]]]) -> Iterator[tuple[bool, tuple[int, int]]]:
    """(quantized?, span) in export.py's version-2 order."""
    for kind in ("rms_att", "rms_ffn", "rms_final"):
        for span in spans[kind]:
            yield False, span
    for kind in ("embedding", "wq", "wk", "wv", "wo", "w1", "w2", "w3", "classifier"):
        for span in spans.get(kind, []):
            yield True, span


def q8_header_bytes(h: CheckpointHeader, group_size: int) -> bytes:
    """export.py's 256-byte version-2 header for ``h`` quantized in groups of ``group_size``."""
    head = struct.pack("<Ii", Q8_MAGIC, Q8_VERSION)
    head += struct.pack("<7i", *h.i32_values())
    head += struct.pack("<Bi", int(h.shared_classifier), group_size)
    return head + b"\0" * (Q8_HEADER_BYTES - len(head))


def quantize_checkpoint(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], group_size: int | None = None
) -> QuantizeResult:
    """Write ``src`` (an f32 llama2.c checkpoint) to ``dst`` as a version-2 int8 checkpoint.

    ``group_size`` defaults to :func:`default_group_size`; an explicit one must divide dim and
    hidden_dim (InvalidParameter). ``dst`` appears only once complete (written next to it, then
    renamed). Errors: InvalidCheckpoint (bad or already int8 input), InputError (cannot write),
    EngineUnavailable (edgechain_native not built).
    """
    from edgechain.service.engine.files import open_input, read_exactly
    from edgechain.service.engine.native import import_native

    native = import_native()
    src_path, dst_path = Path(src), Path(dst)
    with open_input(src_path, "checkpoint", InvalidCheckpoint) as f:
        size = os.fstat(f.fileno()).st_size
        h = parse_checkpoint_header(f.read(Q8_HEADER_BYTES), size, str(src_path))
        if h.group_size is not None:
            raise InvalidCheckpoint(f"{src_path} is already an int8 (version 2) checkpoint")
        if group_size is None:
            group_size = default_group_size(h.dim, h.hidden_dim)
        elif group_size <= 0 or h.dim % group_size or h.hidden_dim % group_size:
            raise InvalidParameter(
                f"group size {group_size} does not divide dim {h.dim} and hidden_dim "
                f"{h.hidden_dim}"
            )
        if not dst_path.parent.is_dir():
            raise InputError(f"output directory does not exist: {dst_path.parent}")
        if dst_path.exists() and dst_path.resolve() == src_path.resolve():
            raise InvalidParameter("the output would overwrite the input checkpoint")

        def write(out: BinaryIO) -> None:
            out.write(q8_header_bytes(h, group_size))
            # Whole groups per piece: the same values and scales as one call per tensor.
            piece = max(1, CHUNK_BYTES // (4 * group_size)) * 4 * group_size
            for quantized, (offset, length) in _q8_order(_f32_tensors(h)):
                f.seek(offset)
                scales = bytearray()
                for at in range(0, length, piece if quantized else length):
                    want = min(piece if quantized else length, length - at)
                    data = read_exactly(f, want)
                    if len(data) != want:
                        raise InvalidCheckpoint(f"{src_path} changed while it was being read")
                    if quantized:
                        values, group_scales = native.quantize_q80(data, group_size)
                        out.write(values)
                        scales += group_scales
                    else:
                        out.write(data)
                out.write(scales)

        write_atomically(dst_path, write, "output checkpoint", InputError)
    written = replace(h, group_size=group_size)
    return QuantizeResult(dst_path, written, size, dst_path.stat().st_size)
