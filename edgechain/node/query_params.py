"""A :class:`GenerateQuery` from the URL parameters of the SSE ``generate`` endpoint.

Names are those of the GraphQL ``generate`` field: ``model``, ``prompt``, ``version``,
``maxTokens``, ``temperature``, ``topP``, ``repeatPenalty``, ``stop`` (repeatable), ``seed``.
Range checks are the service's own (``GenerationParams.validate``); this only parses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.datastructures import QueryParams

from edgechain.errors import InvalidParameter, UsageError
from edgechain.service.runtime import GenerateQuery

__all__ = ["GENERATE_PARAMETERS", "generate_query_from_params"]


def _integer(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidParameter(f"{name} must be an integer, got {text!r}") from None


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidParameter(f"{name} must be a number, got {text!r}") from None


def _seed(name: str, text: str) -> int:
    value = _integer(name, text)
    if not 0 <= value < 2**64:
        raise InvalidParameter(f"{name} must be in [0, 2^64), got {value}")
    return value


#: URL parameter -> (GenerateQuery field, parser) for the single-valued parameters.
_SINGLE: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "model": ("model", lambda _n, v: v),
    "prompt": ("prompt", lambda _n, v: v),
    "version": ("version", lambda _n, v: v),
    "maxTokens": ("max_tokens", _integer),
    "temperature": ("temperature", _number),
    "topP": ("top_p", _number),
    "repeatPenalty": ("repeat_penalty", _number),
    "seed": ("seed", _seed),
}

GENERATE_PARAMETERS = (*_SINGLE, "stop")


def generate_query_from_params(params: QueryParams) -> GenerateQuery:
    """Parse ``params``; UsageError for an unknown, repeated or missing parameter."""
    unknown = sorted(set(params.keys()) - set(GENERATE_PARAMETERS))
    if unknown:
        raise UsageError(
            f"unknown parameter {unknown[0]!r} (known: {', '.join(GENERATE_PARAMETERS)})"
        )
    fields: dict[str, Any] = {}
    for name, (field, parse) in _SINGLE.items():
        values = params.getlist(name)
        if len(values) > 1:
            raise UsageError(f"parameter {name!r} given {len(values)} times")
        if values:
            fields[field] = parse(name, values[0])
    for required in ("model", "prompt"):
        if required not in fields:
            raise UsageError(f"missing parameter {required!r}")
    stop = params.getlist("stop")
    return GenerateQuery(**fields, stop=tuple(stop))
