"""The RNG seed of a query: the user's, else derived from certified chain data and the query.

A derived seed makes a query reproducible: the same prompt and parameters against the same
certified block of the same application give the same seed, hence (with the same engine) the
same text; change any of them and the seed changes.

Which parameters enter is the caller's choice: a ``generate`` query
(``edgechain.service.query.GenerateQuery.seed_query``) passes the sampling parameters
``temperature``, ``top_p``, ``repeat_penalty`` and ``repeat_window``, and neither the token
budget (``max_tokens``) nor the ``stop`` strings, which only say where to stop: the same query
with a larger budget gets the same seed, so its text extends the shorter one.

Encoding (version 2; changing it or what a query passes changes every derived seed, so it gets
a new tag; v1 also covered ``max_tokens`` and ``stop``)::

    seed = u64_le(BLAKE3(encoding)[0:8])
    encoding = field("edgechain/seed/v2")
             ‖ field(chain_id) ‖ field(block_hash) ‖ field(application_id)
             ‖ field(model) ‖ field(version) ‖ field(prompt)
             ‖ u64_le(number of parameters)
             ‖ for each parameter, sorted by name (UTF-8 bytes): field(name) ‖ value(v)
    field(b)  = u64_le(len(b)) ‖ b         (strings as UTF-8)

Identifiers (chain, block, application): ``bytes`` are written as their lowercase hex; a ``str``
of hex digits is lowercased; any other ``str`` is used as it is. So ``b"\\xab"``, ``"AB"`` and
``"ab"`` are the same identifier. ``version`` is written as ``str(version)``.

Parameter values carry a one-byte type tag::

    None          b"N"
    bool          b"B" ‖ (b"\\x01" | b"\\x00")
    integer       b"I" ‖ field(decimal ASCII, "-" for negatives)
    float         an integral float below 2**53 in magnitude is that integer (1.0 == 1,
                  -0.0 == 0); else b"F" ‖ f64_le. NaN and infinities are rejected.
    str           b"S" ‖ field(UTF-8)
    list/tuple    b"L" ‖ u64_le(count) ‖ value(item)...

The parameter named ``seed`` is never part of the encoding: it is what is being derived.
"""

from __future__ import annotations

import dataclasses
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import blake3

from edgechain.errors import InvalidParameter

__all__ = [
    "SEED_DOMAIN",
    "SeedQuery",
    "derive_seed",
    "encode_seed_input",
    "resolve_seed",
]

#: Domain-separation tag: the first field of every encoding.
SEED_DOMAIN = "edgechain/seed/v2"

_U64_MAX = (1 << 64) - 1
_HEX = re.compile(r"[0-9a-fA-F]+")
_EXACT_FLOAT_INTS = float(1 << 53)


@dataclass(frozen=True)
class SeedQuery:
    """The parts of a query that determine its seed.

    ``params`` holds every generation parameter (temperature, top_p, max_tokens, ...) as a
    mapping, or a dataclass instance whose fields are the parameters. A ``seed`` entry is
    ignored.
    """

    model: str
    version: str | int
    prompt: str
    params: Mapping[str, Any] | Any = field(default_factory=dict)

    def parameter_items(self) -> list[tuple[str, Any]]:
        """The parameters without ``seed``, sorted by the UTF-8 bytes of their names."""
        params = self.params
        if dataclasses.is_dataclass(params) and not isinstance(params, type):
            params = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a mapping or a dataclass, not {type(params)!r}")
        items = [(str(k), v) for k, v in params.items() if k != "seed"]
        return sorted(items, key=lambda kv: kv[0].encode("utf-8"))


def encode_seed_input(
    chain_id: str | bytes, block_hash: str | bytes, application_id: str | bytes, query: SeedQuery
) -> bytes:
    """The canonical bytes hashed by :func:`derive_seed` (see the module docstring)."""
    out = bytearray()
    _field(out, SEED_DOMAIN.encode("utf-8"))
    for identifier in (chain_id, block_hash, application_id):
        _field(out, _identifier(identifier))
    _field(out, query.model.encode("utf-8"))
    _field(out, str(query.version).encode("utf-8"))
    _field(out, query.prompt.encode("utf-8"))
    items = query.parameter_items()
    out += struct.pack("<Q", len(items))
    for name, value in items:
        _field(out, name.encode("utf-8"))
        _value(out, value, name)
    return bytes(out)


def derive_seed(
    chain_id: str | bytes, block_hash: str | bytes, application_id: str | bytes, query: SeedQuery
) -> int:
    """A u64 seed from certified chain data and the query: BLAKE3, first 8 bytes, little-endian.

    ``block_hash`` is the hash of the certified block whose state the query reads.
    """
    digest = blake3.blake3(encode_seed_input(chain_id, block_hash, application_id, query)).digest()
    return int.from_bytes(digest[:8], "little")


def resolve_seed(
    user_seed: int | None,
    chain_id: str | bytes,
    block_hash: str | bytes,
    application_id: str | bytes,
    query: SeedQuery,
) -> int:
    """The seed a query runs with: ``user_seed`` if given (a u64), else :func:`derive_seed`."""
    if user_seed is not None:
        if isinstance(user_seed, bool) or not isinstance(user_seed, int):
            raise InvalidParameter(f"seed must be an integer, got {user_seed!r}")
        if not 0 <= user_seed <= _U64_MAX:
            raise InvalidParameter(f"seed must be between 0 and 2**64-1, got {user_seed}")
        return user_seed
    return derive_seed(chain_id, block_hash, application_id, query)


def _field(out: bytearray, data: bytes) -> None:
    out += struct.pack("<Q", len(data))
    out += data


def _identifier(value: str | bytes) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex().encode("ascii")
    if isinstance(value, str):
        text = value.lower() if _HEX.fullmatch(value) else value
        return text.encode("utf-8")
    raise TypeError(f"an identifier must be str or bytes, not {type(value)!r}")


def _value(out: bytearray, value: Any, name: str) -> None:
    if value is None:
        out += b"N"
    elif isinstance(value, bool):
        out += b"B\x01" if value else b"B\x00"
    elif isinstance(value, int):
        out += b"I"
        _field(out, str(value).encode("ascii"))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidParameter(f"parameter {name} must be a finite number, got {value!r}")
        if value.is_integer() and abs(value) < _EXACT_FLOAT_INTS:
            _value(out, int(value), name)
        else:
            out += b"F"
            out += struct.pack("<d", value)
    elif isinstance(value, str):
        out += b"S"
        _field(out, value.encode("utf-8"))
    elif isinstance(value, list | tuple):
        out += b"L"
        out += struct.pack("<Q", len(value))
        for item in value:
            _value(out, item, name)
    else:
        raise InvalidParameter(
            f"parameter {name} has a type the seed cannot encode: {type(value).__name__}"
        )
