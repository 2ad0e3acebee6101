"""A :class:`GenerateQuery` from the URL parameters of the SSE ``generate`` endpoint.

The parameters are the query's fields (``edgechain.service.query``) under their GraphQL names:
``model``, ``prompt``, ``version``, ``maxTokens``, ``temperature``, ``topP``, ``repeatPenalty``,
``repeatWindow``, ``stop`` (repeatable), ``seed`` (decimal). Defaults and range checks are the
query's own; this only maps names and parses text.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import QueryParams

from edgechain.errors import UsageError
from edgechain.service.query import GenerateQuery, Parameter, parameters

__all__ = ["GENERATE_PARAMETERS", "generate_query_from_params"]

#: URL parameter -> GenerateQuery field.
_FIELDS: dict[str, str] = {Parameter.camel(name): name for name in parameters()}

GENERATE_PARAMETERS = tuple(_FIELDS)


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
