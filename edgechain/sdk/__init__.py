"""edgechain.sdk: write your own application, a contract and a service, as Linera's SDK has them.

::

    edgechain app new counter        # a project: ABI, state, contract, service, a test
    edgechain app publish counter    # its files as blobs; the module id is certified
    edgechain app create MODULE_ID --argument 0
    edgechain app call APP '{"Increment": {"value": 3}}'
    edgechain app query APP '{ value }'

The names follow linera-sdk: :class:`Contract` (``instantiate``, ``execute_operation``),
:class:`Service` (``handle_query`` over a GraphQL schema), views (:class:`RegisterView`,
:class:`MapView`, :class:`LogView`, :class:`QueueView` in a :class:`RootView`), the ABI
(:class:`Abi` of dataclasses) and the runtimes (:class:`ContractRuntime`,
:class:`ServiceRuntime`). The guide is docs/sdk.md.
"""

from edgechain.errors import OperationRejected
from edgechain.sdk.abi import Abi, crypto_hash
from edgechain.sdk.application import Contract, Service, service_of
from edgechain.sdk.runtime import (
    CertifiedModelInfo,
    ContractRuntime,
    ServiceRuntime,
    StreamUpdate,
)
from edgechain.sdk.views import LogView, MapView, QueueView, RegisterView, RootView

__all__ = [
    "Abi",
    "CertifiedModelInfo",
    "Contract",
    "ContractRuntime",
    "LogView",
    "MapView",
    "OperationRejected",
    "QueueView",
    "RegisterView",
    "RootView",
    "Service",
    "ServiceRuntime",
    "StreamUpdate",
    "crypto_hash",
    "service_of",
]
