"""The node's HTTP application (Starlette), Linera-style paths.

- ``GET /``: the chains this node serves, their heights and their applications' URLs (JSON); a
  browser gets GraphiQL on the chain-level GraphQL under a line linking to each application's
  GraphiQL.
- ``POST /`` (or ``GET /?query=``): the chain-level GraphQL (chains, blocks, certificates,
  applications).
- ``POST /chains/{chain_id}/applications/{application_id}``: GraphQL (JSON body
  ``{query, variables, operationName}``); ``GET`` with ``?query=`` runs queries (no mutations);
  ``GET`` from a browser (no ``query``) returns GraphiQL, served offline (``/static/graphiql``).
- ``GET /chains/{chain_id}/applications/{application_id}/generate?model=..&prompt=..``:
  server-sent events, ``token`` per token, then ``done`` (the record) or ``error``.
- websocket at the application's URL: GraphQL subscriptions (graphql-transport-ws), e.g.
  ``subscription { generate(...) { ... on TokenUpdate { text } } }``.

The model registry lives on the network's default chain (see :class:`Client`); other chains are
listed with no applications.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from edgechain.contract.registry import APPLICATION_NAME
from edgechain.errors import EdgechainError, UsageError
from edgechain.node.chain_schema import CHAIN_SCHEMA
from edgechain.node.directory import application_path, index
from edgechain.node.gate import ClientGate
from edgechain.node.graphiql import graphiql_page, static_mount, wants_html
from edgechain.node.graphql_transport import (
    SubscriptionEndpoint,
    error_response,
    graphql_response,
)
from edgechain.node.page_header import application_header, index_header
from edgechain.node.query_params import generate_query_from_params
from edgechain.node.request_guard import GuardMiddleware, RequestGuard
from edgechain.node.schema import registry_context
from edgechain.node.streaming import Generations, run_generation, sse_message
from edgechain.node.typed_errors import error_payload

__all__ = ["application_path", "build_app"]

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

#: What GraphiQL's editor opens with (its history keeps what the user ran since).
_REGISTRY_QUERY = """# The model registry. Run a query (Ctrl+Enter); the docs list every field.
query Models {
  models { name version retired weights { blake3 size } }
}

# Linera's examples/llm query shape: the latest active model's greedy text.
query Prompt {
  prompt(prompt: "Once upon a time")
}

# Tokens stream in as they are generated (graphql-transport-ws).
subscription Generate {
  generate(model: "stories260K", prompt: "Once upon a time", maxTokens: 64) {
    ... on TokenUpdate { text }
    ... on GenerationResult { text seed stopReason outputTokens }
  }
}
"""

_CHAIN_QUERY = """# The chains this node serves, their applications, blocks and certificates.
{
  chains { name chainId height applications { kind applicationId graphql } }
}
"""


class _AsgiApp:
    """Wraps an ASGI function so Starlette routes to it as an app (not as a request handler)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def build_app(gate: ClientGate, guard: RequestGuard | None = None) -> Starlette:
    """The ASGI application serving ``gate``'s network; closes the gate on shutdown.

    ``guard`` (the node's names and port) refuses requests from other sites; the server
    always passes one (see :mod:`edgechain.node.request_guard`).

    ``app.state.generations`` (:class:`Generations`) counts generations; its ``stop_all()``
    ends them (the server calls it when asked to stop).
    """
    chain_id, app_id = gate.call_blocking(
        lambda c: (c.chain.id.hex(), c.chain.app_id(APPLICATION_NAME).hex())
    )
    generations = Generations()
    context = registry_context(gate, generations)

    def serves(params: dict[str, Any]) -> bool:
        asked = (params["chain_id"].lower(), params["application_id"].lower())
        return asked == (chain_id, app_id)

    def unknown_application(request: Request) -> JSONResponse | None:
        if serves(request.path_params):
            return None
        err = UsageError(
            f"this node serves no application {request.path_params['application_id']} on chain "
            f"{request.path_params['chain_id']} (see / for what it serves)"
        )
        return error_response(err, 404)

    async def root(request: Request) -> Response:
        if request.method == "POST" or "query" in request.query_params:
            return await graphql_response(request, context, CHAIN_SCHEMA)
        try:
            body = await gate.call(index)
        except EdgechainError as err:
            return error_response(err)
        if wants_html(request):
            page = graphiql_page("chains", "/", _CHAIN_QUERY, index_header(body), False)
            return HTMLResponse(page)
        body["generations"] = generations.to_json()
        return JSONResponse(body)

    async def graphql(request: Request) -> Response:
        if (missing := unknown_application(request)) is not None:
            return missing
        if wants_html(request):
            header = application_header(APPLICATION_NAME, chain_id, app_id)
            page = graphiql_page(APPLICATION_NAME, request.url.path, _REGISTRY_QUERY, header)
            return HTMLResponse(page)
        return await graphql_response(request, context)

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
            # A client disconnect cancels this generator, which closes the run, which cancels
            # the generation.
            run = run_generation(gate, query, generations)
            async with aclosing(run):
                async for event in run:
                    yield event.sse()

        return StreamingResponse(events(), media_type="text/event-stream", headers=_SSE_HEADERS)

    subscriptions = SubscriptionEndpoint(context)

    async def subscribe(scope: Scope, receive: Receive, send: Send) -> None:
        if not serves(scope["path_params"]):
            await send({"type": "websocket.close", "code": 4404})  # refused before the handshake
            return
        await subscriptions(scope, receive, send)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        gate.close()

    path = application_path("{chain_id}", "{application_id}")
    app = Starlette(
        routes=[
            Route("/", root, methods=["GET", "POST"]),
            static_mount(),
            Route(path, graphql, methods=["GET", "POST"]),
            Route(f"{path}/generate", generate, methods=["GET"]),
            WebSocketRoute(path, _AsgiApp(subscribe)),
        ],
        lifespan=lifespan,
        middleware=[] if guard is None else [Middleware(GuardMiddleware, guard=guard)],
    )
    app.state.generations = generations
    return app
