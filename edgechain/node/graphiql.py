"""GraphiQL for the node's GraphQL endpoints, served offline from an installed package.

GraphiQL's static build (React, GraphiQL, graphql-ws, CSS) comes from the PyPI package
``graphene-django-graphiql-static`` (a dependency): the node serves those files itself under
:data:`STATIC_PATH`, so the page loads on a machine with no internet access (strawberry's own
GraphiQL page loads them from a CDN). Only the static files are used, not the package's Django
code. The page (``graphiql.html``) posts JSON to its own URL and runs subscriptions over
graphql-transport-ws at the same URL.
"""

from __future__ import annotations

import html
import json
from functools import cache
from importlib.resources import files
from pathlib import Path

from starlette.requests import Request
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

__all__ = ["STATIC_PATH", "graphiql_page", "static_mount", "wants_html"]

#: URL prefix of GraphiQL's static files.
STATIC_PATH = "/static/graphiql"

_PACKAGE = "graphene_django_graphiql_static"
_TEMPLATE = Path(__file__).with_name("graphiql.html")


@cache
def _static_dir() -> Path:
    directory = Path(str(files(_PACKAGE) / "static" / _PACKAGE))
    if not (directory / "graphiql.min.js").is_file():  # a broken install: say what to reinstall
        raise RuntimeError(f"GraphiQL's files are missing from {directory}: reinstall {_PACKAGE}")
    return directory


def static_mount() -> Mount:
    """The route serving GraphiQL's JavaScript and CSS under :data:`STATIC_PATH`."""
    return Mount(STATIC_PATH, app=StaticFiles(directory=_static_dir()), name="graphiql-static")


def wants_html(request: Request) -> bool:
    """True for a browser's page load: a GET that accepts HTML and asks no query."""
    return (
        request.method == "GET"
        and "query" not in request.query_params
        and "text/html" in request.headers.get("accept", "")
    )


@cache
def _template() -> str:
    return _TEMPLATE.read_text(encoding="utf-8")


def _script_literal(value: object) -> str:
    # JSON is a JavaScript literal; escaping "<" keeps "</script>" in a value from ending the
    # script element.
    return json.dumps(value).replace("<", "\\u003c")


def graphiql_page(
    title: str,
    endpoint: str,
    default_query: str,
    header_html: str,
    subscriptions: bool = True,
) -> str:
    """GraphiQL's HTML for the GraphQL endpoint at path ``endpoint`` (websocket on the same
    path when ``subscriptions``), opening with ``default_query`` in the editor, under a line of
    ``header_html`` (already escaped: the node's links)."""
    page = _template()
    for marker, value in (
        ("__HEADER__", header_html),
        ("__TITLE__", html.escape(title)),
        ("__STATIC__", STATIC_PATH),
        ("__ENDPOINT__", _script_literal(endpoint)),
        ("__SUBSCRIPTIONS__", "true" if subscriptions else "false"),
        ("__DEFAULT_QUERY__", _script_literal(default_query)),
    ):
        page = page.replace(marker, value)
    return page
