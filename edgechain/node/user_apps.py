"""Applications users created (edgechain.sdk) on the node: GraphQL and GraphiQL at
``/chains/<chain>/applications/<application id>``, like the built-in ones.

Each request runs the application's service under the node's client lock; operations its
mutations schedule are proposed in one block afterwards, as ``linera service`` does. A GET
may only query.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from edgechain.chain.modules import CreatedApplication
from edgechain.client import Client
from edgechain.errors import EdgechainError, UsageError
from edgechain.node.gate import ClientGate
from edgechain.node.graphiql import graphiql_page, wants_html
from edgechain.node.graphql_transport import _request_body, error_response
from edgechain.node.page_header import application_header

__all__ = ["created_application", "user_application_response"]

_OPENING_QUERY = "# This application's GraphQL: see the docs explorer (top left).\n{ __typename }\n"


def created_application(
    client: Client, chain: str, app: str
) -> tuple[str, CreatedApplication] | None:
    """The chain (its hex id) and the created application the URL names (None: no such one).
    Every chain of the network is served: an application has the same id on each chain that
    knows it, with that chain's state."""
    try:
        on = client.network.chain(chain.lower())
        return on.id.hex(), client.application(app, on.name)
    except EdgechainError:
        return None


async def user_application_response(
    request: Request, gate: ClientGate, app: CreatedApplication, chain_id: str
) -> Response:
    """GraphiQL for a browser, else the service's answer to the GraphQL request."""
    app_id = app.app_id.hex()
    if wants_html(request):
        header = application_header("application", chain_id, app_id)
        page = graphiql_page(f"application {app_id[:16]}", request.url.path, _OPENING_QUERY,
                             header, subscriptions=False)  # fmt: skip
        return HTMLResponse(page)
    try:
        body, _ = await _request_body(request)
        if request.method == "GET" and _has_mutation(body["query"]):
            return error_response(UsageError("a mutation cannot be sent with GET; use POST"), 405)
        answer: dict[str, Any] = await gate.call(
            lambda client: client.query_application(app.app_id, body, chain_id)
        )
    except EdgechainError as err:
        return error_response(err)
    return JSONResponse(answer)


def _has_mutation(query: str) -> bool:
    try:
        document = parse(query)
    except GraphQLError:
        return False  # the service reports the syntax error
    return any(
        isinstance(d, OperationDefinitionNode) and d.operation is OperationType.MUTATION
        for d in document.definitions
    )
