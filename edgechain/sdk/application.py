"""The two halves of an application a user writes: its :class:`Contract` and its
:class:`Service` (Linera's ``Contract`` and ``Service`` traits).

A project (``edgechain app new NAME`` writes one) is a Python package: ``__init__.py`` declares
the ABI (:class:`~edgechain.sdk.abi.Abi` and its dataclasses), ``state.py`` the state
(:class:`~edgechain.sdk.views.RootView`), ``contract.py`` one :class:`Contract` subclass and
``service.py`` one :class:`Service` subclass.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ClassVar

from edgechain.errors import OperationRejected
from edgechain.sdk.abi import Abi
from edgechain.sdk.runtime import ContractRuntime, ServiceRuntime, StreamUpdate
from edgechain.sdk.views import RootView

if TYPE_CHECKING:
    import strawberry
    from strawberry.types import Info

__all__ = ["Contract", "Service", "service_of"]


class Contract:
    """The on-chain half: deterministic, it changes state only through its views.

    Subclass it with ``abi`` and ``state_type``; override :meth:`instantiate` and
    :meth:`execute_operation`. A new instance serves each operation (as Linera loads the
    contract per block); raising rejects the operation.
    """

    abi: ClassVar[Abi]
    state_type: ClassVar[type[RootView]] = RootView

    def __init__(self, state: RootView, runtime: ContractRuntime) -> None:
        self.state = state
        self.runtime = runtime

    def instantiate(self, argument: Any) -> None:
        """Called once, in the block that creates the application."""

    def execute_operation(self, operation: Any) -> Any:
        """Execute one of the ABI's operations; the return value is the operation's response."""
        raise OperationRejected(f"{type(self).__name__} takes no operations")

    def execute_message(self, message: Any) -> None:
        """Execute one of the ABI's messages, sent by this application on another chain (or
        bouncing back: ``runtime.message_is_bouncing``). Raising rejects the message only."""
        raise OperationRejected(f"{type(self).__name__} takes no messages")

    def process_streams(self, updates: list[StreamUpdate]) -> None:
        """New events of streams this application follows (``runtime.subscribe_to_events``),
        in order. The default ignores them."""


class Service:
    """The off-chain half: answers GraphQL queries over certified state, read-only.

    Subclass it with ``state_type`` and ``query`` (a ``strawberry.type``; resolvers reach the
    service with :func:`service_of`), and ``mutation`` if the application takes operations from
    GraphQL (a mutation schedules them with ``runtime.schedule_operation``).
    """

    state_type: ClassVar[type[RootView]] = RootView
    query: ClassVar[type]
    mutation: ClassVar[type | None] = None
    _schemas: ClassVar[dict[type, Any]] = {}

    def __init__(self, state: RootView, runtime: ServiceRuntime) -> None:
        self.state = state
        self.runtime = runtime

    @property
    def id(self) -> bytes:
        """This application's id (``runtime.application_id`` as bytes)."""
        return bytes.fromhex(self.runtime.application_id)

    @property
    def chain_id(self) -> bytes:
        """The id of the chain whose certified state this service reads."""
        return bytes.fromhex(self.runtime.chain_id)

    @classmethod
    def schema(cls) -> strawberry.Schema:
        """The application's GraphQL schema (built once per class)."""
        schema = Service._schemas.get(cls)
        if schema is None:
            schema = _schema_type()(query=cls.query, mutation=cls.mutation)
            Service._schemas[cls] = schema
        return schema

    def handle_query(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer a GraphQL request ``{"query", "variables"?, "operationName"?}``."""
        result = self.schema().execute_sync(
            request.get("query", ""),
            variable_values=request.get("variables"),
            operation_name=request.get("operationName"),
            context_value={"service": self},
        )
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [{"message": error.message} for error in result.errors]
        return body


@functools.cache
def _schema_type() -> type[strawberry.Schema]:
    # strawberry is imported on first use: the built-in applications are SDK applications
    # too, and most commands never build a schema.
    import strawberry

    class _Schema(strawberry.Schema):
        """A schema that returns its errors in the response only: a resolver's exception is
        the application's answer to a bad request, not a crash to print a traceback for."""

        def process_errors(self, errors: Any, execution_context: Any = None) -> None:
            pass

    return _Schema


def service_of(info: Info) -> Any:
    """The :class:`Service` answering the query, from inside a resolver."""
    return info.context["service"]
