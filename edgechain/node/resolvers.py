"""How a GraphQL resolver reaches the node's client: through the :class:`ClientGate` in the
request's context, in a worker thread, with every failure turned into a typed GraphQL error
(``extensions.code``: the EdgechainError class name). Shared by the registry's, the story book's
and the chain-level schemas.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from graphql import GraphQLError
from strawberry.types import Info

from edgechain.client import Client
from edgechain.errors import InvalidParameter
from edgechain.node.gate import ClientGate
from edgechain.node.typed_errors import error_payload

__all__ = ["call", "check_block_range", "gate", "propose", "typed", "typed_error"]

T = TypeVar("T")


def typed_error(err: BaseException) -> GraphQLError:
    """The GraphQL error for ``err``: its message, and its class name as ``extensions.code``."""
    payload = error_payload(err)
    return GraphQLError(
        payload["message"],
        extensions={"code": payload["code"], "exitCode": payload["exitCode"]},
    )


async def typed(work: Awaitable[T]) -> T:
    """Await ``work``; an error becomes a typed GraphQL error (code: the class name)."""
    try:
        return await work
    except Exception as err:  # a non-EdgechainError is logged and typed InternalError
        raise typed_error(err) from err


def gate(info: Info) -> ClientGate:
    return info.context["gate"]


async def call(info: Info, fn: Callable[[Client], T]) -> T:
    """Run ``fn`` on the node's client (in a worker thread), with typed errors."""
    return await typed(gate(info).call(fn))


async def propose(info: Info, fn: Callable[[Client], T]) -> T:
    """Run ``fn``, which proposes a block, on the node's client without its lock (queries go
    on meanwhile), with typed errors."""
    return await typed(gate(info).propose(fn))


def check_block_range(field: str, start: int, end: int | None) -> None:
    """A typed InvalidParameter unless ``0 <= start <= end`` (``end`` None: the head)."""
    if start < 0 or (end is not None and end < start):
        raise typed_error(
            InvalidParameter(f"{field}: need 0 <= start <= end, got start={start}, end={end}")
        )
