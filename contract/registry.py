"""The model-registry application: its contract (on chain) and its service (certified reads).

State layout (in the application's namespace): one key per model version,
``model/<name>/<version>``, holding the entry map written by :meth:`ModelEntry.to_value`.

"Latest active version" of a name is its non-retired version registered at the greatest height.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgechain.chain.application import (
    ApplicationKind,
    ContractState,
    OperationContext,
    ServiceContext,
)
from edgechain.chain.blobs import published_record, register_blob_references
from edgechain.chain.certificate import Certificate, verify_certificate
from edgechain.chain.committee import Committee
from edgechain.contract.operations import FileRef, RegisterModel, RetireModel, check_utf8
from edgechain.errors import (
    CertificateError,
    ModelNotFound,
    ModelRetired,
    OperationRejected,
    Unauthorized,
)

APPLICATION_NAME = "model-registry"
KEY_PREFIX = "model/"


def model_key(name: str, version: str) -> str:
    return f"{KEY_PREFIX}{name}/{version}"


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

    def to_value(self) -> dict[str, Any]:
        # The registration's fields as its operation's payload has them, and the chain's.
        registration = RegisterModel(
            self.name,
            self.version,
            self.weights,
            self.tokenizer,
            self.format,
            self.description,
            self.license,
        )
        return {
            **registration.to_payload(),
            "registered_height": self.registered_height,
            "registered_by": self.registered_by,
            "retired_height": self.retired_height,
        }

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> ModelEntry:
        return cls(
            name=value["name"],
            version=value["version"],
            format=value["format"],
            weights=FileRef.from_payload(value["weights"], "weights"),
            tokenizer=FileRef.from_payload(value["tokenizer"], "tokenizer"),
            description=value["description"],
            license=value["license"],
            registered_height=value["registered_height"],
            registered_by=value["registered_by"],
            retired_height=value["retired_height"],
        )


class ModelRegistryContract:
    """Deterministic: reads only its state and the operation context."""

    def execute_operation(
        self, ctx: OperationContext, state: ContractState, name: str, payload: Any
    ) -> None:
        if name == RegisterModel.operation_name:
            op: RegisterModel | RetireModel = RegisterModel.from_payload(payload)
        elif name == RetireModel.operation_name:
            op = RetireModel.from_payload(payload)
        else:
            raise OperationRejected(f"model-registry has no operation {name!r}")
        if not ctx.signed_by_owner:
            raise Unauthorized(
                f"{name} must be signed by the chain owner {ctx.chain_owner.hex()[:16]}, "
                f"not {ctx.signer.hex()[:16]}"
            )
        op.validate()
        if isinstance(op, RegisterModel):
            _check_chunks_published(state, op)
            self._register(ctx, state, op)
        else:
            self._retire(ctx, state, op)

    def _register(self, ctx: OperationContext, state: ContractState, op: RegisterModel) -> None:
        key = model_key(op.name, op.version)
        existing = state.get(key)
        if existing is not None:
            entry = ModelEntry.from_value(existing)
            same_bytes = _file_identity(entry) == _file_identity(op)
            if not same_bytes:
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
        entry = ModelEntry(
            name=op.name,
            version=op.version,
            format=op.format,
            weights=op.weights,
            tokenizer=op.tokenizer,
            description=op.description,
            license=op.license,
            registered_height=ctx.height,
            registered_by=ctx.signer,
        )
        state.set(key, entry.to_value())

    def _retire(self, ctx: OperationContext, state: ContractState, op: RetireModel) -> None:
        key = model_key(op.name, op.version)
        existing = state.get(key)
        if existing is None:
            raise OperationRejected(f"model {op.name} version {op.version} is not registered")
        entry = ModelEntry.from_value(existing)
        if entry.retired:
            raise OperationRejected(
                f"model {op.name} version {op.version} is already retired "
                f"(height {entry.retired_height})"
            )
        value = entry.to_value()
        value["retired_height"] = ctx.height
        state.set(key, value)


def _check_chunks_published(state: ContractState, op: RegisterModel) -> None:
    """A manifest is certified only once every chunk it names is (chain/blobs.py)."""
    for what, file in (("weights", op.weights), ("tokenizer", op.tokenizer)):
        for index, (blob, size) in enumerate(file.chunks):
            record = published_record(state, blob)
            if record is None:
                raise OperationRejected(
                    f"{what}.chunks[{index}]: blob {blob.hex()[:16]} is not published on this chain"
                )
            if record["size"] != size:
                raise OperationRejected(
                    f"{what}.chunks[{index}]: blob {blob.hex()[:16]} was published with "
                    f"{record['size']} bytes, not {size}"
                )


def _manifest_blobs(payload: Any) -> list[bytes]:
    """The blobs a RegisterModel's manifests name (validators must hold them to vote)."""
    found = []
    for what in ("weights", "tokenizer"):
        file = payload.get(what) if isinstance(payload, dict) else None
        chunks = file.get("chunks") if isinstance(file, dict) else None
        for chunk in chunks if isinstance(chunks, list) else []:
            if isinstance(chunk, list) and chunk and isinstance(chunk[0], bytes):
                found.append(chunk[0])
    return found


register_blob_references(RegisterModel.operation_name, _manifest_blobs)


def _file_identity(model: ModelEntry | RegisterModel) -> tuple[str, int, str, int]:
    """What "the same bytes" means: both files' hashes and sizes (URLs may differ)."""
    w, t = model.weights, model.tokenizer
    return (w.blake3, w.size, t.blake3, t.size)


@dataclass(frozen=True)
class CertifiedModel:
    """A model entry read from certified state, with the block and certificate behind it.

    ``height``/``block_hash``/``certificate`` are those of the block that made the entry current
    (its registration, or its retirement). A service derives seeds from ``chain_id``,
    ``block_hash`` and ``app_id``.
    """

    entry: ModelEntry
    chain_id: bytes
    app_id: bytes
    height: int
    block_hash: bytes
    certificate: Certificate

    def verify(self, committee: Committee) -> None:
        """Check the certificate against ``committee`` and that it certifies ``block_hash``."""
        verify_certificate(self.certificate, committee)
        if (self.certificate.block_hash, self.certificate.height, self.certificate.chain_id) != (
            self.block_hash,
            self.height,
            self.chain_id,
        ):
            raise CertificateError(
                f"the certificate does not certify model {self.entry.name} at height {self.height}"
            )

    def to_json(self) -> dict[str, Any]:
        """The one JSON shape of a certified model (the CLI's ``--json``, the node's SSE
        ``done`` record; GraphQL's ``Model`` has the same fields, camelCase, with ``height``
        for ``certificate_height`` and ``retired`` for ``status``): the entry, files as
        ``FileRef.to_json``, and the certificate that made it current."""
        entry = self.entry
        return {
            "name": entry.name,
            "version": entry.version,
            "format": entry.format,
            "description": entry.description,
            "license": entry.license,
            "weights": entry.weights.to_json(),
            "tokenizer": entry.tokenizer.to_json(),
            "registered_height": entry.registered_height,
            "registered_by": entry.registered_by.hex(),
            "retired_height": entry.retired_height,
            "status": "retired" if entry.retired else "active",
            "chain_id": self.chain_id.hex(),
            "application_id": self.app_id.hex(),
            "certificate_height": self.height,
            "block_hash": self.block_hash.hex(),
            "signers": list(self.certificate.signers),
        }


class ModelRegistryService:
    """Read-only queries over the registry's certified state."""

    def __init__(self, context: ServiceContext) -> None:
        self._ctx = context
        self.id = context.app_id
        self.chain_id = context.chain_id
        self.committee = context.committee

    def _certified(self, value: dict[str, Any]) -> CertifiedModel:
        entry = ModelEntry.from_value(value)
        certified = self._ctx.certified_block(entry.current_height)
        return CertifiedModel(
            entry,
            self.chain_id,
            self.id,
            entry.current_height,
            certified.block_hash,
            certified.certificate,
        )

    def query_model(self, name: str, version: str | None = None) -> CertifiedModel:
        """A model by name (its latest active version) or by name and version.

        Raises :class:`ModelNotFound` if nothing matches, :class:`ModelRetired` if the version
        asked for (or every version of the name) is retired; :class:`InvalidText` for text that
        no entry could hold (not UTF-8).
        """
        check_utf8("model name", name)
        check_utf8("model version", version)
        state = self._ctx.state
        if version is not None:
            value = state.get(model_key(name, version))
            if value is None:
                versions = [state.get(k)["version"] for k in state.keys(f"{KEY_PREFIX}{name}/")]
                if not versions:
                    raise ModelNotFound.unknown_name(name, self._names())
                raise ModelNotFound.unknown_version(name, version, versions)
            if value["retired_height"] is not None:
                raise ModelRetired(
                    f"model {name} version {version} was retired at height "
                    f"{value['retired_height']}"
                )
            return self._certified(value)
        values = [state.get(k) for k in state.keys(f"{KEY_PREFIX}{name}/")]
        if not values:
            raise ModelNotFound.unknown_name(name, self._names())
        active = [v for v in values if v["retired_height"] is None]
        if not active:
            raise ModelRetired(f"every version of model {name} is retired")
        return self._certified(max(active, key=lambda v: v["registered_height"]))

    def _names(self) -> list[str]:
        """Every registered model name (for an error that lists them)."""
        state = self._ctx.state
        return [state.get(k)["name"] for k in state.keys(KEY_PREFIX)]

    def list_models(self, include_retired: bool = True) -> list[CertifiedModel]:
        """Every registered model version, sorted by name then registration height."""
        state = self._ctx.state
        values = [state.get(k) for k in state.keys(KEY_PREFIX)]
        if not include_retired:
            values = [v for v in values if v["retired_height"] is None]
        values.sort(key=lambda v: (v["name"], v["registered_height"], v["version"]))
        return [self._certified(v) for v in values]


MODEL_REGISTRY = ApplicationKind(
    name=APPLICATION_NAME,
    contract=ModelRegistryContract(),
    service_factory=ModelRegistryService,
)
