"""Oracle calls: what a contract learns from a service, recorded in the block, re-checked by
every validator before it votes (Linera's ``query_service`` oracle).

An operation records an oracle response as the ``oracle`` entry of its payload (a map). The
proposer computes it before proposing; each validator recomputes it with its own
:class:`Oracle` (its own engine) and refuses to sign when the two differ, so a block is
certified only when a quorum got the same response. Replaying a stored chain uses the recorded
response and needs no oracle. A block's oracle calls share a time budget
(``DEFAULT_ORACLE_BUDGET_S``, like Linera's ``maximum_service_oracle_execution_ms``).
"""

from __future__ import annotations

from typing import Any, Protocol

from edgechain.chain.block import Operation

__all__ = ["DEFAULT_ORACLE_BUDGET_S", "Oracle", "recorded_response"]

#: Seconds the oracle calls of one block may take, together.
DEFAULT_ORACLE_BUDGET_S = 60.0


class Oracle(Protocol):
    """Recomputes an operation's oracle response (a validator's own service)."""

    def response(self, chain_id: bytes, operation: Operation, timeout: float) -> Any:
        """The response ``operation``'s oracle call gives here, within ``timeout`` seconds
        (raises ``Timeout`` past it, an ``EdgechainError`` when the call fails)."""
        ...

    def close(self) -> None: ...


def recorded_response(operation: Operation) -> Any | None:
    """The oracle response ``operation`` records, or None when it makes no oracle call."""
    payload = operation.payload
    if isinstance(payload, dict):
        return payload.get("oracle")
    return None
