"""The model-registry application: operations (``operations``), contract and service
(``registry``). Its application kind, ``MODEL_REGISTRY``, is registered with the chain layer by
the wiring layer above (see ARCHITECTURE.md, "Layers"), as is the story book's.
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
