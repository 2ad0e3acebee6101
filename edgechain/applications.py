"""The wiring of applications into chains: the built-in kinds, registered with the chain layer.

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
from edgechain.chain.blobs import BLOBS
from edgechain.chain.modules import APPLICATIONS, LoadedModule, register_module_loader
from edgechain.contract.registry import MODEL_REGISTRY
from edgechain.contract.story_book import STORY_BOOK

__all__ = ["BUILTIN_APPLICATIONS", "register_applications"]

#: Every application kind a chain runs (applications users create run beside them).
BUILTIN_APPLICATIONS: tuple[ApplicationKind, ...] = (
    BLOBS,
    APPLICATIONS,
    MODEL_REGISTRY,
    STORY_BOOK,
)


def register_applications() -> None:
    """Register the built-in application kinds and the loader of user applications' code
    (idempotent)."""
    for kind in BUILTIN_APPLICATIONS:
        register_application_kind(kind)
    register_module_loader(_load_sdk_module)


def _load_sdk_module(module_id: bytes, sources: dict[str, bytes]) -> LoadedModule:
    # Imported on first use: the SDK brings strawberry, which most commands never need.
    from edgechain.sdk.loader import load

    return load(module_id, sources)
