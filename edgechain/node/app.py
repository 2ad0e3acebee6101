"""The node's HTTP application (Starlette), Linera-style paths.

- ``GET /``: the chains this node serves, their heights and their applications' URLs (JSON).
- ``POST /chains/{chain_id}/applications/{application_id}``: GraphQL (JSON body
  ``{query, variables, operationName}``); ``GET`` with ``?query=`` runs queries (no mutations);
  ``GET`` from a browser (no ``query``) returns the offline query console.
- ``GET /chains/{chain_id}/applications/{application_id}/generate?model=..&prompt=..``:
  server-sent events, ``token`` per token, then ``done`` (the record) or ``error``.
- websocket at the application's URL: GraphQL subscriptions (graphql-transport-ws), e.g.
  ``subscription { generate(...) { ... on TokenUpdate { text } } }``.

The model registry lives on the network's default chain (see :class:`Client`); other chains are
listed with no applications.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.graphql import OperationType

from edgechain.client import Client
from edgechain.contract.registry import APPLICATION_NAME
from edgechain.errors import EdgechainError, UsageError
from edgechain.node.console import console_page
from edgechain.node.gate import ClientGate
from edgechain.node.query_params import generate_query_from_params
from edgechain.node.schema import REGISTRY_SCHEMA, registry_context
from edgechain.node.streaming import Generations, run_generation, sse_message
from edgechain.node.typed_errors import error_payload

__all__ = ["application_path", "build_app"]

T = TypeVar("T")

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def application_path(chain_id: str, application_id: str) -> str:
    """The URL path of an application's GraphQL endpoint."""
    return f"/chains/{chain_id}/applications/{application_id}"


def _errors_body(err: BaseException) -> dict[str, Any]:
    payload = error_payload(err)
    extensions = {"code": payload["code"], "exitCode": payload["exitCode"]}
    return {"errors": [{"message": payload["message"], "extensions": extensions}]}


def _error_response(err: BaseException, status: int | None = None) -> JSONResponse:
    if status is None:
        user_input = isinstance(err, EdgechainError) and err.exit_code in (2, 3)
        status = 400 if user_input else 500
    return JSONResponse(_errors_body(err), status_code=status)


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
            # The body has been read: the next message can only be the disconnect.
            while (await request.receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(run)
        group.start_soon(watch)
    if failure:
        raise failure[0]
    return outcome[0] if outcome else None


class _SubscriptionEndpoint(GraphQL):
    """Strawberry's websocket transport (graphql-transport-ws) for the registry's subscriptions;
    queries and mutations go through the HTTP endpoint above."""

    def __init__(self, context: dict[str, Any]) -> None:
        super().__init__(
            REGISTRY_SCHEMA,
            graphql_ide=None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        )
        self._context = context

    async def get_context(self, request: Any, response: Any) -> dict[str, Any]:
        return self._context


class _AsgiEndpoint:
    """Wraps an ASGI function so Starlette routes to it as an app (not as a request handler)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def _index(client: Client) -> dict[str, Any]:
    registry_chain = client.chain
    chains = []
    for chain in client.network.chains():
        applications = []
        if chain.id == registry_chain.id:
            app_id = chain.app_id(APPLICATION_NAME).hex()
            path = application_path(chain.id.hex(), app_id)
            applications.append(
                {
                    "kind": APPLICATION_NAME,
                    "applicationId": app_id,
                    "graphql": path,
                    "generate": f"{path}/generate",
                }
            )
        chains.append(
            {
                "name": chain.name,
                "chainId": chain.id.hex(),
                "height": chain.height,
                "headHash": None if chain.head_hash is None else chain.head_hash.hex(),
                "applications": applications,
            }
        )
    return {"network": str(client.network.path), "chains": chains}


def build_app(gate: ClientGate) -> Starlette:
    """The ASGI application serving ``gate``'s network; closes the gate on shutdown.

    ``app.state.generations`` (:class:`Generations`) counts generations; its ``stop_all()``
    ends them (the server calls it when asked to stop).
    """
    chain_id, app_id = gate.call_blocking(
        lambda c: (c.chain.id.hex(), c.chain.app_id(APPLICATION_NAME).hex())
    )
    generations = Generations()

    def unknown_application(request: Request) -> JSONResponse | None:
        asked = (
            request.path_params["chain_id"].lower(),
            request.path_params["application_id"].lower(),
        )
        if asked == (chain_id, app_id):
            return None
        err = UsageError(
            f"this node serves no application {asked[1]} on chain {asked[0]} "
            f"(see / for what it serves)"
        )
        return _error_response(err, 404)

    async def index(request: Request) -> Response:
        try:
            body = await gate.call(_index)
        except EdgechainError as err:
            return _error_response(err)
        body["generations"] = generations.to_json()
        return JSONResponse(body)

    async def graphql(request: Request) -> Response:
        if (missing := unknown_application(request)) is not None:
            return missing
        if request.method == "GET":
            params = request.query_params
            if "query" not in params:
                if "text/html" in request.headers.get("accept", ""):
                    return HTMLResponse(console_page(APPLICATION_NAME, chain_id, app_id))
                return _error_response(
                    UsageError("send a GraphQL query: POST {query, variables} or GET ?query="),
                    400,
                )
            try:
                variables = json.loads(params.get("variables") or "null")
            except ValueError:
                return _error_response(UsageError("variables is not valid JSON"), 400)
            request_body = {
                "query": params["query"],
                "variables": variables,
                "operationName": params.get("operationName"),
            }
            # GET is safe: mutations must be POSTed.
            allowed = {OperationType.QUERY}
        else:
            try:
                request_body = await request.json()
            except ValueError:
                return _error_response(UsageError("the request body is not valid JSON"), 400)
            allowed = {OperationType.QUERY, OperationType.MUTATION}
        if not isinstance(request_body, dict) or not isinstance(request_body.get("query"), str):
            return _error_response(UsageError('the request needs a "query" string'), 400)
        variables = request_body.get("variables")
        if variables is not None and not isinstance(variables, dict):
            return _error_response(UsageError('"variables" must be a JSON object'), 400)
        execution = REGISTRY_SCHEMA.execute(
            request_body["query"],
            variable_values=variables,
            context_value=registry_context(gate, generations),
            operation_name=request_body.get("operationName"),
            allowed_operation_types=allowed,
        )
        try:
            result = await _unless_disconnected(request, execution)
        except InvalidOperationTypeError as err:
            return _error_response(
                UsageError(f"a {err.operation_type.value} cannot be sent with GET; use POST"), 405
            )
        if result is None:  # the client went away; its generation was cancelled
            return Response(status_code=499)
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [error.formatted for error in result.errors]
        return JSONResponse(body)

    async def generate(request: Request) -> Response:
        if (missing := unknown_application(request)) is not None:
            return missing
        try:
            query = generate_query_from_params(request.query_params)
        except EdgechainError as err:
            message = sse_message("error", error_payload(err))
            return StreamingResponse(
                iter([message]), media_type="text/event-stream", headers=_SSE_HEADERS
            )

        async def events() -> AsyncIterator[str]:
            # A client disconnect cancels this generator, which cancels the generation.
            async for event in run_generation(gate, query, generations):
                yield event.sse()

        return StreamingResponse(events(), media_type="text/event-stream", headers=_SSE_HEADERS)

    subscriptions = _SubscriptionEndpoint(registry_context(gate, generations))

    async def subscribe(scope: Scope, receive: Receive, send: Send) -> None:
        params = scope["path_params"]
        if (params["chain_id"].lower(), params["application_id"].lower()) != (chain_id, app_id):
            await send({"type": "websocket.close", "code": 4404})
            return
        await subscriptions(scope, receive, send)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        gate.close()

    path = application_path("{chain_id}", "{application_id}")
    app = Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route(path, graphql, methods=["GET", "POST"]),
            Route(f"{path}/generate", generate, methods=["GET"]),
            WebSocketRoute(path, _AsgiEndpoint(subscribe)),
        ],
        lifespan=lifespan,
    )
    app.state.generations = generations
    return app
