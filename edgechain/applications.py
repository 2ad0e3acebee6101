"""The wiring of applications into chains: the built-in kinds and the engine kinds, registered
with the chain layer.

chain/ knows an application only as an :class:`~edgechain.chain.application.ApplicationKind`
registered under its name, so it names no contract. This module is where the built-in ones (blob
publication, the model registry and the story book) are registered; :mod:`edgechain.client` calls
:func:`register_applications` when it is imported, so the CLI, the node, the pytest plugin and
the examples have them. Code that opens a network with ``edgechain.chain`` alone (a benchmark,
a test's subprocess) calls it first: a stored chain whose blocks name an unregistered
application does not re-verify.
"""

from __future__ import annotations

from edgechain.chain.application import ApplicationKind, register_application_kind
from edgechain.chain.blobs import BLOBS, register_blob_references
from edgechain.chain.modules import APPLICATIONS, LoadedModule, register_module_loader
from edgechain.chain.oracle import register_engine_kinds
from edgechain.contract import registry, story_book
from edgechain.contract.operations import RegisterModel
from edgechain.sdk.builtin import builtin_application
from edgechain.service.engine import ENGINE_KINDS

__all__ = ["BUILTIN_APPLICATIONS", "register_applications"]

#: The model registry and the story book: SDK applications, run as built-in kinds.
MODEL_REGISTRY = builtin_application(
    registry.APPLICATION_NAME, registry.ModelRegistryContract, registry.ModelRegistryService
)
STORY_BOOK = builtin_application(
    story_book.APPLICATION_NAME, story_book.StoryBookContract, story_book.StoryBookService
)

#: Every application kind a chain runs (applications users create run beside them).
BUILTIN_APPLICATIONS: tuple[ApplicationKind, ...] = (
    BLOBS,
    APPLICATIONS,
    MODEL_REGISTRY,
    STORY_BOOK,
)


def register_applications() -> None:
    """Register the built-in application kinds, the engines validators re-execute oracle
    calls with and the loader of user applications' code (idempotent)."""
    for kind in BUILTIN_APPLICATIONS:
        register_application_kind(kind)
    register_engine_kinds(ENGINE_KINDS)
    register_module_loader(_load_sdk_module)
    # Validators must hold the blobs a RegisterModel's manifests name before they vote.
    register_blob_references(RegisterModel.operation_name, registry.manifest_blobs)


def _load_sdk_module(module_id: bytes, sources: dict[str, bytes]) -> LoadedModule:
    from edgechain.sdk.loader import load

    return load(module_id, sources)
