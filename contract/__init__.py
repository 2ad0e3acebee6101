"""The model-registry application: operations (``operations``), contract and service
(``registry``). Importing this package registers the "model-registry" application kind.
"""

from edgechain.contract.operations import FileRef, RegisterModel, RetireModel
from edgechain.contract.registry import (
    APPLICATION_NAME,
    CertifiedModel,
    ModelEntry,
    ModelRegistryContract,
    ModelRegistryService,
)

__all__ = [
    "APPLICATION_NAME",
    "CertifiedModel",
    "FileRef",
    "ModelEntry",
    "ModelRegistryContract",
    "ModelRegistryService",
    "RegisterModel",
    "RetireModel",
]
