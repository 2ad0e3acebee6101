"""The canonical encoding: the same bytes for the same value on every machine and Python version.

Every hash and signature in edgechain is computed over these bytes (see docs/chain.md). A value is
one of: ``None``, ``bool``, ``int`` (signed 64-bit), ``bytes``, ``str``, ``list``/``tuple`` and
``dict`` with ``str`` keys. Each value starts with a one-byte type tag; lengths and counts are
unsigned 32-bit big-endian; map entries are sorted by the UTF-8 bytes of their keys. Floats are
refused: their textual and binary forms are a classic source of cross-platform disagreement.
"""

from __future__ import annotations

import struct
from typing import Any

import blake3

from edgechain.errors import InvalidEncoding

TAG_NULL = 0x00
TAG_FALSE = 0x01
TAG_TRUE = 0x02
TAG_INT = 0x03
TAG_BYTES = 0x04
TAG_STR = 0x05
TAG_LIST = 0x06
TAG_MAP = 0x07

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
MAX_LENGTH = 2**32 - 1

_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")

Value = Any  # None | bool | int | bytes | str | list[Value] | dict[str, Value]

# The short local name keeps the many raise sites readable.
EncodingError = InvalidEncoding


def encode(value: Value) -> bytes:
    """Return the canonical encoding of ``value``."""
    out = bytearray()
    _encode_into(value, out)
    return bytes(out)


def _encode_into(value: Value, out: bytearray) -> None:
    # Exact-type checks first (the hot path), then subclasses; bool before int because bool is
    # a subclass of int in Python.
    kind = type(value)
    if kind is str:
        raw = value.encode("utf-8")
        out.append(TAG_STR)
        out += _length(len(raw))
        out += raw
    elif kind is bytes:
        out.append(TAG_BYTES)
        out += _length(len(value))
        out += value
    elif kind is dict:
        _encode_map(value, out)
    elif kind is list or kind is tuple:
        out.append(TAG_LIST)
        out += _length(len(value))
        for item in value:
            _encode_into(item, out)
    elif value is None:
        out.append(TAG_NULL)
    elif value is True:
        out.append(TAG_TRUE)
    elif value is False:
        out.append(TAG_FALSE)
    elif isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise EncodingError(f"integer {value} does not fit in a signed 64-bit integer")
        out.append(TAG_INT)
        out += _I64.pack(value)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _encode_into(bytes(value), out)
    elif isinstance(value, str):
        _encode_into(str(value), out)
    elif isinstance(value, (list, tuple)):
        _encode_into(list(value), out)
    elif isinstance(value, dict):
        _encode_map(value, out)
    else:
        raise EncodingError(f"a {type(value).__name__} has no canonical encoding")


def _encode_map(value: dict[str, Value], out: bytearray) -> None:
    entries = []
    for key, item in value.items():
        if not isinstance(key, str):
            raise EncodingError(f"map key {key!r} is not a string")
        entries.append((key.encode("utf-8"), item))
    entries.sort(key=lambda entry: entry[0])
    out.append(TAG_MAP)
    out += _length(len(entries))
    for raw_key, item in entries:
        out.append(TAG_STR)
        out += _length(len(raw_key))
        out += raw_key
        _encode_into(item, out)


def encode_bytes(raw: bytes) -> bytes:
    """Fast path: the encoding of a ``bytes`` value (same bytes as ``encode(raw)``)."""
    return b"\x04" + _length(len(raw)) + raw


def encode_str(text: str) -> bytes:
    """Fast path: the encoding of a ``str`` value (same bytes as ``encode(text)``)."""
    raw = text.encode("utf-8")
    return b"\x05" + _length(len(raw)) + raw


def list_header(count: int) -> bytes:
    """Fast path: the bytes that open a list of ``count`` items (followed by their encodings)."""
    return b"\x06" + _length(count)


def _length(n: int) -> bytes:
    try:
        return _U32.pack(n)
    except struct.error:
        raise EncodingError(f"length {n} exceeds the 32-bit limit") from None


def decode(data: bytes) -> Value:
    """Decode canonical bytes; raise :class:`EncodingError` unless they are exactly canonical.

    Lists decode to ``list``, maps to ``dict``. Re-encoding the result gives back ``data``.
    """
    data = bytes(data)
    try:
        value, end = _decode_at(data, 0)
    except (IndexError, struct.error):
        raise EncodingError("truncated encoding") from None
    if end != len(data):
        raise EncodingError(f"{len(data) - end} trailing bytes after the encoded value")
    return value


def _decode_at(buf: bytes, pos: int) -> tuple[Value, int]:
    # Truncation surfaces as IndexError / struct.error, turned into EncodingError by decode().
    tag = buf[pos]
    pos += 1
    if tag in (TAG_STR, TAG_BYTES):
        n = _U32.unpack_from(buf, pos)[0]
        pos += 4
        end = pos + n
        if end > len(buf):
            raise EncodingError("truncated encoding")
        if tag == TAG_BYTES:
            return buf[pos:end], end
        try:
            return buf[pos:end].decode("utf-8"), end
        except UnicodeDecodeError:
            raise EncodingError("string is not valid UTF-8") from None
    if tag == TAG_MAP:
        n = _U32.unpack_from(buf, pos)[0]
        pos += 4
        result: dict[str, Value] = {}
        previous = b""
        for i in range(n):
            if buf[pos] != TAG_STR:
                raise EncodingError("map key is not a string")
            key_len = _U32.unpack_from(buf, pos + 1)[0]
            key_end = pos + 5 + key_len
            if key_end > len(buf):
                raise EncodingError("truncated encoding")
            raw_key = buf[pos + 5 : key_end]
            if i and raw_key <= previous:
                raise EncodingError("map keys are not in strictly increasing order")
            previous = raw_key
            try:
                key = raw_key.decode("utf-8")
            except UnicodeDecodeError:
                raise EncodingError("string is not valid UTF-8") from None
            result[key], pos = _decode_at(buf, key_end)
        return result, pos
    if tag == TAG_LIST:
        n = _U32.unpack_from(buf, pos)[0]
        pos += 4
        items = []
        for _ in range(n):
            item, pos = _decode_at(buf, pos)
            items.append(item)
        return items, pos
    if tag == TAG_INT:
        return _I64.unpack_from(buf, pos)[0], pos + 8
    if tag == TAG_NULL:
        return None, pos
    if tag == TAG_TRUE:
        return True, pos
    if tag == TAG_FALSE:
        return False, pos
    raise EncodingError(f"unknown type tag 0x{tag:02x}")


def domain_tag(name: str) -> bytes:
    """The domain-separation prefix for hashes and signatures of kind ``name``."""
    return b"edgechain/" + name.encode("ascii") + b"/v1\x00"


def hash_value(domain: str, value: Value) -> bytes:
    """BLAKE3 (32 bytes) of ``domain_tag(domain) || encode(value)``."""
    return blake3.blake3(domain_tag(domain) + encode(value)).digest()


def hash_encoded(domain: str, encoded: bytes) -> bytes:
    """Like :func:`hash_value` for bytes that are already canonically encoded."""
    return blake3.blake3(domain_tag(domain) + encoded).digest()
