"""An application's ABI: dataclasses with one canonical encoding, and typed decoding.

An operation, a message, the parameters and the instantiation argument are frozen dataclasses
(or plain ``int``/``str``/``bool``/``bytes``/``None``, lists and ``dict[str, ...]`` of them; no
floats: the chain's canonical encoding refuses them, as they round differently across machines).
An operation travels as ``Operation(app, name=<its class name>, payload=<its fields>)``; the
CLI and GraphQL take it as JSON, Linera's way: ``{"Increment": {"value": 3}}``.

:func:`decode` checks every field against its declared type and names the field that does not
fit, so a bad JSON argument gets one clear line. A type that defines its own encoding, a
``to_payload()`` method and a ``from_payload(value)`` classmethod (the built-in applications'
operations and state values: their stored bytes predate the SDK), is encoded and decoded with
them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgechain.chain.encoding import hash_value
from edgechain.errors import InvalidParameter

__all__ = ["Abi", "crypto_hash", "decode", "encode"]


def _named(candidates: tuple[type, ...], name: str, kind: str) -> type:
    """The type among ``candidates`` whose class name is ``name`` (InvalidParameter listing
    them otherwise)."""
    for candidate in candidates:
        if candidate.__name__ == name:
            return candidate
    known = ", ".join(t.__name__ for t in candidates) or "none"
    raise InvalidParameter(f"no {kind} {name!r} ({kind}s: {known})")


@dataclass(frozen=True)
class Abi:
    """What an application's contract takes and returns."""

    #: The operation types (dataclasses); an operation's name is its class name.
    operations: tuple[type, ...]
    #: The type of the parameters given at creation (read by the runtime).
    parameters: Any = type(None)
    #: The type of the instantiation argument.
    instantiation_argument: Any = type(None)
    #: The message types (dataclasses) the contract sends to itself on other chains.
    messages: tuple[type, ...] = ()

    def operation_type(self, name: str) -> type:
        return _named(self.operations, name, "operation")

    def message_type(self, name: str) -> type:
        return _named(self.messages, name, "message")

    def encode_message(self, message: Any) -> list[Any]:
        """A message as it travels: ``[its class name, its fields]``."""
        name = type(message).__name__
        self.message_type(name)  # one of the ABI's messages
        return [name, encode(message)]

    def decode_message(self, payload: Any) -> Any:
        if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], str)):
            raise InvalidParameter("a message travels as [name, fields]")
        return decode(self.message_type(payload[0]), payload[1], payload[0])

    def operation_from_json(self, value: Any) -> Any:
        """``{"Name": {fields}}`` -> the operation's dataclass."""
        if not (isinstance(value, dict) and len(value) == 1):
            names = ", ".join(t.__name__ for t in self.operations)
            raise InvalidParameter(
                f'an operation is {{"Name": {{fields}}}} with Name one of {names}'
            )
        [(name, fields)] = value.items()
        return decode(self.operation_type(name), fields, name)


def encode(value: Any) -> Any:
    """``value`` as canonically encodable data: dataclasses become dicts of their fields."""
    if _own_encoding(type(value)):
        return value.to_payload()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, float):
        raise InvalidParameter("floats have no canonical encoding: use an int (e.g. per mille)")
    return value


def decode(tp: Any, value: Any, where: str = "value") -> Any:
    """``value`` (encoded data or JSON) as type ``tp``; InvalidParameter names the field."""
    if tp is Any:
        return value
    if _own_encoding(tp):
        return tp.from_payload(value)
    if tp is None or tp is type(None):
        if value is not None:
            raise InvalidParameter(f"{where}: expected null, got {_shown(value)}")
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return decode(option, value, where)
            except InvalidParameter as exc:
                errors.append(str(exc))
        raise InvalidParameter(errors[0] if len(errors) == 1 else f"{where}: fits no type")
    if origin in (list, tuple, Sequence):
        if not isinstance(value, list | tuple):
            raise InvalidParameter(f"{where}: expected a list, got {_shown(value)}")
        (item_type, *_) = typing.get_args(tp) or (Any,)
        items = [decode(item_type, item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise InvalidParameter(f"{where}: expected an object, got {_shown(value)}")
        _, item_type = typing.get_args(tp) or (str, Any)
        return {str(k): decode(item_type, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise InvalidParameter(f"{where}: expected true or false, got {_shown(value)}")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidParameter(f"{where}: expected an integer, got {_shown(value)}")
        if not -(2**63) <= value < 2**63:
            raise InvalidParameter(f"{where}: {value} is outside the signed 64-bit range")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise InvalidParameter(f"{where}: expected a string, got {_shown(value)}")
        return value
    if tp is bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            try:
                return bytes.fromhex(value)
            except ValueError:
                pass
        raise InvalidParameter(f"{where}: expected hex bytes, got {_shown(value)}")
    raise InvalidParameter(f"{where}: the ABI declares {tp!r}, which has no canonical encoding")


def _own_encoding(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "to_payload") and hasattr(tp, "from_payload")


def crypto_hash(domain: str, value: Any) -> bytes:
    """The chain's hash (BLAKE3) of ``value``'s canonical encoding, in ``domain`` (Linera's
    ``CryptoHash``): deterministic, so contracts may use it."""
    return hash_value(domain, encode(value))


def _decode_dataclass(tp: type, value: Any, where: str) -> Any:
    if value is None:
        value = {}  # every field at its default (a missing one is named below)
    if not isinstance(value, dict):
        raise InvalidParameter(f"{where}: expected an object, got {_shown(value)}")
    hints = typing.get_type_hints(tp)
    fields = {f.name: f for f in dataclasses.fields(tp)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise InvalidParameter(f"{where}: no field {unknown[0]!r} (fields: {', '.join(fields)})")
    given = {}
    for name, field in fields.items():
        if name in value:
            given[name] = decode(hints.get(name, Any), value[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise InvalidParameter(f"{where}.{name}: missing")
    return tp(**given)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
