"""The application model: a deterministic contract and a read-only service, per application.

An application kind (e.g. "model-registry") provides:

- a **contract**: ``execute_operation(ctx, state, name, payload)``. It must be deterministic: no
  clock (read ``ctx.timestamp_us``), no randomness, no I/O. Its state changes only through the
  :class:`ContractState` it is given, and it rejects an operation by raising a ContractError.
- a **service** factory: given a :class:`ServiceContext` (read-only certified state plus the
  certificates), it returns an object answering queries.

An application's id on a chain is ``H("app-id", [chain_id, kind_name])``; its state is the
namespace of that id in the chain state, so applications never see each other's keys.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from edgechain.chain.block import Block, Operation
from edgechain.chain.encoding import decode, encode, hash_value
from edgechain.chain.messages import (
    EVENT,
    INBOX_PREFIX,
    MAX_OUTGOING,
    OUTBOX_PREFIX,
    SUBSCRIBE,
    SUBSCRIBERS_PREFIX,
    USER,
    IncomingBundle,
    Message,
    MessageContext,
    StreamUpdate,
    messaging_id,
    stream_key,
)
from edgechain.chain.state import ChainState, WriteSet
from edgechain.errors import ContractError, OperationRejected, UsageError

if TYPE_CHECKING:
    from edgechain.chain.certificate import CertifiedBlock
    from edgechain.chain.committee import Committee


@dataclass(frozen=True)
class OperationContext:
    """What a contract may know about the block executing its operation."""

    chain_id: bytes
    app_id: bytes
    height: int
    timestamp_us: int
    signer: bytes
    chain_owner: bytes
    #: The operation's position in its block (an application created there takes its id from it).
    index: int = 0
    #: The application's parameters, fixed when it was created (built-in kinds have none).
    parameters: Any = None
    #: Where the messages this execution sends go (the block's outgoing list; chain/messages.py).
    outbox: list[Message] | None = None
    #: The message being executed (None for an operation). For a message, ``signer`` is the
    #: sending block's signer if the message is authenticated, else empty.
    message: MessageContext | None = None

    @property
    def signed_by_owner(self) -> bool:
        return self.signer == self.chain_owner


class StateReader:
    """Read-only view of one application's namespace in a chain state.

    With ``lock``, each read holds it, so that readers in other threads never see a block
    half-applied (the chain applies certified writes under the same lock).
    """

    def __init__(
        self, base: ChainState, app_id: bytes, lock: threading.RLock | None = None
    ) -> None:
        self._base = base
        self.app_id = app_id
        self._lock = lock if lock is not None else contextlib.nullcontext()

    def get(self, key: str) -> Any:
        with self._lock:
            return self._base.get(self.app_id, key)

    def keys(self, prefix: str = "") -> list[str]:
        with self._lock:
            return self._base.keys(self.app_id, prefix)

    def reader_of(self, app_id: bytes) -> StateReader:
        """Another application's namespace, read-only, under the same lock (a service reading
        the model registry's certified entries)."""
        reader = StateReader(self._base, app_id)
        reader._lock = self._lock
        return reader


class ContractState(StateReader):
    """One application's namespace during execution: reads see earlier writes of the block."""

    def __init__(self, base: ChainState, app_id: bytes, writes: WriteSet) -> None:
        super().__init__(base, app_id)
        self._writes = writes

    def get(self, key: str) -> Any:
        marker = (self.app_id, key)
        if marker in self._writes:
            raw = self._writes[marker]
            return None if raw is None else decode(raw)
        return super().get(key)

    def keys(self, prefix: str = "") -> list[str]:
        found = set(super().keys(prefix))
        for (app_id, key), raw in self._writes.items():
            if app_id == self.app_id and key.startswith(prefix):
                if raw is None:
                    found.discard(key)
                else:
                    found.add(key)
        return sorted(found, key=lambda k: k.encode("utf-8"))

    def set(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError("state keys are strings")
        self._writes[(self.app_id, key)] = encode(value)

    def delete(self, key: str) -> None:
        self._writes[(self.app_id, key)] = None

    @property
    def chain_id(self) -> bytes:
        return self._base.chain_id

    def view_of(self, app_id: bytes) -> ContractState:
        """Another application's namespace as this block sees it, for reading system records
        (published blobs, chain/blobs.py); contracts never write through it."""
        return ContractState(self._base, app_id, self._writes)


class Contract(Protocol):
    """The on-chain half of an application. What it returns is the operation's response (to
    the proposer; it is not part of the block). A contract that receives cross-chain messages
    also has ``execute_message(ctx, state, payload)`` (``ctx.message`` says where from)."""

    def execute_operation(
        self, ctx: OperationContext, state: ContractState, name: str, payload: Any
    ) -> Any: ...


@dataclass(frozen=True)
class ServiceContext:
    """What a service gets: certified state (read-only), the chain's certificates, the committee."""

    chain_id: bytes
    app_id: bytes
    state: StateReader
    committee: Committee
    certified_block: Callable[[int], CertifiedBlock]


class BuiltInService:
    """A built-in application's service: certified reads through its context; ``id`` is its
    application's id."""

    def __init__(self, context: ServiceContext) -> None:
        self._ctx = context
        self.id = context.app_id


@dataclass(frozen=True)
class ApplicationKind:
    """A kind of application: its name, its contract and how to build its service."""

    name: str
    contract: Contract
    service_factory: Callable[[ServiceContext], Any]
    #: True for a kind that runs code users wrote (chain/modules.py creates applications and
    #: runs their instantiate): such blocks are executed by each validator itself.
    runs_user_code: bool = False


class OperationPayload(Protocol):
    """A typed operation (e.g. RegisterModel) that knows its name and canonical payload."""

    operation_name: str

    def to_payload(self) -> Any: ...


class NamedOperation:
    """The base of a typed operation: its ``operation_name`` is its class's name, as Linera
    names an operation by its enum variant (and the SDK an ABI's operation by its dataclass),
    so the name is written once, by the class statement."""

    operation_name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.operation_name = cls.__name__


# Filled by the wiring layer above chain/ (it registers the built-in kinds): chain/ names no
# application itself.
_KINDS: dict[str, ApplicationKind] = {}


def register_application_kind(kind: ApplicationKind) -> None:
    """Make ``kind`` available to every chain (by name)."""
    _KINDS[kind.name] = kind
    _kinds_by_id.cache_clear()


def application_kind(name: str) -> ApplicationKind:
    """The application kind called ``name``."""
    try:
        return _KINDS[name]
    except KeyError:
        known = ", ".join(known_application_kinds()) or "none registered"
        raise UsageError(f"unknown application {name!r} (known: {known})") from None


def known_application_kinds() -> list[str]:
    return sorted(_KINDS)


#: Finds an application that is not a registered kind (one a block created: chain/modules.py):
#: ``resolver(state, app_id, description) -> (kind, parameters)`` or None when it knows no such
#: application. ``description`` (from a message, else None) lets it learn an application created
#: on another chain; it records what it learns in ``state``.
CreatedApplications = Callable[["ContractState", bytes, Any], "tuple[ApplicationKind, Any] | None"]
#: ``describer(state, app_id) -> description | None``: what a message carries so that another
#: chain can learn the application (chain/modules.py).
ApplicationDescriber = Callable[["ContractState", bytes], Any]
_RESOLVERS: list[CreatedApplications] = []
_DESCRIBERS: list[ApplicationDescriber] = []


def register_application_resolver(
    resolver: CreatedApplications, describer: ApplicationDescriber | None = None
) -> None:
    """Let :func:`execute_operations` find applications created on chain (idempotent)."""
    if resolver not in _RESOLVERS:
        _RESOLVERS.append(resolver)
    if describer is not None and describer not in _DESCRIBERS:
        _DESCRIBERS.append(describer)


def _created_application(
    state: ChainState, writes: WriteSet, app_id: bytes, description: Any = None
) -> tuple[ApplicationKind, Any] | None:
    for resolver in _RESOLVERS:
        found = resolver(ContractState(state, app_id, writes), app_id, description)
        if found is not None:
            return found
    return None


def _description(state: ContractState, app_id: bytes) -> Any:
    for describer in _DESCRIBERS:
        found = describer(state, app_id)
        if found is not None:
            return found
    return None


@functools.lru_cache(maxsize=1024)
def application_id(chain_id: bytes, kind_name: str) -> bytes:
    """The id of application ``kind_name`` on chain ``chain_id``."""
    return hash_value("app-id", [chain_id, kind_name])


def to_operation(app_id: bytes, operation: Operation | OperationPayload) -> Operation:
    """An :class:`Operation` from a typed operation (or an Operation, returned as is)."""
    if isinstance(operation, Operation):
        return operation
    return Operation(app_id, operation.operation_name, operation.to_payload())


def _kind_for(state: ChainState, writes: WriteSet, app_id: bytes) -> tuple[ApplicationKind, Any]:
    for name in known_application_kinds():
        if application_id(state.chain_id, name) == app_id:
            return application_kind(name), None
    created = _created_application(state, writes, app_id)
    if created is None:
        raise OperationRejected(f"no application {app_id.hex()[:16]} on this chain")
    return created


def call_application(
    ctx: OperationContext, state: ContractState, target: bytes, name: str, payload: Any
) -> Any:
    """Execute an operation of application ``target`` from inside another one's operation, in
    the same block and with its signer (Linera's ``call_application``); its response."""
    writes = state._writes
    kind, parameters = _kind_for(state._base, writes, target)
    target_ctx = OperationContext(
        ctx.chain_id, target, ctx.height, ctx.timestamp_us, ctx.signer, ctx.chain_owner,
        ctx.index, parameters, ctx.outbox,
    )  # fmt: skip
    return kind.contract.execute_operation(target_ctx, state.view_of(target), name, payload)


def send_message(
    ctx: OperationContext,
    state: ContractState,
    recipient: bytes,
    payload: Any,
    *,
    tracked: bool = False,
    authenticated: bool = False,
) -> None:
    """Send ``payload`` to this application on chain ``recipient`` (Linera's ``send_message``):
    it leaves with this block once certified (chain/messages.py). ``tracked``: if the
    recipient rejects it, it bounces back to this application's ``execute_message``;
    ``authenticated``: it carries this block's signer."""
    if ctx.outbox is None:
        raise OperationRejected("messages can only be sent while a block executes")
    if not (isinstance(recipient, bytes) and len(recipient) == 32):
        raise OperationRejected("a message's recipient is a 32-byte chain id")
    if len(ctx.outbox) >= MAX_OUTGOING:
        raise OperationRejected(f"a block sends at most {MAX_OUTGOING} messages")
    encode(payload)  # refuse what has no canonical encoding now, not when the block is built
    signer = None
    if authenticated:
        signer = ctx.message.signer if ctx.message is not None else ctx.signer
    ctx.outbox.append(
        _numbered(state, ctx.chain_id, Message(
            recipient, 0, ctx.app_id, payload, tracked, False, signer or None,
            _description(state, ctx.app_id),
        ))
    )  # fmt: skip


_STREAM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _check_stream(stream: Any) -> str:
    if not (isinstance(stream, str) and _STREAM_NAME.fullmatch(stream)):
        raise OperationRejected(f"stream name {stream!r}: 1 to 64 letters, digits, '_', '.' or '-'")
    return stream


def emit(ctx: OperationContext, state: ContractState, stream: str, value: Any) -> int:
    """Append ``value`` to this application's event stream ``stream`` on this chain (Linera's
    ``emit``); every chain that follows the stream receives it, in order. Its index."""
    if ctx.outbox is None:
        raise OperationRejected("events can only be emitted while a block executes")
    _check_stream(stream)
    encode(value)
    system = state.view_of(messaging_id(ctx.chain_id))
    key = stream_key(ctx.app_id, stream)
    index = system.get(key) or 0
    system.set(key, index + 1)
    system.set(f"{key}/{index}", value)
    for follower in system.get(f"{SUBSCRIBERS_PREFIX}{ctx.app_id.hex()}/{stream}") or []:
        _send_event(ctx, system, follower, ctx.app_id, stream, index, value)
    return index


def _send_event(
    ctx: OperationContext,
    system: ContractState,
    follower: bytes,
    app_id: bytes,
    stream: str,
    index: int,
    value: Any,
) -> None:
    if ctx.outbox is None or len(ctx.outbox) >= MAX_OUTGOING:
        raise OperationRejected(f"a block sends at most {MAX_OUTGOING} messages")
    event = Message(follower, 0, app_id, [stream, index, value], kind=EVENT)
    ctx.outbox.append(_numbered(system, ctx.chain_id, event))


def subscribe_to_events(
    ctx: OperationContext, state: ContractState, chain: bytes, stream: str
) -> None:
    """Follow this application's stream ``stream`` on chain ``chain`` (Linera's
    ``subscribe_to_events``): once that chain takes the request, every event of the stream,
    the past ones first, comes to this chain's ``process_streams``."""
    if ctx.outbox is None:
        raise OperationRejected("a subscription can only be made while a block executes")
    _check_stream(stream)
    if not (isinstance(chain, bytes) and len(chain) == 32) or chain == ctx.chain_id:
        raise OperationRejected("a subscription is to another chain's 32-byte id")
    request = Message(chain, 0, ctx.app_id, stream, kind=SUBSCRIBE)
    ctx.outbox.append(_numbered(state, ctx.chain_id, request))


def _subscribe(
    state: ChainState, writes: WriteSet, ctx: OperationContext, origin: bytes, app_id: bytes,
    stream: Any,
) -> None:  # fmt: skip
    """On the emitting chain: record ``origin`` as a follower and send it the past events."""
    _check_stream(stream)
    system = ContractState(state, messaging_id(state.chain_id), writes)
    followers_key = f"{SUBSCRIBERS_PREFIX}{app_id.hex()}/{stream}"
    followers = list(system.get(followers_key) or [])
    if origin in followers:
        return
    system.set(followers_key, [*followers, origin])
    key = stream_key(app_id, stream)
    for index in range(system.get(key) or 0):
        _send_event(ctx, system, origin, app_id, stream, index, system.get(f"{key}/{index}"))


def _numbered(state: ContractState, chain_id: bytes, message: Message) -> Message:
    """``message`` with the next sequence number from this chain to its recipient."""
    counters = state.view_of(messaging_id(chain_id))
    key = f"{OUTBOX_PREFIX}{message.recipient.hex()}"
    seq = counters.get(key) or 0
    counters.set(key, seq + 1)
    return Message(
        message.recipient, seq, message.app_id, message.payload, message.tracked,
        message.bouncing, message.signer, message.description, message.kind,
    )  # fmt: skip


def _receiving_kind(
    state: ChainState, writes: WriteSet, origin: bytes, message: Message
) -> tuple[ApplicationKind, Any, bytes]:
    """The application a message from ``origin`` is for on this chain: a built-in kind is the
    same kind here (its id is per chain), a created application has the same id everywhere."""
    for name in known_application_kinds():
        if message.app_id in (application_id(origin, name), application_id(state.chain_id, name)):
            return application_kind(name), None, application_id(state.chain_id, name)
    created = _created_application(state, writes, message.app_id, message.description)
    if created is None:
        raise OperationRejected(f"no application {message.app_id.hex()[:16]} on this chain")
    return created[0], created[1], message.app_id


def _execute_bundle(
    state: ChainState,
    writes: WriteSet,
    bundle: IncomingBundle,
    ctx: OperationContext,
) -> None:
    """Execute one incoming bundle's messages in order, each exactly once (its number is the
    next expected from its origin). A message its application rejects changes nothing but the
    counter; a tracked one bounces back."""
    chain_id = state.chain_id
    counters = ContractState(state, messaging_id(chain_id), writes)
    key = f"{INBOX_PREFIX}{bundle.origin.hex()}"
    expected = counters.get(key) or 0
    origin = bundle.origin.hex()[:16]
    for message in bundle.messages:
        if message.recipient != chain_id:
            raise OperationRejected(f"a bundle from {origin} holds a message for another chain")
        if message.seq != expected:
            raise OperationRejected(
                f"the bundle from {origin} (height {bundle.height}) has message {message.seq} "
                f"where {expected} is next: bundles are taken in order, each once"
            )
        expected += 1
        counters.set(key, expected)
        trial: WriteSet = dict(writes)
        sent: list[Message] = []
        try:
            kind, parameters, app_id = _receiving_kind(state, trial, bundle.origin, message)
            user = message.kind == USER
            info = MessageContext(
                bundle.origin, bundle.height, message.bouncing, message.signer if user else None
            )
            message_ctx = OperationContext(
                chain_id, app_id, ctx.height, ctx.timestamp_us, info.signer or b"",
                ctx.chain_owner, ctx.index, parameters, sent, info,
            )  # fmt: skip
            if not user:
                _execute_system_message(state, trial, message_ctx, kind, bundle.origin, message)
            elif (execute := getattr(kind.contract, "execute_message", None)) is None:
                raise OperationRejected(f"application {app_id.hex()[:16]} takes no messages")
            else:
                execute(message_ctx, ContractState(state, app_id, trial), message.payload)
        except ContractError:
            if message.tracked and not message.bouncing:
                bounced = Message(
                    bundle.origin, 0, message.app_id, message.payload, False, True,
                    message.signer, message.description,
                )  # fmt: skip
                assert ctx.outbox is not None
                ctx.outbox.append(_numbered(counters, chain_id, bounced))
            continue
        writes.clear()
        writes.update(trial)
        assert ctx.outbox is not None
        ctx.outbox.extend(sent)


def _execute_system_message(
    state: ChainState,
    writes: WriteSet,
    ctx: OperationContext,
    kind: ApplicationKind,
    origin: bytes,
    message: Message,
) -> None:
    if message.kind == SUBSCRIBE:
        _subscribe(state, writes, ctx, origin, ctx.app_id, message.payload)
        return
    payload = message.payload
    if not (isinstance(payload, list) and len(payload) == 3 and isinstance(payload[1], int)):
        raise OperationRejected("an event message is [stream, index, value]")
    process = getattr(kind.contract, "process_streams", None)
    if process is not None:  # an application that follows no stream ignores events
        update = StreamUpdate(origin, _check_stream(payload[0]), payload[1], payload[2])
        process(ctx, ContractState(state, ctx.app_id, writes), [update])


def execute_operations(
    state: ChainState,
    *,
    height: int,
    timestamp_us: int,
    signer: bytes,
    chain_owner: bytes,
    operations: tuple[Operation, ...] | list[Operation],
    responses: list[Any] | None = None,
    incoming: tuple[IncomingBundle, ...] | list[IncomingBundle] = (),
    outgoing: list[Message] | None = None,
) -> WriteSet:
    """Run a block: its incoming bundles' messages (chain/messages.py), then every operation
    through its contract; return the block's write set.

    ``state`` is not modified. A rejected operation rejects the whole block (the contract's
    ContractError propagates); a rejected message does not (it bounces if tracked). Each
    operation's response is appended to ``responses``, each message sent to ``outgoing``.
    """
    writes: WriteSet = {}
    outbox: list[Message] = [] if outgoing is None else outgoing
    block_ctx = OperationContext(
        state.chain_id, b"", height, timestamp_us, signer, chain_owner, 0, None, outbox
    )
    for bundle in incoming:
        _execute_bundle(state, writes, bundle, block_ctx)
    kinds = {application_id(state.chain_id, name): name for name in known_application_kinds()}
    for index, op in enumerate(operations):
        kind_name = kinds.get(op.app_id)
        parameters = None
        if kind_name is not None:
            kind = application_kind(kind_name)
        else:
            created = _created_application(state, writes, op.app_id)
            if created is None:
                raise OperationRejected(
                    f"operation {index} targets unknown application {op.app_id.hex()[:16]}"
                )
            kind, parameters = created
        ctx = OperationContext(
            state.chain_id, op.app_id, height, timestamp_us, signer, chain_owner, index,
            parameters, outbox,
        )  # fmt: skip
        response = kind.contract.execute_operation(
            ctx, ContractState(state, op.app_id, writes), op.name, op.payload
        )
        if responses is not None:
            responses.append(response)
    return writes


#: Write sets (and messages sent) of blocks executed in this process, by (state hash before,
#: block hash, chain owner). Execution is a pure function of those (contracts are
#: deterministic), so the in-process validators, each holding an equal copy of the state, share
#: one execution of a proposal; a replica whose state differs has another state hash and
#: executes for itself.
_EXECUTED: dict[tuple[bytes, bytes, bytes], tuple[WriteSet, tuple[Message, ...]]] = {}
_EXECUTED_MAX = 64
_executed_lock = threading.Lock()


def remember_execution(
    state_hash: bytes,
    block_hash: bytes,
    chain_owner: bytes,
    writes: WriteSet,
    sent: tuple[Message, ...] = (),
) -> None:
    """Record that the block ``block_hash`` executed on a state of hash ``state_hash`` writes
    ``writes`` and sends ``sent`` (which nobody may change afterwards)."""
    with _executed_lock:
        if len(_EXECUTED) >= _EXECUTED_MAX:
            del _EXECUTED[next(iter(_EXECUTED))]
        _EXECUTED[(state_hash, block_hash, chain_owner)] = (writes, sent)


@functools.lru_cache(maxsize=1024)
def _kinds_by_id(chain_id: bytes) -> dict[bytes, ApplicationKind]:
    """The registered kinds on ``chain_id`` by application id, built once per chain (a
    registration clears it); callers only read it."""
    return {application_id(chain_id, name): kind for name, kind in _KINDS.items()}


def _built_in_only(state: ChainState, block: Block) -> bool:
    """True when every operation runs a built-in kind's code, which is deterministic by
    construction, so one execution may serve every replica on an equal state. Code users wrote
    is executed by each validator for itself: a nondeterministic contract then shows as
    validators that disagree, and its block is not certified (docs/sdk.md)."""
    kinds = _kinds_by_id(state.chain_id)
    return all(
        (kind := kinds.get(op.app_id)) is not None and not kind.runs_user_code
        for op in block.operations
    )


def execute_block(
    state: ChainState, block: Block, chain_owner: bytes, block_hash: bytes | None = None
) -> WriteSet:
    """:func:`execute_operations` for a proposed or stored block (its height, timestamp,
    signer and operations), as a validator or a re-verification replays it. With the block's
    hash, a block this process executed on an equal state gives its remembered write set
    (read-only: the callers only apply it)."""
    key = None
    if block_hash is not None and not block.incoming and _built_in_only(state, block):
        key = (state.hash(), block_hash, chain_owner)
        known = _EXECUTED.get(key)
        if known is not None:
            _check_sent(known[1], block)
            return known[0]
    sent: list[Message] = []
    writes = execute_operations(
        state,
        height=block.height,
        timestamp_us=block.timestamp_us,
        signer=block.signer,
        chain_owner=chain_owner,
        operations=block.operations,
        incoming=block.incoming,
        outgoing=sent,
    )
    _check_sent(tuple(sent), block)
    if key is not None:
        remember_execution(*key, writes, tuple(sent))
    return writes


def _check_sent(sent: tuple[Message, ...], block: Block) -> None:
    if sent != block.outgoing:
        raise OperationRejected(
            f"executing the block sends {len(sent)} messages, not the {len(block.outgoing)} "
            "it records (or other ones)"
        )
