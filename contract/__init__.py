"""The model-registry application: operations (``operations``), contract and service
(``registry``), written with edgechain.sdk like the story book (``story_book``); the wiring layer
above runs both as the chain's built-in kinds (edgechain/applications.py; ARCHITECTURE.md,
"Layers").
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
