"""The node's chain-level GraphQL, at ``/`` (as Linera's node service has one beside each
application's): the chains the node serves, their applications, certified blocks and
certificates, and the ``notifications(chainId)`` subscription (each new block). Read-only:
blocks are proposed through an application's mutations.

A chain is named by its id (hex, or a unique prefix) or its name; an unknown one is a typed
error (``UsageError``), like every failure of the registry schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator
from dataclasses import asdict

import strawberry
from strawberry.types import Info

from edgechain.chain.certificate import CertifiedBlock
from edgechain.chain.network import Chain
from edgechain.client import Client
from edgechain.node.blob_schema import BlobInfo, chain_blobs
from edgechain.node.directory import ServedApplication, served_applications
from edgechain.node.resolvers import call, check_block_range, gate
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


@strawberry.type(description="A new certified block on a chain (Linera's NewBlock notification).")
class Notification:
    chain_id: str
    height: int
    hash: str
    reason: str = strawberry.field(default="NewBlock", description="always NewBlock here")


#: How long a notifications subscription waits before looking for blocks other processes
#: committed itself; a block this node proposes, or that any request's refresh picks up, wakes
#: every subscriber at once.
NOTIFICATION_POLL_S = 1.0


def _blocks_from(client: Client, chain_id: str, start: int | None) -> tuple[str, int, list]:
    """The chain's id, the next height to notify from, and its certified blocks from ``start``
    (None: from the head on, none yet), after picking up other processes' blocks."""
    client.refresh()
    chain = client.network.chain(chain_id)
    start = chain.height if start is None else start
    blocks = [(b.block.height, b.block_hash.hex()) for b in chain.blocks(start, chain.height)]
    return chain.id.hex(), start, blocks


@strawberry.type
class ChainSubscription:
    @strawberry.subscription(
        description="Each certified block of a chain as it is committed, by this node or any "
        "other process (Linera's notifications): from height `since` (default: the next "
        "block), in height order, none missed."
    )
    async def notifications(
        self, info: Info, chain_id: str, since: int | None = None
    ) -> AsyncGenerator[Notification, None]:
        if since is not None:
            check_block_range("notifications", since, None)
        next_height = since
        while True:
            landed = gate(info).blocks_landed()
            chain, start, blocks = await call(
                info, functools.partial(_blocks_from, chain_id=chain_id, start=next_height)
            )
            next_height = start
            for height, block_hash in blocks:
                yield Notification(chain_id=chain, height=height, hash=block_hash)
                next_height = height + 1
            if not blocks:
                # Blocks of a process nobody here hears about are seen at the next look.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(landed.wait(), NOTIFICATION_POLL_S)


#: The chain-level schema. It logs only bugs, as the registry schema does.
CHAIN_SCHEMA = application_schema(ChainQuery, subscription=ChainSubscription)
