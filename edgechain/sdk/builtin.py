"""The built-in applications (the model registry, the story book) as the chain runs them: SDK
applications like any other, registered under a fixed kind name instead of being published.

They are the SDK's first users (contract/registry.py, contract/story_book.py): a
:class:`~edgechain.sdk.Contract` and a :class:`~edgechain.sdk.Service` each, with typed views
and an ABI. What differs is only how the chain finds them: a kind's id is
``H("app-id", [chain id, name])`` and it exists on every chain from ``net up``, so a network
directory made before they ran on the SDK reads as it did (their stored operations and state
keep their bytes: their types define their own encoding, :mod:`edgechain.sdk.abi`).
"""

from __future__ import annotations

from edgechain.chain.application import ApplicationKind, ServiceContext
from edgechain.sdk.application import Contract, Service
from edgechain.sdk.loader import SdkModule

__all__ = ["builtin_application"]


def builtin_application(
    name: str, contract: type[Contract], service: type[Service]
) -> ApplicationKind:
    """The chain's application kind ``name`` running ``contract`` and ``service``."""
    module = SdkModule(contract, service)

    def service_factory(context: ServiceContext) -> Service:
        return module.service(context, None)

    return ApplicationKind(name, module.contract(None), service_factory)
