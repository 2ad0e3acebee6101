"""GraphQL types for blobs (chain/blobs.py): what a block publishes, a file's manifest, and the
chain-level ``blobs`` query (each published blob, its size, height and which validators hold
it)."""

from __future__ import annotations

import strawberry

from edgechain.chain.blobs import APPLICATION_NAME, PublishedBlob, published_blobs
from edgechain.chain.block import Block
from edgechain.chain.network import Chain
from edgechain.contract.operations import FileRef


@strawberry.type(description="A blob a block publishes, or a chunk of a file's manifest.")
class BlobRef:
    blob_id: str = strawberry.field(description="BLAKE3 (blob domain) of the bytes, hex")
    size: int

    @classmethod
    def chunks(cls, file: FileRef) -> list[BlobRef]:
        return [cls(blob_id=blob.hex(), size=size) for blob, size in file.chunks]

    @classmethod
    def published_by(cls, block: Block) -> list[BlobRef]:
        return [cls(blob_id=b.blob.hex(), size=b.size) for b in published_blobs(block.operations)]


@strawberry.type(description="A blob published on a chain, from certified state.")
class BlobInfo:
    blob_id: str
    size: int
    height: int = strawberry.field(description="the block that published it")
    holders: list[str] = strawberry.field(description="validators that store it and answer")

    @classmethod
    def of(cls, chain: Chain, blob: PublishedBlob) -> BlobInfo:
        validators = chain.network.validators
        return cls(
            blob_id=blob.blob.hex(),
            size=blob.size,
            height=blob.height,
            holders=[v.name for v in validators if v.holds(blob.blob)],
        )


def chain_blobs(chain: Chain) -> list[BlobInfo]:
    """Every blob ``chain`` published, in height order."""
    return [BlobInfo.of(chain, b) for b in chain.application(APPLICATION_NAME).all()]
