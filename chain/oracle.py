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

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from edgechain.chain.block import Operation
from edgechain.errors import UsageError

__all__ = [
    "DEFAULT_ORACLE_BUDGET_S",
    "ENGINE_CYCLE",
    "ORACLE_ENGINES",
    "Oracle",
    "default_validator_engines",
    "parse_validator_engines",
    "recorded_response",
]

#: Seconds the oracle calls of one block may take, together.
DEFAULT_ORACLE_BUDGET_S = 60.0
#: The engines a validator may re-execute oracle calls with.
ORACLE_ENGINES = ("wasm", "native")
#: Which engine each validator re-executes oracle calls with, by default: alternately the
#: wasm guest and the native module (v1 wasm, v2 native, ...), so agreement spans both.
ENGINE_CYCLE = ORACLE_ENGINES


def default_validator_engines(names: Sequence[str]) -> dict[str, str]:
    """The default engine of each validator: :data:`ENGINE_CYCLE` in turn."""
    return {name: ENGINE_CYCLE[i % len(ENGINE_CYCLE)] for i, name in enumerate(names)}


def parse_validator_engines(
    spec: str | Mapping[str, str] | None,
    names: Sequence[str],
    *,
    base: Mapping[str, str] | None = None,
    option: str = "--engines",
) -> dict[str, str]:
    """The engines ``spec`` gives (``"v1=wasm,v2=native"`` or a mapping); validators it does
    not name keep their engine in ``base`` (default: :func:`default_validator_engines`).
    UsageError naming ``option`` for an unknown validator or engine."""
    engines = dict(base) if base is not None else default_validator_engines(names)
    items = spec.items() if isinstance(spec, Mapping) else (
        item.partition("=")[::2] for item in (spec or "").split(",") if item.strip()
    )
    for name, kind in items:
        name, kind = name.strip(), kind.strip()
        if name not in names or kind not in ORACLE_ENGINES:
            raise UsageError(
                f"{option}: {name}={kind} is not VALIDATOR=wasm|native "
                f"(validators: {', '.join(names)})"
            )
        engines[name] = kind
    return engines


class Oracle(Protocol):
    """Recomputes an operation's oracle response (a validator's own service)."""

    def response(
        self,
        chain_id: bytes,
        operation: Operation,
        timeout: float,
        cancel: threading.Event | None = None,
    ) -> Any:
        """The response ``operation``'s oracle call gives here, within ``timeout`` seconds
        (raises ``Timeout`` past it, an ``EdgechainError`` when the call fails). Once
        ``cancel`` is set the answer is not needed: it may stop early (``Cancelled``)."""
        ...

    def close(self) -> None: ...


def recorded_response(operation: Operation) -> Any | None:
    """The oracle response ``operation`` records, or None when it makes no oracle call."""
    payload = operation.payload
    if isinstance(payload, dict):
        return payload.get("oracle")
    return None
