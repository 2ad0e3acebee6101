"""The records of one ``generate`` query on its way through the service: the query resolved
against certified state (:class:`PreparedQuery`) and the final record of what ran
(:class:`GenerationRecord`, :class:`Timings`).

The service that produces them is :class:`~edgechain.service.runtime.ModelService`; the token
stream between the two is :class:`~edgechain.service.query_stream.QueryStream`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgechain.contract.registry import CertifiedModel
from edgechain.service.engine.base import GenerationParams, StopReason
from edgechain.service.query import GenerateQuery

__all__ = ["GenerationRecord", "PreparedQuery", "Timings", "stop_reason_name"]


@dataclass(frozen=True)
class PreparedQuery:
    """A query resolved against certified state: what
    :meth:`~edgechain.service.runtime.ModelService.start` runs. Holds no reference to storage,
    so it can start (download, load) outside any lock on it."""

    query: GenerateQuery
    model: CertifiedModel
    seed: int
    seed_source: str
    params: GenerationParams
    started: float


@dataclass(frozen=True)
class Timings:
    """Where a query's time went, in seconds (``fetch_s`` and ``load_s`` are 0 when warm)."""

    fetch_s: float
    load_s: float
    first_token_s: float
    total_s: float
    decode_tokens_per_s: float


@dataclass(frozen=True)
class GenerationRecord:
    """The final record of a query: what ran, on which certified state, and why it stopped.

    ``text`` is the continuation alone, ``prompt`` the prompt it continues (as run.c prints
    it); the whole story is ``prompt + text``, which is what the CLI's stream prints. Every
    front has both fields under these names (``--json``, SSE ``done``, GraphQL)."""

    text: str
    stop_reason: str
    input_tokens: int
    output_tokens: int
    model: CertifiedModel
    seed: int
    seed_source: str  # "query" or "derived"
    timings: Timings
    #: Every generated token's id, in order (what a receipt certifies; service/receipt.py).
    token_ids: tuple[int, ...] = ()
    prompt: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for the CLI's --json and the SSE ``done`` event)."""
        return {
            "prompt": self.prompt,
            "text": self.text,
            "stop_reason": self.stop_reason,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "model": self.model.to_json(),
            # A decimal string: JSON readers that use doubles (JavaScript) round past 2^53.
            "seed": str(self.seed),
            "seed_source": self.seed_source,
            "timings": asdict(self.timings),
        }


_STOP_NAMES = {
    StopReason.END_OF_SEQUENCE: "end_of_sequence",
    StopReason.MAX_TOKENS: "max_tokens",
    StopReason.STOP_STRING: "stop_string",
    StopReason.CONTEXT_FULL: "context_full",
}


def stop_reason_name(reason: StopReason | None) -> str:
    """The stable, lower-case name of a stop reason (``cancelled`` for a cancelled query)."""
    if reason is None:
        return "unknown"
    return _STOP_NAMES.get(reason, reason.name.lower())
