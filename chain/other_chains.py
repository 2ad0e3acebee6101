"""What a block takes from other chains, checked against their certified blocks.

A block may take incoming message bundles (chain/messages.py) and run applications created on
other chains (``UseApplication``, chain/modules.py). Execution alone cannot tell whether those
are genuine, so validators, before voting, and re-verification, reading storage, check each one
against the certified block it claims to come from.
"""

from __future__ import annotations

from collections.abc import Callable

from edgechain.chain.block import Block
from edgechain.chain.messages import BundleRefused, Message, check_bundle_origin
from edgechain.chain.modules import UseApplication, applications_app_id, check_used_application
from edgechain.errors import OperationRejected

__all__ = [
    "CertifiedBlockReader",
    "NotCertifiedElsewhere",
    "check_other_chains",
    "takes_from_other_chains",
]

#: ``reader(chain id, height)``: that chain's certified block there and its hash (checked against
#: its certificate), or None.
CertifiedBlockReader = Callable[[bytes, int], tuple[bytes, Block] | None]


class NotCertifiedElsewhere(Exception):
    """What a block takes from another chain is not in that chain's certified block (the
    caller maps it to its own error)."""


def check_other_chains(block: Block, certified_block: CertifiedBlockReader) -> None:
    """Raise :class:`NotCertifiedElsewhere` unless every incoming bundle and every used
    application of ``block`` is exactly what a certified block of its chain holds."""

    def outgoing(chain_id: bytes, height: int) -> tuple[bytes, tuple[Message, ...]] | None:
        found = certified_block(chain_id, height)
        return None if found is None else (found[0], found[1].outgoing)

    def block_only(chain_id: bytes, height: int) -> Block | None:
        found = certified_block(chain_id, height)
        return None if found is None else found[1]

    for bundle in block.incoming:
        try:
            check_bundle_origin(bundle, block.chain_id, outgoing)
        except BundleRefused as exc:
            raise NotCertifiedElsewhere(str(exc)) from None
    applications = applications_app_id(block.chain_id)
    for op in block.operations:
        if op.app_id == applications and op.name == UseApplication.operation_name:
            try:
                check_used_application(op.payload, block_only)
            except OperationRejected as exc:
                raise NotCertifiedElsewhere(str(exc)) from None


def takes_from_other_chains(block: Block) -> bool:
    """True when ``block`` takes bundles or uses applications of other chains."""
    applications = applications_app_id(block.chain_id)
    return bool(block.incoming) or any(
        op.app_id == applications and op.name == UseApplication.operation_name
        for op in block.operations
    )
