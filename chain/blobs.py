"""Data blobs: content-addressed bytes a block publishes and validators store (Linera's data
blobs and its ``PublishDataBlob`` system operation).

A blob's id is ``BLAKE3(tag("blob") || bytes)``. A block publishes a blob with a
``PublishDataBlob {blob, size}`` operation of the ``blobs`` application; the bytes travel beside
the block in the proposal (:class:`~edgechain.chain.block.Proposal` ``blobs``), never inside it,
so the block hash covers the id only. The ``blobs`` contract records each published blob in its
state (``blob/<hex id>`` -> ``{size, height}``); other contracts read that record to accept a
reference to a blob only once it is certified (the registry's manifests).

Operations that reference blobs (publish them or name them) declare it with
:func:`register_blob_references`; a validator votes for a block only when it holds, or the
proposal carries, every blob the block references (chain/validator.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import blake3

from edgechain.chain.application import (
    ApplicationKind,
    BuiltInService,
    NamedOperation,
    application_id,
)
from edgechain.chain.block import Operation
from edgechain.chain.encoding import domain_tag
from edgechain.errors import (
    BlobCorrupted,
    OperationRejected,
    StorageCorrupted,
    Unauthorized,
    UsageError,
)

if TYPE_CHECKING:
    from edgechain.chain.application import ContractState, OperationContext
    from edgechain.chain.state import ChainState
    from edgechain.chain.storage import Snapshot

APPLICATION_NAME = "blobs"
KEY_PREFIX = "blob/"
BLOB_ID_SIZE = 32


def blob_id(data: bytes | bytearray | memoryview) -> bytes:
    """The id of a blob holding ``data``."""
    hasher = blake3.blake3(domain_tag("blob"))
    hasher.update(data)
    return hasher.digest()


def blob_key(blob: bytes) -> str:
    return f"{KEY_PREFIX}{blob.hex()}"


def blobs_app_id(chain_id: bytes) -> bytes:
    return application_id(chain_id, APPLICATION_NAME)


@dataclass(frozen=True)
class PublishDataBlob(NamedOperation):
    """Publish one blob (its bytes go in the proposal's ``blobs``)."""

    blob: bytes
    size: int

    def to_payload(self) -> dict[str, Any]:
        return {"blob": self.blob, "size": self.size}

    @classmethod
    def from_payload(cls, payload: Any) -> PublishDataBlob:
        if not (isinstance(payload, dict) and set(payload) == {"blob", "size"}):
            raise OperationRejected("PublishDataBlob needs exactly blob and size")
        blob, size = payload["blob"], payload["size"]
        if not (isinstance(blob, bytes) and len(blob) == BLOB_ID_SIZE):
            raise OperationRejected("PublishDataBlob.blob must be a 32-byte blob id")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise OperationRejected("PublishDataBlob.size must be a non-negative integer")
        return cls(blob, size)

    def operation(self, chain_id: bytes) -> Operation:
        return Operation(blobs_app_id(chain_id), self.operation_name, self.to_payload())


class BlobsContract:
    """Records published blobs; publishing a blob again is a no-op."""

    def execute_operation(
        self, ctx: OperationContext, state: ContractState, name: str, payload: Any
    ) -> None:
        if name != PublishDataBlob.operation_name:
            raise OperationRejected(f"blobs has no operation {name!r}")
        op = PublishDataBlob.from_payload(payload)
        if not ctx.signed_by_owner:
            raise Unauthorized("PublishDataBlob must be signed by the chain owner")
        existing = state.get(blob_key(op.blob))
        if existing is None:
            state.set(blob_key(op.blob), {"size": op.size, "height": ctx.height})
        elif existing["size"] != op.size:
            raise OperationRejected(f"blob {op.blob.hex()[:16]} is published with another size")


@dataclass(frozen=True)
class PublishedBlob:
    blob: bytes
    size: int
    height: int


class BlobsService(BuiltInService):
    """Certified reads: which blobs the chain has published."""

    def published(self, blob: bytes) -> PublishedBlob | None:
        value = self._ctx.state.get(blob_key(blob))
        return None if value is None else PublishedBlob(blob, value["size"], value["height"])

    def all(self) -> list[PublishedBlob]:
        state = self._ctx.state
        found = []
        for key in state.keys(KEY_PREFIX):
            value = state.get(key)
            found.append(PublishedBlob(bytes.fromhex(key[len(KEY_PREFIX) :]), **value))
        return sorted(found, key=lambda b: (b.height, b.blob))


#: The blob publication application every chain runs (registered by the wiring layer, as the
#: contracts are).
BLOBS = ApplicationKind(
    name=APPLICATION_NAME, contract=BlobsContract(), service_factory=BlobsService
)


def published_record(state: ContractState, blob: bytes) -> dict[str, Any] | None:
    """The ``blobs`` application's record of ``blob`` as the executing block sees it (what a
    contract checks before accepting a reference to the blob)."""
    return state.view_of(blobs_app_id(state.chain_id)).get(blob_key(blob))


# --- references -----------------------------------------------------------------------------

BlobReferences = Callable[[Any], Sequence[bytes]]
_REFERENCES: dict[str, BlobReferences] = {}


def register_blob_references(operation_name: str, references: BlobReferences) -> None:
    """Declare that operations named ``operation_name`` reference the blobs
    ``references(payload)`` returns (a malformed payload: return what can be read)."""
    _REFERENCES[operation_name] = references


def _published_reference(payload: Any) -> Sequence[bytes]:
    blob = payload.get("blob") if isinstance(payload, dict) else None
    return [blob] if isinstance(blob, bytes) else []


register_blob_references(PublishDataBlob.operation_name, _published_reference)


def referenced_blobs(operations: Iterable[Operation]) -> list[bytes]:
    """Every blob the operations reference, first mention first, without repeats."""
    seen: dict[bytes, None] = {}
    for op in operations:
        references = _REFERENCES.get(op.name)
        if references is not None:
            for blob in references(op.payload):
                seen.setdefault(blob, None)
    return list(seen)


def published_blobs(operations: Iterable[Operation]) -> list[PublishDataBlob]:
    """The blobs the operations publish (malformed ones left to the contract)."""
    found = []
    for op in operations:
        if op.name == PublishDataBlob.operation_name:
            try:
                found.append(PublishDataBlob.from_payload(op.payload))
            except OperationRejected:
                continue
    return found


def check_blobs_at_hand(
    published: list[PublishDataBlob],
    referenced: list[bytes],
    blobs: dict[bytes, bytes],
    stored_ids: Callable[[], set[bytes]],
) -> None:
    """The proposer's own check: the bytes carried for a published blob match its id and size,
    every blob carried is published, every other referenced blob is already stored (UsageError
    otherwise: a caller's mistake, caught before anything is proposed)."""
    for item in published:
        data = blobs.get(item.blob)
        if data is not None and (len(data) != item.size or blob_id(data) != item.blob):
            raise UsageError(f"blob {item.blob.hex()[:16]}: the bytes given do not match it")
    stored = None
    for blob in referenced:
        if blob in blobs:
            continue
        if stored is None:
            stored = stored_ids()
        if blob not in stored:
            raise UsageError(f"the block references blob {blob.hex()[:16]}, which is not stored")
    extra = set(blobs) - {p.blob for p in published}
    if extra:
        raise UsageError(f"blob {min(extra).hex()[:16]} is carried but no operation publishes it")


# --- verification ---------------------------------------------------------------------------


def verify_blobs(snapshot: Snapshot, states: Iterable[ChainState]) -> int:
    """Re-hash every stored blob and check that every blob a chain published is stored;
    return how many were checked. The first failure raises StorageCorrupted naming the blob
    and the block that published it."""
    published: dict[bytes, tuple[int, int]] = {}  # id -> (size, height)
    for state in states:
        app = blobs_app_id(state.chain_id)
        for key in state.keys(app, KEY_PREFIX):
            value = state.get(app, key)
            published[bytes.fromhex(key[len(KEY_PREFIX) :])] = (value["size"], value["height"])
    checked = 0
    for blob, size, data in snapshot.blob_rows():
        where = ""
        if blob in published:
            where = f" (published at height {published[blob][1]})"
        if size != len(data) or blob_id(data) != blob:
            raise BlobCorrupted(
                f"stored blob {blob.hex()}{where} is damaged: its {len(data)} bytes hash to "
                f"{blob_id(data).hex()[:16]}, not to its id",
                blob=blob,
            )
        if blob in published and published[blob][0] != size:
            raise StorageCorrupted(f"stored blob {blob.hex()}{where} has another size")
        published.pop(blob, None)
        checked += 1
    if published:
        blob, (_, height) = min(published.items(), key=lambda item: item[1][1])
        raise StorageCorrupted(
            f"blob {blob.hex()} (published at height {height}) is missing from storage"
        )
    return checked
