"""GraphQL over HTTP and websocket for the registry schema.

HTTP: ``POST`` a JSON body ``{query, variables, operationName}`` (queries and mutations), or
``GET ?query=&variables=&operationName=`` (queries only: a mutation over GET is refused with
405). The response is ``{data, errors}``; a caller that disconnects cancels its request (and so
its generation). Websocket: subscriptions over graphql-transport-ws, served by strawberry.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, TypeVar

import anyio
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from strawberry import Schema
from strawberry.asgi import GraphQL
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.types.graphql import OperationType

from edgechain.errors import (
    EdgechainError,
    InvalidQuery,
    InvalidText,
    LimitExceeded,
    UsageError,
)
from edgechain.node.schema import REGISTRY_SCHEMA
from edgechain.node.typed_errors import error_payload

__all__ = ["SubscriptionEndpoint", "error_response", "graphql_response"]

T = TypeVar("T")

#: What a server answers when the client closed the connection first (nginx's convention).
_CLIENT_CLOSED_REQUEST = 499


def error_response(err: BaseException, status: int | None = None) -> JSONResponse:
    """``{"errors": [{message, extensions: {code, exitCode}}]}`` with an HTTP status (400 for
    usage and input errors, else 500, unless given)."""
    if status is None:
        user_input = isinstance(err, EdgechainError) and err.exit_code in (2, 3)
        status = 400 if user_input else 500
    payload = error_payload(err)
    extensions = {"code": payload["code"], "exitCode": payload["exitCode"]}
    body = {"errors": [{"message": payload["message"], "extensions": extensions}]}
    return JSONResponse(body, status_code=status)


async def _request_body(request: Request) -> tuple[dict[str, Any], set[OperationType]]:
    """The GraphQL request and the operation types its HTTP method allows (UsageError if bad)."""
    if request.method == "GET":
        params = request.query_params
        try:
            variables = json.loads(params.get("variables") or "null")
        except ValueError:
            raise UsageError("variables is not valid JSON") from None
        body: Any = {
            "query": params.get("query"),
            "variables": variables,
            "operationName": params.get("operationName"),
        }
        allowed = {OperationType.QUERY}  # GET is safe: mutations must be POSTed
    else:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:  # not UTF-8 or not JSON
            raise UsageError("the request body is not valid JSON") from None
        except RecursionError:
            raise UsageError("the request body is JSON nested too deeply") from None
        allowed = {OperationType.QUERY, OperationType.MUTATION}
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise UsageError('the request needs a "query" string')
    if body.get("variables") is not None and not isinstance(body["variables"], dict):
        raise UsageError('"variables" must be a JSON object')
    if body.get("operationName") is not None and not isinstance(body["operationName"], str):
        raise UsageError('"operationName" must be a string')
    _check_text(body)
    return body, allowed


def _check_text(body: dict[str, Any]) -> None:
    """InvalidText if a string anywhere in the request is not valid Unicode text (a lone
    surrogate, which JSON's \\u escapes can carry): no text the node handles may hold one.
    The message names where the string is (``variables.prompt``)."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        where = _first_bad_text(body, "") or "the request"
        raise InvalidText(f"{where} is not valid Unicode text (a lone surrogate)") from None
    except (RecursionError, ValueError):
        raise UsageError("the request's variables are nested too deeply") from None


def _first_bad_text(value: Any, path: str) -> str | None:
    """The JSON path of the first string (key or value) in ``value`` that is not UTF-8 text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "a string"
        return None
    items: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, item in items:
        if isinstance(key, str) and _first_bad_text(key, "") is not None:
            return f"{path} (a key)" if path else "a key"
        found = _first_bad_text(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


async def graphql_response(
    request: Request, context: dict[str, Any], schema: Schema = REGISTRY_SCHEMA
) -> Response:
    """Execute the GraphQL request in ``request`` against ``schema`` (the registry's unless
    told)."""
    try:
        body, allowed = await _request_body(request)
    except (UsageError, InvalidText) as err:
        return error_response(err, 400)
    execution = schema.execute(
        body["query"],
        variable_values=body.get("variables"),
        context_value=context,
        operation_name=body.get("operationName"),
        allowed_operation_types=allowed,
    )
    try:
        result = await _unless_disconnected(request, execution)
    except InvalidOperationTypeError as err:
        message = f"a {err.operation_type.value} cannot be sent with GET; use POST"
        return error_response(UsageError(message), 405)
    if result is None:  # the client went away; its generation was cancelled
        return Response(status_code=_CLIENT_CLOSED_REQUEST)
    response: dict[str, Any] = {"data": result.data}
    if result.errors:
        response["errors"] = [typed_formatted(error) for error in result.errors]
    return JSONResponse(response)


#: Messages of graphql-core's and strawberry's limit checks (see edgechain.node.limits).
_LIMIT_MESSAGES = (
    "exceeds maximum operation depth",
    "aliases found",
    "Document contains more",
    "Document is nested too deeply",
)


def typed_formatted(error: GraphQLError) -> dict[str, Any]:
    """``error`` as JSON, with ``extensions.code`` always set: the resolver's typed code, else
    ``LimitExceeded`` for a request over a limit, else ``InvalidQuery`` (syntax, validation)."""
    formatted = dict(error.formatted)
    extensions = dict(formatted.get("extensions") or {})
    if "code" not in extensions:
        limit = any(m in error.message for m in _LIMIT_MESSAGES)
        kind = LimitExceeded if limit else InvalidQuery
        extensions["code"] = kind.__name__
        extensions["exitCode"] = kind.exit_code
    formatted["extensions"] = extensions
    return formatted


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """Await ``work``, or cancel it and return None if the client disconnects first.

    A GraphQL ``generate`` can run for a long time; when its caller gives up, cancelling the
    resolver cancels the generation (as closing an SSE stream does).
    """
    outcome: list[T] = []
    failure: list[Exception] = []
    async with anyio.create_task_group() as group:

        async def run() -> None:
            try:
                outcome.append(await work)
            except Exception as err:  # re-raised as itself, not inside an ExceptionGroup
                failure.append(err)
            group.cancel_scope.cancel()

        async def watch() -> None:
            # The body has been read: what comes next can only be the disconnect.
            while (await request.receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(run)
        group.start_soon(watch)
    if failure:
        raise failure[0]
    return outcome[0] if outcome else None


class _TransportWSHandler(BaseGraphQLTransportWSHandler):
    """Strawberry's graphql-transport-ws handler, quiet when a client drops its connection
    while a subscription is sending (the subscription is cancelled all the same), and closing
    with 4400 (the protocol's "invalid message") on a message of the wrong shape, where
    strawberry would raise and drop the connection without a close code."""

    async def handle_message(self, message: Any) -> None:
        problem = _malformed(message)
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)

    async def handle_task_exception(self, error: Exception) -> None:
        if not isinstance(error, WebSocketDisconnected):
            await super().handle_task_exception(error)


def _malformed(message: Any) -> str | None:
    """Why a graphql-transport-ws message has the wrong shape, or None."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "a message must be a JSON object with a string \"type\""
    if message["type"] != "subscribe":
        return None
    payload = message.get("payload")
    if not isinstance(message.get("id"), str):
        return "a subscribe message needs a string \"id\""
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return "a subscribe message's payload must be an object with a \"query\" string"
    if payload.get("variables") is not None and not isinstance(payload["variables"], dict):
        return "a subscribe message's \"variables\" must be an object"
    if payload.get("operationName") is not None and not isinstance(payload["operationName"], str):
        return "a subscribe message's \"operationName\" must be a string"
    return None


class SubscriptionEndpoint(GraphQL):
    """Strawberry's websocket transport (graphql-transport-ws) for ``schema``'s subscriptions
    (the registry's, or the chain-level notifications), with the node's context; an ASGI app."""

    graphql_transport_ws_handler_class = _TransportWSHandler

    def __init__(self, context: dict[str, Any], schema: Schema = REGISTRY_SCHEMA) -> None:
        super().__init__(
            schema,
            graphql_ide=None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        )
        self._context = context

    async def get_context(self, request: Any, response: Any) -> dict[str, Any]:
        return self._context
