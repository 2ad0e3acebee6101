"""The line above GraphiQL on the node's pages: at ``/``, what the node serves (each chain and a
link to each application's GraphiQL); at an application's URL, a link back to ``/``."""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["application_header", "index_header"]


def _short(hex_id: str) -> str:
    return f"<code>{escape(hex_id[:16])}…</code>"


def index_header(listing: dict[str, Any]) -> str:
    """For ``/``: the network, and per chain its blocks and applications' GraphiQL links
    (``listing`` is the JSON body of ``GET /``). GraphiQL below runs the chain-level schema."""
    chains = []
    for chain in listing["chains"]:
        apps = ", ".join(
            f'<a class="graphiql" href="{escape(a["graphql"])}">{escape(a["kind"])} GraphiQL</a>'
            for a in chain["applications"]
        )
        chains.append(
            f"chain <b>{escape(chain['name'])}</b> {_short(chain['chainId'])} "
            f"{chain['blocks']} block{'s' * (chain['blocks'] != 1)}: "
            f"{apps or 'no applications'}"
        )
    return (
        f"<b>edgechain node</b> · network <code>{escape(listing['network'])}</code> · "
        + " · ".join(chains)
        + " · below: the chain-level GraphQL (<code>POST /</code>)"
    )


def application_header(kind: str, chain_id: str, application_id: str) -> str:
    """For an application's GraphiQL: which application, and the way back to ``/``."""
    return (
        f'<a href="/">edgechain node</a> · <b>{escape(kind)}</b> on chain {_short(chain_id)} · '
        f"application {_short(application_id)}"
    )
