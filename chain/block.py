"""Blocks and operations: fields, canonical value, hash, and the owner's proposal signature.

A block's canonical value is a list in this fixed order (docs/chain.md):

    [format_version, chain_id, height, previous_hash | null, timestamp_us,
     operations, signer, state_hash]

and each operation is ``[app_id, name, payload]``. A block that receives or sends cross-chain
messages (chain/messages.py) is format 2, two lists longer:

    [2, chain_id, height, previous_hash | null, timestamp_us, operations, signer, state_hash,
     incoming_bundles, outgoing_messages]

(a block without messages keeps format 1, so every block made before messages existed keeps
its bytes and hash). The block hash is BLAKE3 under the ``block``
domain; the owner signs ``domain_tag("proposal") || block_hash``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgechain.chain import signatures
from edgechain.chain.encoding import EncodingError, decode, domain_tag, encode, hash_encoded
from edgechain.chain.keys import public_bytes
from edgechain.chain.messages import IncomingBundle, Message

BLOCK_FORMAT_VERSION = 1
#: The format of a block with incoming bundles or outgoing messages.
MESSAGES_FORMAT_VERSION = 2
HASH_SIZE = 32
MAX_BLOCK_BYTES = 1024 * 1024  # Linera testnet's block limit


@dataclass(frozen=True)
class Operation:
    """One operation for one application: the app id, the operation's name and its payload.

    The payload is any canonical value (usually a map); the application's contract decodes it.
    """

    app_id: bytes
    name: str
    payload: Any

    def to_value(self) -> list[Any]:
        return [self.app_id, self.name, self.payload]

    @classmethod
    def from_value(cls, value: Any) -> Operation:
        if not (isinstance(value, list) and len(value) == 3):
            raise EncodingError("an operation is not a 3-element list")
        app_id, name, payload = value
        if not (isinstance(app_id, bytes) and len(app_id) == HASH_SIZE and isinstance(name, str)):
            raise EncodingError("an operation has a malformed app id or name")
        return cls(app_id, name, payload)


@dataclass(frozen=True)
class Block:
    """A proposed or committed block. ``state_hash`` is the state after executing it."""

    chain_id: bytes
    height: int
    previous_hash: bytes | None
    timestamp_us: int
    operations: tuple[Operation, ...]
    signer: bytes
    state_hash: bytes
    #: The bundles of messages this block takes from its inbox, executed before its operations.
    incoming: tuple[IncomingBundle, ...] = ()
    #: The messages executing it sends (re-computed by every validator, like the state hash).
    outgoing: tuple[Message, ...] = ()

    def to_value(self) -> list[Any]:
        value = [
            BLOCK_FORMAT_VERSION,
            self.chain_id,
            self.height,
            self.previous_hash,
            self.timestamp_us,
            [op.to_value() for op in self.operations],
            self.signer,
            self.state_hash,
        ]
        if self.incoming or self.outgoing:
            value[0] = MESSAGES_FORMAT_VERSION
            value.append([bundle.to_value() for bundle in self.incoming])
            value.append([message.to_value() for message in self.outgoing])
        return value

    def encode(self) -> bytes:
        """The block's canonical bytes (what storage keeps and the hash covers); computed once
        per block (the proposer, every validator and the commit all need them)."""
        return self._encoded

    @functools.cached_property
    def _encoded(self) -> bytes:
        # A block is immutable once built (its payloads are never changed after a proposal).
        return encode(self.to_value())

    def hash(self) -> bytes:
        return hash_encoded("block", self.encode())

    @classmethod
    def decode(cls, data: bytes) -> Block:
        value = decode(data)
        version = value[0] if isinstance(value, list) and value else None
        incoming: tuple[IncomingBundle, ...] = ()
        outgoing: tuple[Message, ...] = ()
        if version == MESSAGES_FORMAT_VERSION and len(value) == 10:
            bundles, messages = value[8], value[9]
            if not (isinstance(bundles, list) and isinstance(messages, list)):
                raise EncodingError("a block's incoming bundles or outgoing messages are not lists")
            if not (bundles or messages):
                raise EncodingError("a format-2 block without messages (it is format 1)")
            incoming = tuple(IncomingBundle.from_value(b) for b in bundles)
            outgoing = tuple(Message.from_value(m) for m in messages)
            value = value[:8]
        elif version == BLOCK_FORMAT_VERSION:
            if len(value) != 8:
                raise EncodingError("a block is not an 8-element list")
        else:
            raise EncodingError(f"unknown block format version {version!r}")
        _, chain_id, height, previous, timestamp, ops, signer, state_hash = value
        _check_hash(chain_id, "chain id")
        if previous is not None:
            _check_hash(previous, "previous hash")
        _check_hash(signer, "signer")
        _check_hash(state_hash, "state hash")
        if not (isinstance(height, int) and isinstance(timestamp, int) and isinstance(ops, list)):
            raise EncodingError("a block has a malformed height, timestamp or operation list")
        operations = tuple(Operation.from_value(op) for op in ops)
        return cls(
            chain_id, height, previous, timestamp, operations, signer, state_hash, incoming,
            outgoing,
        )  # fmt: skip


def _check_hash(value: Any, what: str) -> None:
    if not (isinstance(value, bytes) and len(value) == HASH_SIZE):
        raise EncodingError(f"a block's {what} is not 32 bytes")


def proposal_message(block_hash: bytes) -> bytes:
    """What the block's signer signs: the ``proposal`` domain tag then the block hash."""
    return domain_tag("proposal") + block_hash


def sign_proposal(block: Block, key: Ed25519PrivateKey, block_hash: bytes | None = None) -> bytes:
    """The signer's signature of ``block`` (``key`` must match ``block.signer``).

    ``block_hash``, when the caller already has it, saves re-encoding the block.
    """
    if public_bytes(key) != block.signer:
        raise ValueError("the signing key does not match the block's signer")
    message = proposal_message(block.hash() if block_hash is None else block_hash)
    return signatures.sign(key, block.signer, message)


@dataclass(frozen=True)
class Proposal:
    """A block with its signer's signature, as the owner sends it to the validators."""

    block: Block
    signature: bytes
    block_hash: bytes
    #: The bytes of the blobs the block publishes, by blob id (chain/blobs.py): they travel
    #: beside the block, which holds their ids only.
    blobs: dict[bytes, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class ChainHead:
    """Where a chain stands: the height its next block takes, the hash of its last block (None
    before the first) and that block's timestamp (the next block's may not be earlier). The
    network, each validator's replica and a re-verification each keep one."""

    next_height: int = 0
    block_hash: bytes | None = None
    timestamp_us: int = 0

    @classmethod
    def of(cls, block: Block, block_hash: bytes) -> ChainHead:
        """The head once ``block`` (whose hash is ``block_hash``) is the last block."""
        return cls(block.height + 1, block_hash, block.timestamp_us)


#: The head of a chain with no block yet.
GENESIS_HEAD = ChainHead()
