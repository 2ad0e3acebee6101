"""Loading an application's code from the bytes of its module (never from a working tree).

The files become an in-memory package named after the module id, so relative imports work
(``from .state import CounterState``) and two modules never share a name. The package must
hold one :class:`~edgechain.sdk.Contract` subclass in ``contract.py`` and one
:class:`~edgechain.sdk.Service` subclass in ``service.py``. :func:`load` is what the chain calls
(registered by the wiring layer); :func:`inspect_module` is publish's check of the same things.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import linecache
import sys
import types
from dataclasses import dataclass
from typing import Any

from edgechain.chain.application import ContractState, OperationContext, ServiceContext
from edgechain.chain.messages import StreamUpdate as ChainStreamUpdate
from edgechain.chain.modules import LoadedModule
from edgechain.errors import ContractError, EdgechainError, InputError, OperationRejected
from edgechain.sdk.abi import Abi, decode, encode
from edgechain.sdk.application import Contract, Service
from edgechain.sdk.rules import check_sources
from edgechain.sdk.runtime import (
    ContractRuntime,
    ServiceHost,
    ServiceRuntime,
    StreamUpdate,
)

__all__ = ["SdkModule", "inspect_module", "load"]

_PACKAGE_PREFIX = "edgechain_app_"


class _SourceLoader(importlib.abc.Loader):
    def __init__(self, sources: dict[str, bytes], path: str, package: str) -> None:
        self._sources, self._path, self._package = sources, path, package

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        filename = f"<{self._package}>/{self._path}"
        source = self._sources[self._path]
        # Tracebacks through the module's code show its lines, as for files on disk.
        text = source.decode("utf-8", errors="replace")
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 (certified code)


class _SourceFinder(importlib.abc.MetaPathFinder):
    def __init__(self, package: str, sources: dict[str, bytes]) -> None:
        self._package, self._sources = package, sources

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self._package and not fullname.startswith(self._package + "."):
            return None
        relative = fullname[len(self._package) :].lstrip(".").replace(".", "/")
        init = f"{relative}/__init__.py" if relative else "__init__.py"
        if init in self._sources:
            loader = _SourceLoader(self._sources, init, self._package)
            return importlib.util.spec_from_loader(fullname, loader, is_package=True)
        if f"{relative}.py" in self._sources:
            loader = _SourceLoader(self._sources, f"{relative}.py", self._package)
            return importlib.util.spec_from_loader(fullname, loader)
        return None


def _import(module_id: bytes, sources: dict[str, bytes]) -> tuple[type[Contract], type[Service]]:
    check_sources(sources)
    package = f"{_PACKAGE_PREFIX}{module_id.hex()}"
    finder = _SourceFinder(package, sources)
    sys.meta_path.insert(0, finder)
    try:
        contract_module = importlib.import_module(f"{package}.contract")
        service_module = importlib.import_module(f"{package}.service")
    except EdgechainError:
        raise
    except Exception as exc:  # the user's code failed to import: say where, in one line
        raise InputError(f"the module does not import: {type(exc).__name__}: {exc}") from None
    finally:
        sys.meta_path.remove(finder)
    contract = _one_subclass(contract_module, Contract, "contract.py")
    service = _one_subclass(service_module, Service, "service.py")
    if not isinstance(getattr(contract, "abi", None), Abi):
        raise InputError(f"contract.py: {contract.__name__}.abi must be an edgechain.sdk.Abi")
    return contract, service


def _one_subclass(module: types.ModuleType, base: type, where: str) -> Any:
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, base) and value is not base
        and value.__module__ == module.__name__
    ]  # fmt: skip
    if len(found) != 1:
        raise InputError(
            f"{where} must define exactly one {base.__name__} subclass, found {len(found)}"
        )
    return found[0]


class _ContractAdapter:
    """The chain's contract interface over an SDK contract class."""

    def __init__(self, contract: type[Contract]) -> None:
        self._contract = contract

    def _instance(
        self, ctx: OperationContext, state: ContractState, payload: Any = None
    ) -> Contract:
        cls = self._contract
        return cls(cls.state_type(state), ContractRuntime(ctx, state, cls.abi, payload))

    def execute_operation(
        self, ctx: OperationContext, state: ContractState, name: str, payload: Any
    ) -> Any:
        abi = self._contract.abi
        try:
            operation = decode(abi.operation_type(name), payload, name)
        except EdgechainError as exc:
            raise OperationRejected(str(exc)) from None
        contract = self._instance(ctx, state, payload)
        return _guarded(lambda: encode(contract.execute_operation(operation)))

    def execute_message(self, ctx: OperationContext, state: ContractState, payload: Any) -> None:
        try:
            message = self._contract.abi.decode_message(payload)
        except EdgechainError as exc:
            raise OperationRejected(str(exc)) from None
        _guarded(lambda: self._instance(ctx, state).execute_message(message))

    def process_streams(
        self, ctx: OperationContext, state: ContractState, updates: list[ChainStreamUpdate]
    ) -> None:
        mine = [StreamUpdate(u.chain.hex(), u.stream, u.index, u.value) for u in updates]
        _guarded(lambda: self._instance(ctx, state).process_streams(mine))

    def instantiate(self, ctx: OperationContext, state: ContractState, argument: Any) -> None:
        abi = self._contract.abi
        try:
            value = decode(abi.instantiation_argument, argument, "argument")
        except EdgechainError as exc:
            raise OperationRejected(str(exc)) from None
        _guarded(lambda: self._instance(ctx, state).instantiate(value))


def _guarded(run: Any) -> Any:
    """A contract that raises rejects its operation, with its message."""
    try:
        return run()
    except ContractError:
        raise
    except Exception as exc:
        raise OperationRejected(f"the contract raised {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class SdkModule(LoadedModule):
    """A loaded module: its contract and service classes."""

    contract_class: type[Contract]
    service_class: type[Service]

    def contract(self, parameters: Any) -> _ContractAdapter:
        return _ContractAdapter(self.contract_class)

    def instantiate(self, ctx: OperationContext, state: ContractState, argument: Any) -> None:
        _ContractAdapter(self.contract_class).instantiate(ctx, state, argument)

    def service(
        self, context: ServiceContext, parameters: Any, host: ServiceHost | None = None
    ) -> Service:
        cls = self.service_class
        runtime = ServiceRuntime(context, parameters, self.contract_class.abi, host)
        return cls(cls.state_type(context.state), runtime)


def load(module_id: bytes, sources: dict[str, bytes]) -> SdkModule:
    """The chain's module loader: import the module's files, find its two classes."""
    contract, service = _import(module_id, sources)
    return SdkModule(contract, service)


def inspect_module(module_id: bytes, sources: dict[str, bytes]) -> SdkModule:
    """Publish's check: the module imports, has its classes, and its GraphQL schema builds
    (InputError, one line, otherwise)."""
    loaded = load(module_id, sources)
    try:
        loaded.service_class.schema()
    except Exception as exc:
        raise InputError(f"service.py: the GraphQL schema does not build: {exc}") from None
    return loaded
