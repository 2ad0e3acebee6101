"""What the node serves, chain by chain: the one listing behind ``GET /`` (JSON and HTML) and
the chain-level GraphQL's ``chains``/``applications``.

The model registry and the story book are served on the network's registry chain (the client's
chain), each at its own application URL; the applications users wrote on every chain that knows
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgechain.chain.network import Chain
from edgechain.client import Client
from edgechain.contract.registry import APPLICATION_NAME
from edgechain.contract.story_book import APPLICATION_NAME as STORY_BOOK

__all__ = ["SERVED_KINDS", "ServedApplication", "application_path", "index", "served_applications"]


def application_path(chain_id: str, application_id: str) -> str:
    """The URL path of an application's GraphQL endpoint."""
    return f"/chains/{chain_id}/applications/{application_id}"


@dataclass(frozen=True)
class ServedApplication:
    """An application this node serves: its kind, id and URL path (GraphQL, GraphiQL, ws)."""

    kind: str
    application_id: str
    path: str

    @property
    def streams(self) -> bool:
        """True when it has a ``generate`` SSE endpoint and subscriptions (the registry)."""
        return self.kind == APPLICATION_NAME


#: What the node serves on the registry chain, in the order it lists them (then the
#: applications users created, each of kind USER_APPLICATION).
SERVED_KINDS = (APPLICATION_NAME, STORY_BOOK)
USER_APPLICATION = "application"


def served_applications(client: Client, chain: Chain) -> list[ServedApplication]:
    """The applications the node serves on ``chain``: the built-in ones on the client's chain,
    and on every chain the applications users wrote that it knows."""
    served = []
    if chain.id == client.chain.id:
        for kind in SERVED_KINDS:
            app_id = chain.app_id(kind).hex()
            path = application_path(chain.id.hex(), app_id)
            served.append(ServedApplication(kind, app_id, path))
    for created in client.applications(chain.name):  # applications users wrote (edgechain.sdk)
        app_id = created.app_id.hex()
        path = application_path(chain.id.hex(), app_id)
        served.append(ServedApplication(USER_APPLICATION, app_id, path))
    return served


def index(client: Client) -> dict[str, Any]:
    """The JSON of ``GET /``: the network directory's name and, per chain, its height and
    applications."""
    chains = []
    for chain in client.network.chains():
        applications = [
            {
                "kind": app.kind,
                "applicationId": app.application_id,
                "graphql": app.path,
                **({"generate": f"{app.path}/generate"} if app.streams else {}),
            }
            for app in served_applications(client, chain)
        ]
        status = chain.status()
        chains.append(
            {
                "name": chain.name,
                "chainId": chain.id.hex(),
                "blocks": status.blocks,
                "headHeight": status.head_height,
                "headHash": status.head_hash,
                "applications": applications,
            }
        )
    # The directory's name, not its path: a page must not learn the user's filesystem layout.
    return {"network": client.network.path.name, "chains": chains}
