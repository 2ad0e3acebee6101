"""The node's chain-level GraphQL, at ``/`` (as Linera's node service has one beside each
application's): the chains the node serves, their applications, certified blocks and
certificates. Read-only: blocks are proposed through an application's mutations.

A chain is named by its id (hex, or a unique prefix) or its name; an unknown one is a typed
error (``UsageError``), like every failure of the registry schema.
"""

from __future__ import annotations

from dataclasses import asdict

import strawberry
from strawberry.types import Info

from edgechain.chain.certificate import CertifiedBlock
from edgechain.chain.network import Chain
from edgechain.client import Client
from edgechain.node.blob_schema import BlobInfo, chain_blobs
from edgechain.node.directory import ServedApplication, served_applications
from edgechain.node.resolvers import call, check_block_range
from edgechain.node.schema import BlockInfo, CertificateInfo, application_schema

__all__ = ["CHAIN_SCHEMA"]


@strawberry.type(description="An application served on a chain, and its URL path.")
class ApplicationInfo:
    kind: str
    application_id: str
    graphql: str = strawberry.field(description="path of its GraphQL endpoint (and GraphiQL)")

    @classmethod
    def of(cls, app: ServedApplication) -> ApplicationInfo:
        return cls(kind=app.kind, application_id=app.application_id, graphql=app.path)


@strawberry.type(description="A chain of the network, as of its last certified block.")
class ChainInfo:
    name: str
    chain_id: str
    owner: str = strawberry.field(description="public key (hex) of the chain owner")
    blocks: int = strawberry.field(description="number of certified blocks (the next height)")
    head_height: int | None = strawberry.field(
        description="height of the head block (blocks - 1), null before the first block"
    )
    head_hash: str | None
    head: str | None = strawberry.field(
        description="HEIGHT:HASH of the head block, as `chain verify --expect-head` takes it"
    )
    state_hash: str
    applications: list[ApplicationInfo]

    @strawberry.field(
        description="number of certified blocks",
        deprecation_reason="ambiguous: use blocks (the count) or headHeight",
    )
    def height(self) -> int:
        return self.blocks

    @classmethod
    def of(cls, client: Client, chain: Chain) -> ChainInfo:
        status = chain.status()
        return cls(
            **asdict(status),
            head_height=status.head_height,
            head=status.head,
            applications=[ApplicationInfo.of(a) for a in served_applications(client, chain)],
        )


async def _blocks(
    info: Info, field: str, chain_id: str, start: int, end: int | None
) -> list[CertifiedBlock]:
    check_block_range(field, start, end)
    return await call(info, lambda c: list(c.network.chain(chain_id).blocks(start, end)))


@strawberry.type
class ChainQuery:
    @strawberry.field(description="Every chain of the network.")
    async def chains(self, info: Info) -> list[ChainInfo]:
        return await call(info, lambda c: [ChainInfo.of(c, ch) for ch in c.network.chains()])

    @strawberry.field(description="A chain by id (hex or unique prefix) or name.")
    async def chain(self, info: Info, chain_id: str) -> ChainInfo:
        return await call(info, lambda c: ChainInfo.of(c, c.network.chain(chain_id)))

    @strawberry.field(description="The applications this node serves on a chain.")
    async def applications(self, info: Info, chain_id: str) -> list[ApplicationInfo]:
        apps = await call(info, lambda c: served_applications(c, c.network.chain(chain_id)))
        return [ApplicationInfo.of(a) for a in apps]

    @strawberry.field(description="A chain's certified blocks from height start up to "
                      "(excluding) end.")
    async def blocks(
        self, info: Info, chain_id: str, start: int = 0, end: int | None = None
    ) -> list[BlockInfo]:
        return [BlockInfo.of(b) for b in await _blocks(info, "blocks", chain_id, start, end)]

    @strawberry.field(description="The blobs a chain published (size, height, holders).")
    async def blobs(self, info: Info, chain_id: str) -> list[BlobInfo]:
        return await call(info, lambda c: chain_blobs(c.network.chain(chain_id)))

    @strawberry.field(description="The certificates of a chain's blocks from height start up "
                      "to (excluding) end.")
    async def certificates(
        self, info: Info, chain_id: str, start: int = 0, end: int | None = None
    ) -> list[CertificateInfo]:
        blocks = await _blocks(info, "certificates", chain_id, start, end)
        return [CertificateInfo.of(b.certificate) for b in blocks]


#: The chain-level schema (queries only). It logs only bugs, as the registry schema does.
CHAIN_SCHEMA = application_schema(ChainQuery)
