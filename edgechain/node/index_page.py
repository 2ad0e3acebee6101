"""The HTML of ``GET /`` for a browser: the chains, and a link to each application's GraphiQL
and to the chain-level GraphiQL. API clients get the same listing as JSON."""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["CHAIN_GRAPHIQL_PATH", "index_page"]

#: Where a browser finds GraphiQL for the chain-level GraphQL (which answers at ``/``).
CHAIN_GRAPHIQL_PATH = "/graphiql"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; }
code { font-size: 0.9em; } table { border-collapse: collapse; }
td, th { border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; text-align: left; }
"""


def _chain_rows(chain: dict[str, Any]) -> str:
    apps = chain["applications"]
    links = "<br>".join(
        f'<a class="graphiql" href="{escape(a["graphql"])}">{escape(a["kind"])} · GraphiQL</a>'
        f' <small>(<code>{escape(a["applicationId"][:16])}…</code>)</small>'
        for a in apps
    )
    return (
        f"<tr><td>{escape(chain['name'])}</td><td><code>{escape(chain['chainId'][:16])}…</code>"
        f"</td><td>{chain['height']}</td><td>{links or '<small>none</small>'}</td></tr>"
    )


def index_page(listing: dict[str, Any]) -> str:
    """The page for ``listing`` (the JSON body of ``GET /``)."""
    rows = "\n".join(_chain_rows(chain) for chain in listing["chains"])
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>edgechain node</title><style>{_STYLE}</style></head>
<body>
<h1>edgechain node</h1>
<p>Network <code>{escape(listing["network"])}</code>.
<a id="chain-graphiql" href="{CHAIN_GRAPHIQL_PATH}">Chain GraphiQL</a> (chains, blocks,
certificates, applications; the endpoint is <code>POST /</code>).</p>
<table>
<tr><th>chain</th><th>id</th><th>height</th><th>applications</th></tr>
{rows}
</table>
<p><small>This page is for browsers; API clients get it as JSON
(<code>Accept: application/json</code>).</small></p>
</body>
</html>
"""
