"""A :class:`GenerateQuery` from the URL parameters of the SSE ``generate`` endpoint.

The parameters are the query's fields (``edgechain.service.query``) under their GraphQL names:
``model``, ``prompt``, ``messages`` (JSON text: a list of ``{"role", "content"}``), ``version``,
``maxTokens``, ``temperature``, ``topP``, ``repeatPenalty``, ``repeatWindow``, ``stop``
(repeatable), ``seed`` (decimal). Defaults and range checks are the query's own; this only maps
names and parses text.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.datastructures import QueryParams

from edgechain.errors import InvalidText, UsageError
from edgechain.service.query import GenerateQuery, Parameter, parameters

__all__ = ["GENERATE_PARAMETERS", "check_utf8_query_string", "generate_query_from_params"]

#: URL parameter -> GenerateQuery field.
_FIELDS: dict[str, str] = {Parameter.camel(name): name for name in parameters()}

GENERATE_PARAMETERS = tuple(_FIELDS)


def check_utf8_query_string(raw: bytes) -> None:
    """InvalidText naming the first parameter whose name or value, once %-decoded, is not UTF-8
    text (``%FF``, an encoded surrogate ``%ED%A0%80``): Starlette would replace the bytes with
    U+FFFD, where the CLI and GraphQL refuse such text."""
    for field in raw.split(b"&"):
        name, _, value = field.partition(b"=")
        decoded_name = unquote_to_bytes(name.replace(b"+", b" "))
        for part in (decoded_name, unquote_to_bytes(value.replace(b"+", b" "))):
            try:
                part.decode("utf-8")
            except UnicodeDecodeError as err:
                shown = decoded_name.decode("utf-8", "replace")
                raise InvalidText(
                    f"parameter {shown!r} is not valid UTF-8 text: the byte "
                    f"0x{part[err.start]:02x} at byte {err.start}"
                ) from None


def generate_query_from_params(params: QueryParams) -> GenerateQuery:
    """Parse ``params``; UsageError for an unknown or repeated parameter, InvalidParameter /
    InvalidText for a bad value (as :class:`GenerateQuery` reports it)."""
    unknown = sorted(set(params.keys()) - set(GENERATE_PARAMETERS))
    if unknown:
        raise UsageError(
            f"unknown parameter {unknown[0]!r} (known: {', '.join(GENERATE_PARAMETERS)})"
        )
    specs = parameters()
    fields: dict[str, Any] = {}
    for url_name, field in _FIELDS.items():
        spec = specs[field]
        values = params.getlist(url_name)
        if spec.kind == "texts":
            fields[field] = tuple(values)
        elif len(values) > 1:
            raise UsageError(f"parameter {url_name!r} given {len(values)} times")
        elif values:
            fields[field] = spec.parse(values[0], url_name)
    if "model" not in fields:
        raise UsageError("missing parameter 'model'")
    return GenerateQuery(**fields)
