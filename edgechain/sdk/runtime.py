"""The runtime: an application's only door to the outside (Linera's ``ContractRuntime`` and
``ServiceRuntime``).

A contract sees the block that executes it (chain, height, the block's timestamp, who signed)
and its creation parameters, and may call another application of the same chain in the same
block and read the model registry's certified entries. Nothing else: no clock, no randomness,
no I/O (docs/sdk.md). A service reads certified state and may do what a query may: fetch a URL
under the allow-list, list certified models, run ``generate``, and schedule operations for the
next block (what a GraphQL mutation does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from edgechain.chain.application import (
    ContractState,
    OperationContext,
    ServiceContext,
    call_application,
    emit,
    send_message,
    subscribe_to_events,
)
from edgechain.chain.application import application_id as builtin_application_id
from edgechain.chain.blobs import published_record
from edgechain.errors import OperationRejected
from edgechain.sdk.abi import Abi, decode, encode

__all__ = [
    "CertifiedModelInfo",
    "ContractRuntime",
    "ServiceHost",
    "ServiceRuntime",
    "StreamUpdate",
]


@dataclass(frozen=True)
class CertifiedModelInfo:
    """A model version as the registry's certified state holds it."""

    name: str
    version: str
    weights_blake3: str
    tokenizer_blake3: str
    retired: bool


#: The model registry's kind name and where its state keeps an entry (contract/registry.py, an
#: SDK application itself: the SDK reads its stored entry maps rather than import it).
REGISTRY = "model-registry"
_MODEL_PREFIX = "model/"


def _models(state: Any) -> list[CertifiedModelInfo]:
    found = []
    for key in state.keys(_MODEL_PREFIX):
        entry = state.get(key)
        found.append(
            CertifiedModelInfo(
                entry["name"], entry["version"], entry["weights"]["blake3"],
                entry["tokenizer"]["blake3"], entry["retired_height"] is not None,
            )
        )  # fmt: skip
    return found


@dataclass(frozen=True)
class StreamUpdate:
    """One event of a stream this application follows: the ``index``-th of ``stream``, emitted
    by this application on chain ``chain_id``."""

    chain_id: str
    stream: str
    index: int
    value: Any


class _ApplicationRuntime:
    """What both runtimes say about the application they run: its chain, its id and its
    parameters (decoded with its ABI)."""

    def __init__(self, chain_id: bytes, app_id: bytes, parameters: Any, abi: Abi) -> None:
        self._chain_id = chain_id
        self._app_id = app_id
        self._parameters = parameters
        self._abi = abi

    @property
    def chain_id(self) -> str:
        return self._chain_id.hex()

    @property
    def application_id(self) -> str:
        return self._app_id.hex()

    @property
    def application_parameters(self) -> Any:
        return decode(self._abi.parameters, self._parameters, "parameters")

    def _registry_id(self) -> bytes:
        """The id of this chain's model registry (whose entries both runtimes read)."""
        return builtin_application_id(self._chain_id, REGISTRY)


class ContractRuntime(_ApplicationRuntime):
    """What a contract may know and do while its block executes."""

    def __init__(
        self, ctx: OperationContext, state: ContractState, abi: Abi, payload: Any = None
    ) -> None:
        super().__init__(ctx.chain_id, ctx.app_id, ctx.parameters, abi)
        self._ctx = ctx
        self._state = state
        self._payload = payload

    @property
    def block_height(self) -> int:
        return self._ctx.height

    @property
    def system_time_us(self) -> int:
        """The block's timestamp (microseconds): the one clock every validator agrees on."""
        return self._ctx.timestamp_us

    @property
    def authenticated_signer(self) -> str | None:
        """Who signed the block (hex public key); for a message, the sending block's signer if
        the message is authenticated, else None."""
        return self._ctx.signer.hex() or None

    @property
    def chain_owner(self) -> str:
        return self._ctx.chain_owner.hex()

    def call_application(self, application: str | bytes, operation: Any) -> Any:
        """Execute ``operation`` (its dataclass) on another application of this chain, in this
        block, signed as this block is (Linera's ``call_application``); its response."""
        target = application if isinstance(application, bytes) else bytes.fromhex(application)
        return call_application(
            self._ctx, self._state, target, type(operation).__name__, encode(operation)
        )

    def data_blob_size(self, blob_id: bytes) -> int | None:
        """The size of data blob ``blob_id`` if it is published on this chain, as this block
        sees it (Linera's ``assert_data_blob_exists``); None if it is not."""
        record = published_record(self._state, blob_id)
        return None if record is None else record["size"]

    def oracle_response(self) -> Any:
        """The model oracle's response for the operation being executed (Linera's
        ``query_service``, as the block records it): the proposer ran the generation and
        every validator re-executed or verified it with its own engine before voting
        (chain/oracle.py), so the contract stores it without running a model. None when the
        operation records none."""
        payload = self._payload
        return payload.get("oracle") if isinstance(payload, dict) else None

    def send_message(
        self,
        destination: str | bytes,
        message: Any,
        *,
        tracked: bool = False,
        authenticated: bool = False,
    ) -> None:
        """Send ``message`` (one of the ABI's messages) to this application on chain
        ``destination`` (Linera's ``prepare_message(m).with_tracking().with_authentication()
        .send_to(chain)``). It leaves once this block is certified and runs in the recipient's
        ``execute_message`` when that chain takes its inbox. ``tracked``: if the recipient
        rejects it, it comes back here with :attr:`message_is_bouncing` set; ``authenticated``:
        the recipient sees this block's signer as :attr:`authenticated_signer`."""
        chain = _chain_bytes(destination, "send_message")
        payload = self._abi.encode_message(message)
        send_message(
            self._ctx, self._state, chain, payload, tracked=tracked, authenticated=authenticated
        )

    def emit(self, stream: str, value: Any) -> int:
        """Append ``value`` (a dataclass of the ABI, or plain data) to this application's event
        stream ``stream`` on this chain; every chain following it receives it in its
        ``process_streams``, in order. The event's index in the stream."""
        return emit(self._ctx, self._state, stream, encode(value))

    def subscribe_to_events(self, chain_id: str | bytes, stream: str) -> None:
        """Follow this application's stream ``stream`` on chain ``chain_id``: every event of
        it, the past ones first, then each new one, reaches this chain's ``process_streams``
        (once that chain has taken the request from its inbox, and this chain the events)."""
        emitter = _chain_bytes(chain_id, "subscribe_to_events")
        subscribe_to_events(self._ctx, self._state, emitter, stream)

    @property
    def message_origin_chain_id(self) -> str | None:
        """While a message executes: the chain that sent it (else None)."""
        info = self._ctx.message
        return None if info is None else info.origin.hex()

    @property
    def message_is_bouncing(self) -> bool | None:
        """While a message executes: True when it is one this application sent, coming back
        rejected (else False; None outside a message)."""
        info = self._ctx.message
        return None if info is None else info.is_bouncing

    def certified_models(self) -> list[CertifiedModelInfo]:
        """The model registry's entries as this block sees them."""
        return _models(self._state.view_of(self._registry_id()))

    def certified_model(self, name: str, version: str) -> CertifiedModelInfo | None:
        return next(
            (m for m in self.certified_models() if (m.name, m.version) == (name, version)), None
        )


def _chain_bytes(chain: str | bytes, what: str) -> bytes:
    try:
        return chain if isinstance(chain, bytes) else bytes.fromhex(chain)
    except (ValueError, TypeError):
        raise OperationRejected(f"{what}: {chain!r} is not a chain id") from None


class ServiceHost(Protocol):
    """What the client gives a service: the registry's certified models, generation, fetches."""

    def models(self) -> list[Any]: ...

    def generate_text(self, model: str, prompt: str, **parameters: Any) -> Any: ...

    def fetch(self, url: str, expected_blake3: str) -> bytes: ...


class ServiceRuntime(_ApplicationRuntime):
    """What a service may know and do while it answers a query (read-only)."""

    def __init__(
        self, context: ServiceContext, parameters: Any, abi: Abi, host: ServiceHost | None
    ) -> None:
        super().__init__(context.chain_id, context.app_id, parameters, abi)
        self._context = context
        self._host = host
        #: Operations a mutation scheduled: the client proposes them in one block afterwards.
        self.scheduled: list[Any] = []

    def certified_block(self, height: int) -> Any:
        """The certified block at ``height`` (``.block_hash``, ``.certificate``): what a
        service shows beside the state a block made (the model registry's entries)."""
        return self._context.certified_block(height)

    @property
    def committee(self) -> Any:
        """The chain's committee (who certifies its blocks)."""
        return self._context.committee

    def schedule_operation(self, operation: Any) -> None:
        """Have ``operation`` (one of the ABI's) executed in a block after this query."""
        self._abi.operation_type(type(operation).__name__)
        self.scheduled.append(operation)

    def certified_models(self) -> list[CertifiedModelInfo]:
        """The model registry's certified entries on this chain."""
        return _models(self._context.state.reader_of(self._registry_id()))

    def generate(self, model: str, prompt: str, **parameters: Any) -> Any:
        """Run the model registry's ``generate`` (certified model, verified weights, derived
        seed unless given): the final GenerationRecord (``.text``, ``.prompt``, ``.seed``)."""
        return self._need_host().generate_text(model, prompt, **parameters)

    def fetch_url(self, url: str, expected_blake3: str) -> bytes:
        """Bytes of ``url`` under the allow-list, only if their BLAKE3 is ``expected_blake3``."""
        return self._need_host().fetch(url, expected_blake3)

    def _need_host(self) -> ServiceHost:
        if self._host is None:
            from edgechain.errors import UsageError

            raise UsageError("this service runs without a host: generate and fetch_url need one")
        return self._host
