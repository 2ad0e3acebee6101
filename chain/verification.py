"""Verification of stored chains: in full (`chain verify`), on open, and block by block when read.

In full (:func:`verify_chain`): each block is decoded, re-hashed, linked to its predecessor, its
signer's signature and its certificate are checked against the committee, and its operations are
re-executed: the state hash must match the certified one. Finally the stored state table must
equal the replayed state. The first failure raises :class:`StorageCorrupted` naming the chain and
the first bad height.

On open (:func:`open_chain`), what a command relies on, at a cost independent of the chain's
length: the blocks after the last head verified before (recorded in the meta table by the
writer that committed it, or by an earlier open; docs/chain.md, "Opening a network"), each
checked as above but without re-execution and linked back to that head; the head's certificate;
and the stored state, whose hash must be the state hash the head's certificate certifies. Without
a record (a network made by an older version), or with one the stored chain no longer holds at
its height (cut back, rewritten, a restored backup), the chain is verified in full. A block below
the recorded head is verified when it is read (:func:`check_block_row`: hash, signature,
certificate for its chain and height).

Blocks and state must come from one moment: callers pass a
:class:`~edgechain.chain.storage.Snapshot`
(one read transaction), never the shared connection, or a block committed by another process
between the two reads would look like tampering.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edgechain.chain.application import execute_block
from edgechain.chain.block import GENESIS_HEAD, Block, ChainHead
from edgechain.chain.certificate import Certificate, CertifiedBlock, verify_certificate
from edgechain.chain.committee import Committee
from edgechain.chain.encoding import hash_encoded, hash_value
from edgechain.chain.other_chains import (
    NotCertifiedElsewhere,
    check_other_chains,
    takes_from_other_chains,
)
from edgechain.chain.state import ChainState, WriteSet
from edgechain.chain.storage import BlockRow, ChainRecord, Snapshot, VerifiedHead
from edgechain.chain.validator import proposal_signature_valid
from edgechain.errors import EdgechainError, StorageCorrupted


def chain_id_for(committee: Committee, name: str, owner: bytes) -> bytes:
    """A chain's id: ``H("chain-id", [committee_hash, name, owner_public_key])``."""
    return hash_value("chain-id", [committee.hash(), name, owner])


@dataclass
class VerifiedChain:
    """The result of replaying a chain: its certified state and head."""

    record: ChainRecord
    state: ChainState
    head: ChainHead = GENESIS_HEAD


def verify_chain(snapshot: Snapshot, committee: Committee, record: ChainRecord) -> VerifiedChain:
    """Replay and check every stored block of ``record``'s chain; return its certified state."""
    label = f"chain {record.name!r}"
    if chain_id_for(committee, record.name, record.owner) != record.chain_id:
        raise StorageCorrupted(
            f"{label}: its id does not match its name, owner and committee (tampered chains table)"
        )
    chain = VerifiedChain(record, ChainState(record.chain_id))
    extend_chain(chain, snapshot.block_rows(record.chain_id), committee, snapshot)
    _check_state_table(snapshot, chain, label)
    return chain


def open_chain(
    snapshot: Snapshot, committee: Committee, record: ChainRecord, verified: VerifiedHead | None
) -> VerifiedChain:
    """``record``'s chain as of ``snapshot``, checked as far as a command relies on it (the
    module's docstring); ``verified`` is the head recorded as verified (None: verify in full)."""
    label = f"chain {record.name!r}"
    if verified is None or not _still_holds(snapshot, record.chain_id, verified):
        # No record, or one the stored chain no longer matches (cut back, rewritten, a
        # restored backup): everything is verified, as `chain verify` would.
        return verify_chain(snapshot, committee, record)
    if chain_id_for(committee, record.name, record.owner) != record.chain_id:
        raise StorageCorrupted(
            f"{label}: its id does not match its name, owner and committee (tampered chains table)"
        )
    stored = snapshot.next_height(record.chain_id)
    chain = VerifiedChain(record, ChainState(record.chain_id), ChainHead(verified.height))
    head: Block | None = None
    for row in snapshot.block_rows(record.chain_id, verified.height):
        height = chain.head.next_height
        try:
            block, _ = check_block_row(row, chain.record.chain_id, height, committee)
            if height > verified.height:
                _check_link(block, chain)
        except EdgechainError as exc:
            raise StorageCorrupted(
                f"{label}: stored block at height {height} fails verification: {exc}"
            ) from exc
        chain.head = ChainHead.of(block, row.block_hash)
        head = block
    if head is None or chain.head.next_height != stored:
        raise StorageCorrupted(
            f"{label}: stored block at height {chain.head.next_height} is missing"
        )
    chain.state = _stored_state(snapshot, record.chain_id)
    if chain.state.hash() != head.state_hash:
        raise StorageCorrupted(
            f"{label}: stored state differs from the state certified at height "
            f"{chain.head.next_height - 1} (its hash is not the certified state hash)"
        )
    return chain


def _still_holds(snapshot: Snapshot, chain_id: bytes, verified: VerifiedHead) -> bool:
    row = snapshot.block_row(chain_id, verified.height)
    return row is not None and row.block_hash == verified.block_hash


def _stored_state(snapshot: Snapshot, chain_id: bytes) -> ChainState:
    state = ChainState(chain_id)
    state.apply({(app_id, key): value for app_id, key, value in snapshot.state_entries(chain_id)})
    return state


def check_block_row(
    row: BlockRow, chain_id: bytes, height: int, committee: Committee
) -> tuple[Block, Certificate]:
    """A stored block read on its own: at its place (chain, height), its bytes match its hash,
    its signer signed it, and a quorum of the committee certified it there. Raises
    :class:`StorageCorrupted` or :class:`CertificateError` (the caller names chain and height)."""
    if row.height != height or row.chain_id != chain_id:
        raise StorageCorrupted(f"height column says {row.height}")
    block = Block.decode(row.block)
    block_hash = hash_encoded("block", row.block)
    if block_hash != row.block_hash:
        raise StorageCorrupted("block hash does not match the block's bytes")
    if (block.chain_id, block.height) != (chain_id, height):
        raise StorageCorrupted("the block's chain id or height does not match its position")
    if not proposal_signature_valid(block.signer, row.owner_signature, block_hash):
        raise StorageCorrupted("the signer's signature is not valid")
    certificate = Certificate.decode(row.certificate)
    verify_certificate(certificate, committee)
    if (certificate.chain_id, certificate.height, certificate.block_hash) != (
        chain_id,
        height,
        block_hash,
    ):
        raise StorageCorrupted("the certificate is for another block")
    if certificate.state_hash != block.state_hash:
        raise StorageCorrupted("the certificate is for another state hash")
    return block, certificate


def _check_link(block: Block, chain: VerifiedChain) -> None:
    if block.previous_hash != chain.head.block_hash:
        raise StorageCorrupted("previous-block hash does not link to the block before")
    if block.timestamp_us < chain.head.timestamp_us:
        raise StorageCorrupted("timestamp goes backwards")


def extend_chain(
    chain: VerifiedChain,
    rows: Iterable[BlockRow],
    committee: Committee,
    snapshot: Snapshot | None = None,
) -> list[tuple[CertifiedBlock, WriteSet]]:
    """Check ``rows`` (the blocks after ``chain``'s head, in order) and apply them to ``chain``.
    With ``snapshot``, a block's incoming bundles are also checked against the certified blocks
    of their origins (chain/messages.py); without it a block that has any fails.

    Returns each block with the writes it made, for a copy of the state kept elsewhere.
    """
    label = f"chain {chain.record.name!r}"
    applied = []
    for row in rows:
        height = chain.head.next_height
        try:
            block, certificate, writes = _check_row(row, chain, committee, snapshot)
        except EdgechainError as exc:
            raise StorageCorrupted(
                f"{label}: stored block at height {height} fails verification: {exc}"
            ) from exc
        chain.head = ChainHead.of(block, row.block_hash)
        applied.append(
            (CertifiedBlock(block, row.block_hash, row.owner_signature, certificate), writes)
        )
    return applied


def _check_row(
    row: BlockRow, chain: VerifiedChain, committee: Committee, snapshot: Snapshot | None = None
) -> tuple[Block, Certificate, WriteSet]:
    height = chain.head.next_height
    if row.height != height:
        raise StorageCorrupted(f"height column says {row.height}")
    block = Block.decode(row.block)
    block_hash = hash_encoded("block", row.block)
    if block_hash != row.block_hash:
        raise StorageCorrupted("block hash does not match the block's bytes")
    if (block.chain_id, block.height) != (chain.record.chain_id, height):
        raise StorageCorrupted("the block's chain id or height does not match its position")
    if block.previous_hash != chain.head.block_hash:
        raise StorageCorrupted("previous-block hash does not link to the block before")
    if block.timestamp_us < chain.head.timestamp_us:
        raise StorageCorrupted("timestamp goes backwards")
    if not proposal_signature_valid(block.signer, row.owner_signature, block_hash):
        raise StorageCorrupted("the signer's signature is not valid")
    certificate = Certificate.decode(row.certificate)
    verify_certificate(certificate, committee)
    # Compared field by field: the block hash is already known, no need to re-encode the block.
    certified = (certificate.chain_id, certificate.height, certificate.block_hash)
    if certified != (block.chain_id, height, block_hash):
        raise StorageCorrupted("the certificate is for another block")
    if certificate.state_hash != block.state_hash:
        raise StorageCorrupted("the certificate is for another state hash")
    _check_other_chains(block, committee, snapshot)
    writes = execute_block(chain.state, block, chain.record.owner)  # its height checked above
    if chain.state.hash_with(writes) != block.state_hash:
        raise StorageCorrupted("re-executing the block gives a different state hash")
    chain.state.apply(writes)
    return block, certificate, writes


def _check_other_chains(block: Block, committee: Committee, snapshot: Snapshot | None) -> None:
    if not takes_from_other_chains(block):
        return
    if snapshot is None:
        raise StorageCorrupted("it refers to other chains, which cannot be checked here")

    def certified_block(chain_id: bytes, height: int) -> tuple[bytes, Block] | None:
        row = snapshot.block_row(chain_id, height)
        if row is None:
            return None
        origin, _ = check_block_row(row, chain_id, height, committee)
        return row.block_hash, origin

    try:
        check_other_chains(block, certified_block)
    except NotCertifiedElsewhere as exc:
        raise StorageCorrupted(str(exc)) from None


def _check_state_table(snapshot: Snapshot, chain: VerifiedChain, label: str) -> None:
    replayed = {(a, k): v for a, k, v in chain.state.entries()}
    stored = {(a, k): v for a, k, v in snapshot.state_entries(chain.record.chain_id)}
    if stored == replayed:
        return
    differing = sorted(set(stored) ^ set(replayed)) or sorted(
        k for k in stored if stored[k] != replayed.get(k)
    )
    app_id, key = differing[0]
    last = chain.head.next_height - 1
    raise StorageCorrupted(
        f"{label}: stored state differs from the state certified at height {last} "
        f"(application {app_id.hex()[:16]}, key {key!r})"
    )
