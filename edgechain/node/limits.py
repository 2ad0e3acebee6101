"""What one GraphQL request may ask of the node: bounded size, depth, aliases and generations.

Checked before anything runs (parse and validation, then :class:`GenerationBudget` before
execution), so an oversized request costs the node a parse, never a generation:

- :data:`MAX_TOKENS`: lexical tokens in the document (also bounds the parser's recursion);
- :data:`MAX_DEPTH`: nesting of selections (introspection fields are not counted);
- :data:`MAX_ALIASES`: aliased fields;
- :data:`MAX_GENERATE_FIELDS`: ``generate`` fields in the operation (fragments included);
- :data:`MAX_GENERATED_TOKENS`: the sum of their ``maxTokens`` (the default counted when absent).

A request over a limit gets a GraphQL error with ``extensions.code`` ``LimitExceeded`` (the
budget's message names the limit and what was asked).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import GraphQLError, get_operation_ast
from graphql.language import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    ObjectValueNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
)
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

from edgechain.errors import LimitExceeded

__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_GENERATED_TOKENS",
    "MAX_GENERATE_FIELDS",
    "MAX_TOKENS",
    "GenerationBudget",
    "schema_extensions",
]

MAX_TOKENS = 2000
MAX_DEPTH = 10
MAX_ALIASES = 16
MAX_GENERATE_FIELDS = 4
MAX_GENERATED_TOKENS = 4096

#: The GraphQL name of the field and argument the budget counts.
_GENERATE = "generate"
_MAX_TOKENS_ARG = "maxTokens"


def _default_max_tokens() -> int:
    from edgechain.service.query import GenerateQuery

    return int(GenerateQuery(model="", prompt="").max_tokens)


def _limit_error(message: str) -> GraphQLError:
    error = LimitExceeded(message)
    return GraphQLError(
        message, extensions={"code": type(error).__name__, "exitCode": error.exit_code}
    )


class GenerationBudget(SchemaExtension):
    """Refuses an operation with too many ``generate`` fields or tokens, before execution."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None:
            operation = get_operation_ast(document, context.operation_name)
            if operation is not None:
                fragments = {
                    d.name.value: d
                    for d in document.definitions
                    if isinstance(d, FragmentDefinitionNode)
                }
                asked = list(
                    _generate_fields(operation.selection_set, fragments, set())
                )
                check_budget(asked, context.variables or {})
        yield


def check_budget(fields: list[FieldNode], variables: Mapping[str, Any]) -> None:
    """Raise a LimitExceeded GraphQL error if ``fields`` (``generate`` fields) ask too much."""
    if len(fields) > MAX_GENERATE_FIELDS:
        raise _limit_error(
            f"{len(fields)} generate fields in one request; at most {MAX_GENERATE_FIELDS}"
        )
    default = _default_max_tokens()
    total = 0
    for field in fields:
        asked = [_int(v, variables) for v in _named_values(field, variables)]
        total += max((a for a in asked if a is not None), default=default)
    if total > MAX_GENERATED_TOKENS:
        raise _limit_error(
            f"the request asks for {total} generated tokens (maxTokens summed over its generate "
            f"fields); at most {MAX_GENERATED_TOKENS}"
        )


def _generate_fields(
    selections: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    visited: set[str],
) -> Iterator[FieldNode]:
    """The root ``generate`` fields of a selection set, through inline fragments and spreads."""
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value == _GENERATE:
                yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _generate_fields(selection.selection_set, fragments, visited)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in visited:
                visited.add(name)
                yield from _generate_fields(fragments[name].selection_set, fragments, visited)


def _named_values(field: FieldNode, variables: Mapping[str, Any]) -> Iterator[Any]:
    """Every value given as ``maxTokens`` in ``field``'s arguments, also inside input objects
    (whether the argument is flat or part of an input type)."""
    for argument in field.arguments:
        if argument.name.value == _MAX_TOKENS_ARG:
            yield argument.value
        else:
            yield from _nested(argument.value, variables)


def _nested(value: ValueNode | Any, variables: Mapping[str, Any]) -> Iterator[Any]:
    if isinstance(value, VariableNode):
        value = variables.get(value.name.value)
    if isinstance(value, ObjectValueNode):
        for field in value.fields:
            if field.name.value == _MAX_TOKENS_ARG:
                yield field.value
            else:
                yield from _nested(field.value, variables)
    elif isinstance(value, ListValueNode):
        for item in value.values:
            yield from _nested(item, variables)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key == _MAX_TOKENS_ARG:
                yield item
            else:
                yield from _nested(item, variables)


def _int(value: Any, variables: Mapping[str, Any]) -> int | None:
    """The integer a value node (or variable, or JSON value) holds; None if it holds none (a
    wrong type is the schema's to report)."""
    if isinstance(value, VariableNode):
        value = variables.get(value.name.value)
    if isinstance(value, IntValueNode | StringValueNode):
        value = value.value
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def schema_extensions() -> list[Any]:
    """The limit extensions for the registry schema."""
    # Factories, not instances: strawberry builds a fresh extension for each request.
    return [
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        GenerationBudget,
    ]
