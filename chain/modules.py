"""Applications users write: modules published as blobs, applications created from them.

As in Linera, an application is first published as a **module** (its code, here the Python
source files of an application written with the SDK, each stored as a data blob; the module id is
the hash of its file list), then **created**: a ``CreateApplication`` operation names the
module, the application's parameters and its instantiation argument, and the application id
comes from the creating block (``H(module, chain, height, operation index)``). Both operations
belong to the ``applications`` system application, whose state records every module and
application of the chain (``module/<hex>``, ``app/<hex>``).

Executing an operation for a created application loads its code from the certified blobs of its
module (never from a user's working tree): the wiring layer registers the loader
(:func:`register_module_loader`, the SDK's), and the bytes come from the stores of the open
networks (:func:`register_blob_source`), checked against their ids. Code is content-addressed,
so a module loaded once serves every network of the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from edgechain.chain.application import (
    ApplicationKind,
    BuiltInService,
    ContractState,
    NamedOperation,
    OperationContext,
    ServiceContext,
    application_id,
    register_application_resolver,
)
from edgechain.chain.blobs import blob_id, published_record, register_blob_references
from edgechain.chain.block import Block
from edgechain.chain.encoding import hash_value
from edgechain.errors import OperationRejected, StorageCorrupted, Unauthorized

APPLICATION_NAME = "applications"
MODULE_PREFIX = "module/"
APP_PREFIX = "app/"
#: What a module may hold: Python sources in a package, at most this many, each under its policy's
#: blob size (the blobs hold them).
MAX_MODULE_FILES = 64
_PATH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_/.")


def applications_app_id(chain_id: bytes) -> bytes:
    return application_id(chain_id, APPLICATION_NAME)


def module_id(files: Sequence[tuple[str, bytes, int]]) -> bytes:
    """A module's id: the hash of its (path, blob id, size) list, in path order."""
    return hash_value("module-id", [[path, blob, size] for path, blob, size in files])


def created_application_id(module: bytes, chain_id: bytes, height: int, index: int) -> bytes:
    """The id of the application a block's operation ``index`` creates from ``module``."""
    return hash_value("app-id", ["created", module, chain_id, height, index])


def check_module_path(path: str) -> None:
    """A module file's path: relative, ``/``-separated, ``.py``, no ``..`` (OperationRejected)."""
    parts = path.split("/")
    if (
        not path.endswith(".py")
        or not set(path) <= _PATH_CHARS
        or any(part in ("", ".", "..") for part in parts)
        or not all(part[0].isalpha() or part[0] == "_" for part in parts)
    ):
        raise OperationRejected(
            f"module file {path!r}: a relative path of Python identifiers ending in .py"
        )


@dataclass(frozen=True)
class PublishModule(NamedOperation):
    """Record a module: its files, each already published as a blob (PublishDataBlob)."""

    files: tuple[tuple[str, bytes, int], ...]

    def to_payload(self) -> dict[str, Any]:
        return {"files": [[path, blob, size] for path, blob, size in self.files]}

    @classmethod
    def from_payload(cls, payload: Any) -> PublishModule:
        files = payload.get("files") if isinstance(payload, dict) and len(payload) == 1 else None
        if not isinstance(files, list) or not 1 <= len(files) <= MAX_MODULE_FILES:
            raise OperationRejected(
                f"PublishModule needs files: a list of 1 to {MAX_MODULE_FILES} [path, blob, size]"
            )
        parsed = []
        for item in files:
            if not (
                isinstance(item, list)
                and len(item) == 3
                and isinstance(item[0], str)
                and isinstance(item[1], bytes)
                and len(item[1]) == 32
                and isinstance(item[2], int)
                and not isinstance(item[2], bool)
                and item[2] >= 0
            ):
                raise OperationRejected("PublishModule.files: each is [path, 32-byte blob, size]")
            check_module_path(item[0])
            parsed.append((item[0], item[1], item[2]))
        paths = [path for path, _, _ in parsed]
        if paths != sorted(set(paths)):
            raise OperationRejected("PublishModule.files: paths sorted, each once")
        if "__init__.py" not in paths:
            raise OperationRejected("PublishModule.files: a module needs its __init__.py")
        return cls(tuple(parsed))

    @property
    def id(self) -> bytes:
        return module_id(self.files)


@dataclass(frozen=True)
class CreateApplication(NamedOperation):
    """Create an application from a published module, with its parameters and instantiation
    argument (canonically encodable values: the SDK encodes the ABI's dataclasses)."""

    module: bytes
    parameters: Any = None
    argument: Any = None

    def to_payload(self) -> dict[str, Any]:
        return {"module": self.module, "parameters": self.parameters, "argument": self.argument}

    @classmethod
    def from_payload(cls, payload: Any) -> CreateApplication:
        if not (isinstance(payload, dict) and set(payload) == {"module", "parameters", "argument"}):
            raise OperationRejected("CreateApplication needs exactly module, parameters, argument")
        module = payload["module"]
        if not (isinstance(module, bytes) and len(module) == 32):
            raise OperationRejected("CreateApplication.module must be a 32-byte module id")
        return cls(module, payload["parameters"], payload["argument"])


@dataclass(frozen=True)
class UseApplication(NamedOperation):
    """Let this chain run an application created on another chain (Linera loads it from its
    description blob): the block carries the description, which execution checks against the
    application's id, and validators against the creator's certified block
    (:func:`check_used_application`). The application's state here starts empty; it is not
    instantiated again."""

    application: bytes
    creator: bytes  # the chain whose block created it
    height: int
    index: int  # the creating operation's position in that block
    files: tuple[tuple[str, bytes, int], ...]
    parameters: Any = None

    @property
    def module(self) -> bytes:
        return module_id(self.files)

    def to_payload(self) -> dict[str, Any]:
        """Every field by name (what :meth:`from_payload` takes back), the files as lists."""
        return {**asdict(self), "files": [[path, blob, size] for path, blob, size in self.files]}

    @classmethod
    def from_payload(cls, payload: Any) -> UseApplication:
        names = {field.name for field in fields(cls)}
        if not (isinstance(payload, dict) and set(payload) == names):
            raise OperationRejected(f"UseApplication needs exactly {', '.join(sorted(names))}")
        ids = (payload["application"], payload["creator"])
        if not all(isinstance(v, bytes) and len(v) == 32 for v in ids):
            raise OperationRejected("UseApplication.application and .creator are 32-byte ids")
        numbers = (payload["height"], payload["index"])
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in numbers):
            raise OperationRejected("UseApplication.height and .index are integers >= 0")
        files = PublishModule.from_payload({"files": payload["files"]}).files
        used = cls(*ids, *numbers, files, payload["parameters"])
        if created_application_id(used.module, used.creator, used.height, used.index) != (
            used.application
        ):
            raise OperationRejected("UseApplication: that is not the application's description")
        return used


def check_used_application(
    payload: Any, certified_block: Callable[[bytes, int], Block | None]
) -> None:
    """Raise OperationRejected unless a UseApplication ``payload`` describes the application
    its creator's certified block created (same module, same parameters).
    ``certified_block(chain, height)`` gives a block checked against its certificate."""
    used = UseApplication.from_payload(payload)
    block = certified_block(used.creator, used.height)
    label = f"application {used.application.hex()[:16]}"
    if block is None or used.index >= len(block.operations):
        raise OperationRejected(f"{label}: its creator has no such certified block or operation")
    creating = block.operations[used.index]
    if (creating.app_id, creating.name) != (
        applications_app_id(used.creator),
        CreateApplication.operation_name,
    ):
        raise OperationRejected(f"{label}: that operation does not create an application")
    created = CreateApplication.from_payload(creating.payload)
    if (created.module, created.parameters) != (used.module, used.parameters):
        raise OperationRejected(f"{label}: its module or parameters are not the ones created")


# --- loading code ------------------------------------------------------------------------------

#: ``loader(module id, {path: source bytes}) -> LoadedModule``, registered by the SDK.
ModuleLoader = Callable[[bytes, dict[str, bytes]], "LoadedModule"]


class LoadedModule:
    """What a module's code provides the chain: a contract per application, and a service."""

    def contract(self, parameters: Any) -> Any:  # an application.Contract
        raise NotImplementedError

    def instantiate(self, ctx: OperationContext, state: ContractState, argument: Any) -> None:
        raise NotImplementedError

    def service(self, context: ServiceContext, parameters: Any) -> Any:
        raise NotImplementedError


_loader: ModuleLoader | None = None
_sources: list[Callable[[bytes], bytes | None]] = []
_loaded: dict[bytes, LoadedModule] = {}
_guard = threading.Lock()


def register_module_loader(loader: ModuleLoader) -> None:
    global _loader
    _loader = loader


def register_blob_source(source: Callable[[bytes], bytes | None]) -> None:
    """Let modules be loaded from the blobs ``source`` returns (an open network's store)."""
    with _guard:
        if source not in _sources:
            _sources.append(source)


def unregister_blob_source(source: Callable[[bytes], bytes | None]) -> None:
    with _guard:
        if source in _sources:
            _sources.remove(source)


def _blob_bytes(blob: bytes) -> bytes:
    with _guard:
        sources = list(_sources)
    for source in sources:
        data = source(blob)
        if data is not None and blob_id(data) == blob:
            return data
    raise StorageCorrupted(f"module blob {blob.hex()[:16]} is not stored: its code cannot load")


def load_module(module: bytes, files: Sequence[tuple[str, bytes, int]]) -> LoadedModule:
    """The code of ``module`` (whose certified file list is ``files``), loaded once."""
    with _guard:
        loaded = _loaded.get(module)
    if loaded is not None:
        return loaded
    if _loader is None:
        raise OperationRejected("no module loader is registered: applications cannot run")
    sources = {path: _blob_bytes(blob) for path, blob, _ in files}
    loaded = _loader(module, sources)
    with _guard:
        return _loaded.setdefault(module, loaded)


# --- the system application ----------------------------------------------------------------------


def _record(state: ContractState, key: str) -> Any:
    return state.view_of(applications_app_id(state.chain_id)).get(key)


def module_record(state: ContractState, module: bytes) -> dict[str, Any] | None:
    return _record(state, f"{MODULE_PREFIX}{module.hex()}")


def application_record(state: ContractState, app_id: bytes) -> dict[str, Any] | None:
    return _record(state, f"{APP_PREFIX}{app_id.hex()}")


def _files(record: dict[str, Any]) -> list[tuple[str, bytes, int]]:
    return [(path, blob, size) for path, blob, size in record["files"]]


class ApplicationsContract:
    """Records modules and creates applications (the chain owner's operations)."""

    def execute_operation(
        self, ctx: OperationContext, state: ContractState, name: str, payload: Any
    ) -> Any:
        if not ctx.signed_by_owner:
            raise Unauthorized(f"{name} must be signed by the chain owner")
        if name == PublishModule.operation_name:
            return self._publish(ctx, state, PublishModule.from_payload(payload))
        if name == CreateApplication.operation_name:
            return self._create(ctx, state, CreateApplication.from_payload(payload))
        if name == UseApplication.operation_name:
            return self._use(state, UseApplication.from_payload(payload))
        raise OperationRejected(f"applications has no operation {name!r}")

    def _publish(self, ctx: OperationContext, state: ContractState, op: PublishModule) -> bytes:
        for path, blob, size in op.files:
            record = published_record(state, blob)
            if record is None or record["size"] != size:
                raise OperationRejected(
                    f"module file {path}: blob {blob.hex()[:16]} is not published with {size} bytes"
                )
        key = f"{MODULE_PREFIX}{op.id.hex()}"
        if state.get(key) is None:
            state.set(key, {"files": op.to_payload()["files"], "height": ctx.height})
        return op.id

    def _use(self, state: ContractState, op: UseApplication) -> bytes:
        if state.get(f"{APP_PREFIX}{op.application.hex()}") is None:
            description = {"module": op.module, "files": op.to_payload()["files"],
                           "parameters": op.parameters}  # fmt: skip
            _learn(state, op.application, description)
        return op.application

    def _create(self, ctx: OperationContext, state: ContractState, op: CreateApplication) -> bytes:
        record = state.get(f"{MODULE_PREFIX}{op.module.hex()}")
        if record is None:
            raise OperationRejected(f"module {op.module.hex()[:16]} is not published on this chain")
        app_id = created_application_id(op.module, ctx.chain_id, ctx.height, ctx.index)
        state.set(
            f"{APP_PREFIX}{app_id.hex()}",
            {"module": op.module, "parameters": op.parameters, "height": ctx.height},
        )
        loaded = load_module(op.module, _files(record))
        app_ctx = OperationContext(
            ctx.chain_id, app_id, ctx.height, ctx.timestamp_us, ctx.signer, ctx.chain_owner,
            ctx.index, op.parameters,
        )  # fmt: skip
        loaded.instantiate(app_ctx, state.view_of(app_id), op.argument)
        return app_id


@dataclass(frozen=True)
class CreatedApplication:
    """A created application as certified state records it."""

    app_id: bytes
    module: bytes
    parameters: Any
    height: int


class ApplicationsService(BuiltInService):
    """Certified reads: the chain's modules and created applications."""

    def applications(self) -> list[CreatedApplication]:
        state = self._ctx.state
        found = []
        for key in state.keys(APP_PREFIX):
            value = state.get(key)
            found.append(
                CreatedApplication(
                    bytes.fromhex(key[len(APP_PREFIX) :]),
                    value["module"],
                    value["parameters"],
                    value["height"],
                )
            )
        return sorted(found, key=lambda a: (a.height, a.app_id))

    def module_files(self, module: bytes) -> list[tuple[str, bytes, int]] | None:
        value = self._ctx.state.get(f"{MODULE_PREFIX}{module.hex()}")
        return None if value is None else _files(value)

    def service(self, app_id: bytes, context: ServiceContext) -> Any:
        """The created application's service over ``context`` (its own namespace)."""
        value = self._ctx.state.get(f"{APP_PREFIX}{app_id.hex()}")
        if value is None:
            return None
        files = self.module_files(value["module"]) or []
        return load_module(value["module"], files).service(context, value["parameters"])


APPLICATIONS = ApplicationKind(
    name=APPLICATION_NAME,
    contract=ApplicationsContract(),
    service_factory=ApplicationsService,
    runs_user_code=True,  # CreateApplication runs the new application's instantiate
)


def _describe(state: ContractState, app_id: bytes) -> dict[str, Any] | None:
    """What a message from application ``app_id`` carries so that a chain that has never seen
    it can run it: its module's files and its parameters (certified with the sending block)."""
    record = application_record(state, app_id)
    if record is None:
        return None
    module = module_record(state, record["module"])
    if module is None:
        return None
    return {
        "module": record["module"],
        "files": module["files"],
        "parameters": record["parameters"],
    }


def _learn(state: ContractState, app_id: bytes, description: Any) -> dict[str, Any] | None:
    """Record an application created on another chain, from a message's description."""
    if not (
        isinstance(description, dict) and set(description) == {"module", "files", "parameters"}
    ):
        return None
    module = PublishModule.from_payload({"files": description["files"]})
    if module.id != description["module"]:
        raise OperationRejected("a message describes an application whose files are not its module")
    records = state.view_of(applications_app_id(state.chain_id))
    key = f"{MODULE_PREFIX}{module.id.hex()}"
    if records.get(key) is None:
        records.set(key, {"files": description["files"], "height": -1})
    record = {"module": module.id, "parameters": description["parameters"], "height": -1}
    records.set(f"{APP_PREFIX}{app_id.hex()}", record)
    return record


def _resolve(
    state: ContractState, app_id: bytes, description: Any = None
) -> tuple[ApplicationKind, Any] | None:
    record = application_record(state, app_id)
    if record is None and description is not None:
        record = _learn(state, app_id, description)
    if record is None:
        return None
    module = module_record(state, record["module"])
    if module is None:
        raise StorageCorrupted(f"application {app_id.hex()[:16]} names an unknown module")
    loaded = load_module(record["module"], _files(module))
    kind = ApplicationKind(
        name=f"app:{app_id.hex()[:16]}",
        contract=loaded.contract(record["parameters"]),
        service_factory=lambda context: loaded.service(context, record["parameters"]),
    )
    return kind, record["parameters"]


register_application_resolver(_resolve, _describe)


def _module_blobs(payload: Any) -> list[bytes]:
    files = payload.get("files") if isinstance(payload, dict) else None
    return [
        item[1]
        for item in (files if isinstance(files, list) else [])
        if isinstance(item, list) and len(item) == 3 and isinstance(item[1], bytes)
    ]


register_blob_references(PublishModule.operation_name, _module_blobs)
register_blob_references(UseApplication.operation_name, _module_blobs)
