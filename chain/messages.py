"""Cross-chain messages: what a block sends, what it receives, and the order they keep.

As in Linera, a contract sends a message to its own application on another chain
(:func:`edgechain.chain.application.send_message`). The message is part of the sending block
(its ``outgoing`` list, which every validator re-computes by executing the block, as it does the
state hash), so once that block is certified the message is certified with it. It then waits in
the recipient chain's inbox until the recipient's next block takes it as an **incoming bundle**
(all the messages one certified block sent to that chain, in order) and executes each message in
the recipient application's ``execute_message``.

Order and exactly-once come from two counters in the chains' system state (namespace
:func:`messaging_id`, which no application can write): the sender numbers its messages to each
recipient (``outbox/<recipient>``, the message's ``seq``), and the recipient records the next
number it expects from each sender (``inbox/<origin>``). A block whose bundle skips, reorders or
repeats a number is rejected by execution itself; a bundle that is not, message for message, in a
certified block of its origin is refused by the validators (:func:`check_bundle_origin`).

A **tracked** message that its recipient rejects (its contract raises) comes back to the sender
as a **bouncing** copy, executed by the sender's ``execute_message`` with ``is_bouncing`` set; an
**authenticated** message carries the signer of the block that sent it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgechain.chain.encoding import EncodingError, hash_value

HASH_SIZE = 32
MESSAGING_NAME = "messaging"
OUTBOX_PREFIX = "outbox/"
INBOX_PREFIX = "inbox/"
#: An application's event streams on its chain: ``events/<app>/<stream>`` holds the count,
#: ``events/<app>/<stream>/<index>`` each value; ``subscribers/<app>/<stream>`` the chains
#: that follow it.
EVENTS_PREFIX = "events/"
SUBSCRIBERS_PREFIX = "subscribers/"
#: What a message is: an application's own (``user``), a chain's request to follow an event
#: stream (``subscribe``), or one event of a stream it follows (``event``).
USER, SUBSCRIBE, EVENT = "user", "subscribe", "event"
MESSAGE_KINDS = (USER, SUBSCRIBE, EVENT)
#: Messages one block may send, and bundles one block may take in: a block stays small.
MAX_OUTGOING = 256
MAX_INCOMING_BUNDLES = 64


def messaging_id(chain_id: bytes) -> bytes:
    """The system namespace of a chain's message counters (no application has this id)."""
    return hash_value("app-id", [chain_id, MESSAGING_NAME])


@dataclass(frozen=True)
class Message:
    """One message a block sends: to ``recipient`` (a chain id), for application ``app_id``
    there (the sender's own application), numbered ``seq`` among the sender's messages to that
    chain.

    ``description`` lets a chain that has never seen the application learn it from the message
    (an application users created: chain/modules.py; None for built-in kinds, which every chain
    has). ``signer`` is set on authenticated messages.
    """

    recipient: bytes
    seq: int
    app_id: bytes
    payload: Any
    tracked: bool = False
    bouncing: bool = False
    signer: bytes | None = None
    description: Any = None
    #: USER, or a system message of event streams: SUBSCRIBE (payload: the stream's name) or
    #: EVENT (payload: ``[stream, index, value]``).
    kind: str = USER

    def to_value(self) -> list[Any]:
        return [
            self.recipient,
            self.seq,
            self.app_id,
            self.kind,
            self.tracked,
            self.bouncing,
            self.signer,
            self.description,
            self.payload,
        ]

    @classmethod
    def from_value(cls, value: Any) -> Message:
        if not (isinstance(value, list) and len(value) == 9):
            raise EncodingError("a message is not a 9-element list")
        recipient, seq, app_id, kind, tracked, bouncing, signer, description, payload = value
        if kind not in MESSAGE_KINDS:
            raise EncodingError(f"a message's kind is not one of {', '.join(MESSAGE_KINDS)}")
        if not (_is_hash(recipient) and _is_hash(app_id)):
            raise EncodingError("a message's recipient or application is not 32 bytes")
        if not (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0):
            raise EncodingError("a message's sequence number is not a natural number")
        if not (isinstance(tracked, bool) and isinstance(bouncing, bool)):
            raise EncodingError("a message's tracked and bouncing flags are not booleans")
        if signer is not None and not _is_hash(signer):
            raise EncodingError("a message's signer is not 32 bytes")
        return cls(recipient, seq, app_id, payload, tracked, bouncing, signer, description, kind)


@dataclass(frozen=True)
class IncomingBundle:
    """The messages block ``height`` (hash ``block_hash``) of chain ``origin`` sent to the
    chain that receives them, in the order it sent them."""

    origin: bytes
    height: int
    block_hash: bytes
    messages: tuple[Message, ...]

    def to_value(self) -> list[Any]:
        return [self.origin, self.height, self.block_hash, [m.to_value() for m in self.messages]]

    @classmethod
    def from_value(cls, value: Any) -> IncomingBundle:
        if not (isinstance(value, list) and len(value) == 4):
            raise EncodingError("an incoming bundle is not a 4-element list")
        origin, height, block_hash, messages = value
        if not (_is_hash(origin) and _is_hash(block_hash)):
            raise EncodingError("a bundle's origin or block hash is not 32 bytes")
        if not (isinstance(height, int) and not isinstance(height, bool) and height >= 0):
            raise EncodingError("a bundle's height is not a natural number")
        if not (isinstance(messages, list) and messages):
            raise EncodingError("a bundle holds no messages")
        return cls(origin, height, block_hash, tuple(Message.from_value(m) for m in messages))


@dataclass(frozen=True)
class StreamUpdate:
    """One event of a stream a chain follows: emitted on ``chain`` by the same application,
    the ``index``-th of ``stream``."""

    chain: bytes
    stream: str
    index: int
    value: Any


def stream_key(app_id: bytes, stream: str) -> str:
    return f"{EVENTS_PREFIX}{app_id.hex()}/{stream}"


@dataclass(frozen=True)
class MessageContext:
    """What a contract knows about the message it executes."""

    origin: bytes
    height: int
    is_bouncing: bool
    #: The signer of the sending block, for an authenticated message (else None).
    signer: bytes | None


def _is_hash(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def bundle_for(
    origin: bytes, height: int, block_hash: bytes, outgoing: tuple[Message, ...], recipient: bytes
) -> IncomingBundle | None:
    """The bundle a block's ``outgoing`` messages make for ``recipient`` (None: none for it)."""
    mine = tuple(m for m in outgoing if m.recipient == recipient)
    return IncomingBundle(origin, height, block_hash, mine) if mine else None


class BundleRefused(Exception):
    """A bundle that no certified block of its origin sent (the caller maps it to its error)."""


def check_bundle_origin(
    bundle: IncomingBundle,
    recipient: bytes,
    certified_block: Callable[[bytes, int], tuple[bytes, tuple[Message, ...]] | None],
) -> None:
    """Raise :class:`BundleRefused` unless ``bundle`` is exactly what the certified block of its
    origin at its height sent to ``recipient``. ``certified_block(chain, height)`` gives that
    block's hash and outgoing messages (from a verified, certified row) or None."""
    found = certified_block(bundle.origin, bundle.height)
    label = f"bundle from {bundle.origin.hex()[:16]} at height {bundle.height}"
    if found is None:
        raise BundleRefused(f"{label}: that chain has no certified block there")
    block_hash, outgoing = found
    if block_hash != bundle.block_hash:
        raise BundleRefused(
            f"{label}: it names block {bundle.block_hash.hex()[:16]}, not the one certified"
        )
    expected = bundle_for(bundle.origin, bundle.height, block_hash, outgoing, recipient)
    if expected is None or expected.messages != bundle.messages:
        raise BundleRefused(f"{label}: its messages are not the ones that block sent here")
