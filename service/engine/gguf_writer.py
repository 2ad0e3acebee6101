"""A GGUF (version 3) writer: metadata in the order given, tensor infos, the aligned data
section. Deterministic: the same metadata and tensors give the same bytes. The engine's reader
is rust_guest/src/gguf.rs; the key and tensor names are llama.cpp's.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import BinaryIO

#: GGUF's value type ids.
_U32, _I32, _F32, _BOOL, _STRING, _ARRAY = 4, 5, 6, 7, 8, 9
#: ggml tensor type ids.
GGML_F32 = 0
GGML_F16 = 1
GGML_Q4_0 = 2
GGML_Q8_0 = 8
GGML_Q4_K = 12
GGML_Q6_K = 14
#: llama.cpp's names of the types written here.
TYPE_NAMES = {GGML_F32: "F32", GGML_F16: "F16", GGML_Q4_0: "Q4_0", GGML_Q8_0: "Q8_0"}
TYPE_NAMES |= {GGML_Q4_K: "Q4_K", GGML_Q6_K: "Q6_K"}
#: Values per Q8_0 block (an f16 scale and 32 int8 values: 34 bytes).
Q8_0_BLOCK = 32
ALIGNMENT = 32


@dataclass(frozen=True)
class Tensor:
    """A tensor to write: ``dims`` row-major (outermost first), its type and its bytes."""

    name: str
    dims: tuple[int, ...]
    kind: int
    data: bytes


#: A metadata value: int (u32 unless it is an I32 wrapper), float (f32), bool, str, or a list
#: of one of these (tokens, scores, token types).
MetaValue = int | float | bool | str | list[int] | list[float] | list[str]


@dataclass(frozen=True)
class I32:
    """An int stored as GGUF's i32 (plain ints are u32)."""

    value: int


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _scalar(value: object) -> tuple[int, bytes]:
    if isinstance(value, bool):
        return _BOOL, struct.pack("<B", int(value))
    if isinstance(value, I32):
        return _I32, struct.pack("<i", value.value)
    if isinstance(value, int):
        return _U32, struct.pack("<I", value)
    if isinstance(value, float):
        return _F32, struct.pack("<f", value)
    if isinstance(value, str):
        return _STRING, _string(value)
    raise TypeError(f"cannot write a GGUF value of type {type(value).__name__}")


def _value(value: object) -> bytes:
    if isinstance(value, list):
        kinds = {_scalar(v)[0] for v in value[:1]} or {_U32}
        (kind,) = kinds
        body = b"".join(_scalar(v)[1] for v in value)
        return struct.pack("<IIQ", _ARRAY, kind, len(value)) + body
    kind, body = _scalar(value)
    return struct.pack("<I", kind) + body


def _pad(n: int) -> int:
    return -n % ALIGNMENT


def write_gguf(out: BinaryIO, metadata: list[tuple[str, object]], tensors: list[Tensor]) -> int:
    """Write a GGUF file to ``out``; returns the bytes written."""
    head = bytearray(b"GGUF")
    head += struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for key, value in metadata:
        head += _string(key) + _value(value)
    offset = 0
    for t in tensors:
        head += _string(t.name) + struct.pack("<I", len(t.dims))
        head += b"".join(struct.pack("<Q", d) for d in reversed(t.dims))  # ggml's ne order
        head += struct.pack("<IQ", t.kind, offset)
        offset += len(t.data) + _pad(len(t.data))
    head += b"\0" * _pad(len(head))
    out.write(head)
    written = len(head)
    for t in tensors:
        out.write(t.data + b"\0" * _pad(len(t.data)))
        written += len(t.data) + _pad(len(t.data))
    return written


def _round_half_away(x: float) -> int:
    """C's ``roundf`` (llama.cpp's Q8_0 quantizer)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def quantize_q8_0(values: list[float]) -> bytes:
    """llama.cpp's reference Q8_0 (``quantize_row_q8_0_ref``): per block of 32, ``d = amax /
    127`` and ``q = round(x / d)`` in f32, ``d`` stored as f16. ``len(values)`` is a multiple of
    32. Each f32 operation is done in double and rounded to f32, which is exact for one
    operation on f32 operands."""
    out = bytearray()
    for start in range(0, len(values), Q8_0_BLOCK):
        block = values[start : start + Q8_0_BLOCK]
        amax = max(abs(v) for v in block)
        d = _f32(amax / 127.0)
        inv = _f32(1.0 / d) if d else 0.0
        out += struct.pack("<e", d)
        out += struct.pack("<32b", *(_round_half_away(_f32(v * inv)) for v in block))
    return bytes(out)


def quantize_q4_0(values: list[float]) -> bytes:
    """llama.cpp's reference Q4_0 (``quantize_row_q4_0_ref``): per block of 32, ``d = m / -8``
    where ``m`` is the value of largest magnitude, ``q = min(15, trunc(x / d + 8.5))`` in f32,
    ``d`` stored as f16; byte ``j`` holds value ``j`` (low nibble) and ``j + 16`` (high)."""
    out = bytearray()
    for start in range(0, len(values), Q8_0_BLOCK):
        block = values[start : start + Q8_0_BLOCK]
        peak = 0.0
        for v in block:
            if abs(v) > abs(peak):
                peak = v
        d = _f32(peak / -8.0)
        inv = _f32(1.0 / d) if d else 0.0
        q = [min(15, int(_f32(_f32(v * inv) + 8.5))) for v in block]
        out += struct.pack("<e", d)
        out += bytes(lo | (hi << 4) for lo, hi in zip(q[:16], q[16:], strict=True))
    return bytes(out)


def to_f16(values: list[float]) -> bytes:
    """IEEE half precision, rounded to nearest even (struct's ``e``)."""
    return struct.pack(f"<{len(values)}e", *values)
