"""edgechain: a Linera-style contract/service simulator for machine learning at the edge.

Sub-packages, each mapped from a top-level folder of the repository:

- ``edgechain.chain``: blocks, validators, certificates, storage.
- ``edgechain.contract``: the model-registry application's contract (deterministic).
- ``edgechain.service``: the service runtime (fetch_url, hash checks, seeds, the engine host).

The types a program or a test needs are importable from here directly::

    from edgechain import Client, GenerateQuery, HashMismatch, ModelFiles

Every error class of :mod:`edgechain.errors` is here; the others (:data:`PUBLIC_TYPES`) are
imported on first use, so ``import edgechain`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgechain import errors as _errors
from edgechain.errors import EdgechainError

__version__ = "0.1.0"

#: Public name -> the module defining it (imported when the name is first used).
PUBLIC_TYPES: dict[str, str] = {
    "Client": "edgechain.client",
    "PublishedModel": "edgechain.client",
    "GenerateQuery": "edgechain.service.query",
    "GenerationRecord": "edgechain.service.records",
    "QueryStream": "edgechain.service.query_stream",
    "ModelService": "edgechain.service.runtime",
    "CertifiedModel": "edgechain.contract.registry",
    "ModelEntry": "edgechain.contract.registry",
    "FileRef": "edgechain.contract.operations",
    "RegisterModel": "edgechain.contract.operations",
    "RetireModel": "edgechain.contract.operations",
    "Certificate": "edgechain.chain.certificate",
    "WeightServer": "edgechain.testing.weight_server",
    "HostFault": "edgechain.testing.weight_server",
    "ModelFiles": "edgechain.testing.models",
    "ServedModel": "edgechain.testing.pytest_plugin",
}

_ERRORS = {
    name: value
    for name, value in vars(_errors).items()
    if isinstance(value, type) and issubclass(value, EdgechainError)
}
globals().update(_ERRORS)

__all__ = sorted([*_ERRORS, *PUBLIC_TYPES, "__version__"])


def __getattr__(name: str) -> Any:
    module = PUBLIC_TYPES.get(name)
    if module is None:
        raise AttributeError(f"module 'edgechain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *PUBLIC_TYPES})
