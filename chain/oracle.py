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
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgechain.chain.block import Operation
from edgechain.errors import UsageError

__all__ = [
    "DEFAULT_ORACLE_BUDGET_S",
    "MAX_ORACLE_BUDGET_S",
    "Oracle",
    "OracleCall",
    "default_validator_engines",
    "engine_kinds",
    "parse_validator_engines",
    "recorded_response",
    "register_engine_kinds",
]

#: Seconds the oracle calls of one block may take, together.
DEFAULT_ORACLE_BUDGET_S = 60.0
#: The largest budget a network accepts (a day): past it, waits overflow the platform's timers.
MAX_ORACLE_BUDGET_S = 86_400.0

#: The engines a validator may re-execute oracle calls with, in the order validators take
#: them by default (v1 the first, v2 the second, ...: agreement spans every engine). The chain
#: layer knows an engine only as a name registered here, by the wiring layer above.
_ENGINE_KINDS: list[str] = []


def register_engine_kinds(kinds: Sequence[str]) -> None:
    """Name the engines validators may run oracle calls with (idempotent)."""
    _ENGINE_KINDS[:] = list(kinds)


def engine_kinds() -> tuple[str, ...]:
    """The registered engine kinds (UsageError when none are: the wiring layer registers them,
    with the application kinds)."""
    if not _ENGINE_KINDS:
        raise UsageError("no oracle engine kinds are registered (register the applications)")
    return tuple(_ENGINE_KINDS)


def default_validator_engines(names: Sequence[str]) -> dict[str, str]:
    """The default engine of each validator: the registered kinds in turn."""
    cycle = engine_kinds()
    return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}


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
    items = (
        spec.items()
        if isinstance(spec, Mapping)
        else (item.partition("=")[::2] for item in (spec or "").split(",") if item.strip())
    )
    kinds = engine_kinds()
    for name, kind in items:
        name, kind = name.strip(), kind.strip()
        if name not in names or kind not in kinds:
            raise UsageError(
                f"{option}: {name}={kind} is not VALIDATOR={'|'.join(kinds)} "
                f"(validators: {', '.join(names)})"
            )
        engines[name] = kind
    return engines


@dataclass(frozen=True)
class OracleCall:
    """One oracle call a validator re-executes: the operation that records it, on chain
    ``chain_id``, within ``timeout`` seconds; once ``cancel`` is set the answer is not needed.
    ``phases``: where the oracle's time went, in seconds (or flags), noted by the oracle for
    this call only; the validator's :class:`VoteTimes` carries them."""

    chain_id: bytes
    operation: Operation
    timeout: float
    cancel: threading.Event | None = None
    phases: dict[str, float | bool] = field(default_factory=dict, compare=False)


class Oracle(Protocol):
    """Recomputes an operation's oracle response (a validator's own service)."""

    #: How long this oracle's calls take, relative to the fastest engine's (1.0): a proposer
    #: asks the validators in order of expected answer time (chain/agreement.py). An oracle
    #: without it counts as 1.0.
    expected_cost: float

    def response(self, call: OracleCall) -> Any:
        """The response ``call.operation``'s oracle call gives here, within ``call.timeout``
        seconds (raises ``Timeout`` past it, an ``EdgechainError`` when the call fails). Once
        ``call.cancel`` is set the answer is not needed: it may stop early (``Cancelled``)."""
        ...

    def close(self) -> None: ...


def recorded_response(operation: Operation) -> Any | None:
    """The oracle response ``operation`` records, or None when it makes no oracle call."""
    payload = operation.payload
    if isinstance(payload, dict):
        return payload.get("oracle")
    return None
