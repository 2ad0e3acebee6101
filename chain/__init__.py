"""A Linera-style chain simulator: committee, blocks, validators, certificates, storage.

Where things live (one job per module):

- ``encoding``      canonical encoding and domain-separated BLAKE3 hashing
- ``committee``     validators' keys and the validity / quorum thresholds
- ``block``         blocks, operations, the owner's proposal signature
- ``state``         per-application key-value state and the state hash
- ``application``   the application model (contract, service, app ids, execution)
- ``validator``     a mock validator and its faults (``faults`` parses fault specs)
- ``agreement``     where blocks are certified: gather votes into a certificate
- ``certificate``   votes, certificates, ``verify_certificate``
- ``storage``       SQLite schema and one-transaction commits
- ``verification``  re-verification of stored chains on open
- ``network``       the facade: ``Network.create/open``, ``Chain.execute``
- ``policy``        resource policies: Linera's limits on blocks, blobs and oracle time
- ``blobs``         data blobs: ids, the ``blobs`` system application, stored-blob checks
"""

from edgechain.chain.application import (
    ApplicationKind,
    ContractState,
    OperationContext,
    ServiceContext,
    application_id,
    register_application_kind,
)
from edgechain.chain.block import Block, Operation
from edgechain.chain.certificate import Certificate, CertifiedBlock, Vote, verify_certificate
from edgechain.chain.committee import (
    Committee,
    ValidatorInfo,
    quorum_threshold,
    tolerated_faults,
    validity_threshold,
)
from edgechain.chain.faults import FaultKind, ValidatorFault, format_faults, parse_faults
from edgechain.chain.network import (
    Chain,
    ChainStatus,
    Network,
    NetworkStatus,
    ValidatorStatus,
    VerifyReport,
)

__all__ = [
    "ApplicationKind",
    "Block",
    "Certificate",
    "CertifiedBlock",
    "Chain",
    "ChainStatus",
    "Committee",
    "ContractState",
    "ValidatorFault",
    "FaultKind",
    "Network",
    "NetworkStatus",
    "Operation",
    "OperationContext",
    "ServiceContext",
    "ValidatorInfo",
    "ValidatorStatus",
    "VerifyReport",
    "Vote",
    "application_id",
    "format_faults",
    "parse_faults",
    "quorum_threshold",
    "register_application_kind",
    "tolerated_faults",
    "validity_threshold",
    "verify_certificate",
]
