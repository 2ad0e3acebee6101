"""The model-registry application, written with edgechain.sdk like any user's application:
its ABI (:data:`ABI`: ``RegisterModel``, ``RetireModel``, contract/operations.py), its state
(:class:`RegistryState`), its contract (:class:`ModelRegistryContract`) and its service
(:class:`ModelRegistryService`, certified reads). The wiring layer runs it as the chain's
``model-registry`` kind (edgechain/applications.py); tests/test_layers.py checks that it names
nothing of the chain layer but the SDK.

State layout (in the application's namespace): one key per model version,
``model/<name>/<version>`` (the ``model`` map, keyed ``<name>/<version>``), holding the entry
map written by :meth:`ModelEntry.to_payload`, as before the registry ran on the SDK.

"Latest active version" of a name is its non-retired version registered at the greatest height.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any

from edgechain.contract.certified_model import CertifiedModel
from edgechain.contract.operations import (
    FileRef,
    NamedOperation,
    RegisterModel,
    RetireModel,
    check_utf8,
)
from edgechain.errors import ModelNotFound, ModelRetired, OperationRejected, Unauthorized
from edgechain.sdk import Abi, Contract, MapView, RegisterView, RootView, Service

__all__ = [
    "ABI",
    "APPLICATION_NAME",
    "CertifiedModel",
    "KEY_PREFIX",
    "ModelEntry",
    "ModelRegistryContract",
    "ModelRegistryService",
    "RegistryState",
    "manifest_blobs",
    "model_key",
]

APPLICATION_NAME = "model-registry"
KEY_PREFIX = "model/"


def model_key(name: str, version: str) -> str:
    return f"{KEY_PREFIX}{name}/{version}"


def _map_key(name: str, version: str) -> str:
    return f"{name}/{version}"


def _registration_fields(record: Any) -> dict[str, Any]:
    """The fields an entry shares with the operation that registered it (RegisterModel's)."""
    return {field.name: getattr(record, field.name) for field in fields(RegisterModel)}


@dataclass(frozen=True)
class ModelEntry:
    """A registered model version as certified state holds it."""

    name: str
    version: str
    format: str
    weights: FileRef
    tokenizer: FileRef
    description: str | None
    license: str | None
    registered_height: int
    registered_by: bytes
    retired_height: int | None = None

    @property
    def retired(self) -> bool:
        return self.retired_height is not None

    @property
    def current_height(self) -> int:
        """The height of the block that made this entry what it is now."""
        return self.registered_height if self.retired_height is None else self.retired_height

    @classmethod
    def registered(
        cls,
        registration: RegisterModel,
        height: int,
        by: bytes,
        retired_height: int | None = None,
    ) -> ModelEntry:
        """The entry ``registration`` makes in the block at ``height`` signed by ``by``."""
        return cls(
            **_registration_fields(registration),
            registered_height=height,
            registered_by=by,
            retired_height=retired_height,
        )

    @property
    def registration(self) -> RegisterModel:
        """The operation that registered this entry."""
        return RegisterModel(**_registration_fields(self))

    # The SDK's own-encoding hook (edgechain.sdk.abi): an entry is stored as it was before
    # the registry ran on the SDK, so existing chains keep their state hashes.
    def to_payload(self) -> dict[str, Any]:
        # The registration's fields as its operation's payload has them, and the chain's.
        return {
            **self.registration.to_payload(),
            "registered_height": self.registered_height,
            "registered_by": self.registered_by,
            "retired_height": self.retired_height,
        }

    @classmethod
    def from_payload(cls, value: dict[str, Any]) -> ModelEntry:
        registration = {field.name: value[field.name] for field in fields(RegisterModel)}
        return cls.registered(
            RegisterModel.from_payload(registration),
            value["registered_height"],
            value["registered_by"],
            value["retired_height"],
        )


@dataclass(frozen=True)
class FollowRegistry(NamedOperation):
    """Follow the registry of chain ``chain`` (hex id): every model it has certified, and each
    it registers or retires from then on, is certified on this chain too, so this chain's
    service answers ``generate`` for them from its own certified state."""

    chain: str

    def to_payload(self) -> dict[str, Any]:
        return {"chain": self.chain}

    @classmethod
    def from_payload(cls, payload: Any) -> FollowRegistry:
        if not (isinstance(payload, dict) and set(payload) == {"chain"}):
            raise OperationRejected("FollowRegistry takes chain")
        return cls(payload["chain"])

    def validate(self) -> None:
        if not (isinstance(self.chain, str) and _CHAIN_ID.fullmatch(self.chain)):
            raise OperationRejected("FollowRegistry.chain must be a chain id (64 hex digits)")


@dataclass(frozen=True)
class Follow:
    """The message a following registry sends to the one it follows."""


@dataclass(frozen=True)
class ModelUpdate:
    """The message a followed registry sends each follower: one entry as it now stands (its
    registration, or its retirement)."""

    entry: dict[str, Any]


ABI = Abi(
    operations=(RegisterModel, RetireModel, FollowRegistry), messages=(Follow, ModelUpdate)
)
_CHAIN_ID = re.compile(r"^[0-9a-f]{64}$")
#: The registry's stream, in the docs' words: one ModelUpdate per registration and retirement,
#: sent to every follower (as messages, so chains made before it keep their state hashes).
STREAM = "models"


class RegistryState(RootView):
    #: Every registered version, keyed ``<name>/<version>`` (stored at ``model/<name>/<version>``).
    model = MapView(ModelEntry)
    #: The chains following this registry: hex id -> the height this registry took the request.
    followers = MapView(int)
    #: The chain whose registry this one follows (hex id; empty: none).
    following = RegisterView(str, default="")


class ModelRegistryContract(Contract):
    """Deterministic: reads only its state and the runtime (the block, its signer, the blobs
    published on the chain)."""

    abi = ABI
    state_type = RegistryState
    state: RegistryState

    def execute_operation(self, operation: RegisterModel | RetireModel | FollowRegistry) -> None:
        runtime = self.runtime
        signer, owner = runtime.authenticated_signer, runtime.chain_owner
        if signer != owner:
            raise Unauthorized(
                f"{type(operation).__name__} must be signed by the chain owner {owner[:16]}, "
                f"not {signer[:16]}"
            )
        operation.validate()
        if isinstance(operation, RegisterModel):
            self._check_chunks_published(operation)
            self._register(operation)
        elif isinstance(operation, RetireModel):
            self._retire(operation)
        else:
            self._follow(operation)

    def execute_message(self, message: Follow | ModelUpdate) -> None:
        origin = self.runtime.message_origin_chain_id or ""
        if isinstance(message, Follow):
            if not self.state.followers.contains(origin):
                self.state.followers.insert(origin, self.runtime.block_height)
                for _, entry in self.state.model.items():  # what it has certified so far
                    self.runtime.send_message(origin, ModelUpdate(entry.to_payload()))
            return
        if origin != self.state.following.get():
            raise OperationRejected(f"this registry does not follow chain {origin[:16]}")
        self._certify_update(ModelEntry.from_payload(message.entry))

    def _follow(self, op: FollowRegistry) -> None:
        if op.chain == self.runtime.chain_id:
            raise OperationRejected("a registry cannot follow its own chain")
        if self.state.following.get():
            raise OperationRejected(
                f"this registry already follows chain {self.state.following.get()[:16]}"
            )
        self.state.following.set(op.chain)
        self.runtime.send_message(op.chain, Follow())

    def _certify_update(self, update: ModelEntry) -> None:
        """A followed registry's entry, certified here by this block: its heights are this
        chain's (the block that certifies it here)."""
        key = _map_key(update.name, update.version)
        here = self.state.model.get(key)
        height = self.runtime.block_height
        if here is None:
            here = replace(update, registered_height=height, retired_height=None)
        if update.retired and not here.retired:
            here = replace(here, retired_height=height)
        self.state.model.insert(key, here)

    def _announce(self, entry: ModelEntry) -> None:
        for follower, _ in self.state.followers.items():
            self.runtime.send_message(follower, ModelUpdate(entry.to_payload()))

    def _register(self, op: RegisterModel) -> None:
        key = _map_key(op.name, op.version)
        entry = self.state.model.get(key)
        if entry is not None:
            if _file_identity(entry) != _file_identity(op):
                raise OperationRejected(
                    f"model {op.name} version {op.version} is already registered with other "
                    "bytes; register a new version"
                )
            if entry.retired:
                raise OperationRejected(
                    f"model {op.name} version {op.version} was retired at height "
                    f"{entry.retired_height}; register a new version"
                )
            return  # same bytes again: nothing changes
        entry = ModelEntry.registered(
            op, self.runtime.block_height, bytes.fromhex(self.runtime.authenticated_signer)
        )
        self.state.model.insert(key, entry)
        self._announce(entry)

    def _retire(self, op: RetireModel) -> None:
        key = _map_key(op.name, op.version)
        entry = self.state.model.get(key)
        if entry is None:
            raise OperationRejected(f"model {op.name} version {op.version} is not registered")
        if entry.retired:
            raise OperationRejected(
                f"model {op.name} version {op.version} is already retired "
                f"(height {entry.retired_height})"
            )
        retired = replace(entry, retired_height=self.runtime.block_height)
        self.state.model.insert(key, retired)
        self._announce(retired)

    def _check_chunks_published(self, op: RegisterModel) -> None:
        """A manifest is certified only once every chunk it names is (chain/blobs.py)."""
        for what, file in (("weights", op.weights), ("tokenizer", op.tokenizer)):
            for index, (blob, size) in enumerate(file.chunks):
                published = self.runtime.data_blob_size(blob)
                if published is None:
                    raise OperationRejected(
                        f"{what}.chunks[{index}]: blob {blob.hex()[:16]} is not published on "
                        "this chain"
                    )
                if published != size:
                    raise OperationRejected(
                        f"{what}.chunks[{index}]: blob {blob.hex()[:16]} was published with "
                        f"{published} bytes, not {size}"
                    )


def manifest_blobs(payload: Any) -> list[bytes]:
    """The blobs a RegisterModel's manifests name (validators must hold them to vote)."""
    found = []
    for what in ("weights", "tokenizer"):
        file = payload.get(what) if isinstance(payload, dict) else None
        chunks = file.get("chunks") if isinstance(file, dict) else None
        for chunk in chunks if isinstance(chunks, list) else []:
            if isinstance(chunk, list) and chunk and isinstance(chunk[0], bytes):
                found.append(chunk[0])
    return found


def _file_identity(model: ModelEntry | RegisterModel) -> tuple[str, int, str, int]:
    """What "the same bytes" means: both files' hashes and sizes (URLs may differ)."""
    w, t = model.weights, model.tokenizer
    return (w.blake3, w.size, t.blake3, t.size)



class ModelRegistryService(Service):
    """Read-only queries over the registry's certified state (the node's GraphQL for it is
    edgechain/node/schema.py, over the client)."""

    state_type = RegistryState
    state: RegistryState

    @property
    def committee(self) -> Any:
        return self.runtime.committee

    def _certified(self, entry: ModelEntry) -> CertifiedModel:
        certified = self.runtime.certified_block(entry.current_height)
        return CertifiedModel(
            entry,
            self.chain_id,
            self.id,
            entry.current_height,
            certified.block_hash,
            certified.certificate,
        )

    def _versions(self, name: str) -> list[ModelEntry]:
        prefix = f"{name}/"
        models = self.state.model
        keys = models.keys()
        return [models.get(key) for key in keys if key.startswith(prefix)]

    def query_model(self, name: str, version: str | None = None) -> CertifiedModel:
        """A model by name (its latest active version) or by name and version.

        Raises :class:`ModelNotFound` if nothing matches, :class:`ModelRetired` if the version
        asked for (or every version of the name) is retired; :class:`InvalidText` for text that
        no entry could hold (not UTF-8).
        """
        check_utf8("model name", name)
        check_utf8("model version", version)
        if version is not None:
            entry = self.state.model.get(_map_key(name, version))
            if entry is None:
                versions = [e.version for e in self._versions(name)]
                if not versions:
                    raise ModelNotFound.unknown_name(name, self._names())
                raise ModelNotFound.unknown_version(name, version, versions)
            if entry.retired:
                raise ModelRetired(
                    f"model {name} version {version} was retired at height {entry.retired_height}"
                )
            return self._certified(entry)
        entries = self._versions(name)
        if not entries:
            raise ModelNotFound.unknown_name(name, self._names())
        active = [e for e in entries if not e.retired]
        if not active:
            raise ModelRetired(f"every version of model {name} is retired")
        return self._certified(max(active, key=lambda e: e.registered_height))

    def _names(self) -> list[str]:
        """Every registered model name (for an error that lists them)."""
        return [entry.name for _, entry in self.state.model.items()]

    def list_models(self, include_retired: bool = True) -> list[CertifiedModel]:
        """Every registered model version, sorted by name then registration height."""
        entries = [entry for _, entry in self.state.model.items()]
        if not include_retired:
            entries = [e for e in entries if not e.retired]
        entries.sort(key=lambda e: (e.name, e.registered_height, e.version))
        return [self._certified(e) for e in entries]
