"""The types of one ``generate`` query on its way through the service: the query resolved
against certified state (:class:`PreparedQuery`), its token stream (:class:`QueryStream`) and
the final record of what ran (:class:`GenerationRecord`, :class:`Timings`).

The service that produces them is :class:`~edgechain.service.runtime.ModelService`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from edgechain.contract.registry import CertifiedModel
from edgechain.errors import GuestTrap, Timeout
from edgechain.service.engine.base import Engine, Generation, GenerationParams, StopReason, Token
from edgechain.service.query import GenerateQuery

__all__ = ["GenerationRecord", "PreparedQuery", "QueryStream", "Timings", "stop_reason_name"]


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


class QueryStream(Iterator[Token]):
    """The tokens of one query, as they are produced. ``cancel()`` stops it; ``record`` is the
    final :class:`GenerationRecord`, available once iteration has ended."""

    def __init__(
        self,
        generation: Generation,
        model: CertifiedModel,
        seed: int,
        seed_source: str,
        started: float,
        fetch_s: float,
        load_s: float,
        on_failure: Any,
        prepared: PreparedQuery | None = None,
        engine: Engine | None = None,
    ) -> None:
        self._generation = generation
        self._model = model
        self._seed = seed
        self._seed_source = seed_source
        self._started = started
        self._fetch_s = fetch_s
        self._load_s = load_s
        self._first_token_at: float | None = None
        self._on_failure = on_failure
        self.record: GenerationRecord | None = None
        #: What runs, known before the first token: the certified entry and the seed.
        self.model = model
        self.seed = seed
        self.seed_source = seed_source
        self.prompt_text = generation.prompt_text
        #: The resolved query (parameters, seed) this stream runs, for receipts.
        self.prepared = prepared
        #: The engine the tokens come from (a receipt names it).
        self.engine = engine
        #: The ids of the tokens produced so far.
        self.token_ids: list[int] = []
        #: The decoded piece of each token, in order (what a receipt's text is checked against).
        self.token_texts: list[str] = []

    def __iter__(self) -> QueryStream:
        return self

    def __next__(self) -> Token:
        try:
            token = next(self._generation)
        except StopIteration:
            self._finish()
            raise
        except (GuestTrap, Timeout):
            self._on_failure()
            raise
        if self._first_token_at is None:
            self._first_token_at = time.perf_counter()
        self.token_ids.append(token.id)
        self.token_texts.append(token.text)
        return token

    def cancel(self) -> None:
        """Stop generating; the record says ``cancelled``."""
        self._generation.cancel()
        self._finish()

    def collect(self) -> GenerationRecord:
        """Run the query to its end and return the record."""
        for _ in self:
            pass
        assert self.record is not None
        return self.record

    def _finish(self) -> None:
        if self.record is not None:
            return
        now = time.perf_counter()
        first = self._first_token_at or now
        gen = self._generation
        decode_s = now - first
        decoded = max(gen.generated_tokens - 1, 0)
        self.record = GenerationRecord(
            text=gen.text,
            stop_reason=stop_reason_name(gen.stop_reason),
            input_tokens=gen.prompt_tokens,
            output_tokens=gen.generated_tokens,
            model=self._model,
            seed=self._seed,
            seed_source=self._seed_source,
            timings=Timings(
                fetch_s=self._fetch_s,
                load_s=self._load_s,
                first_token_s=first - self._started,
                total_s=now - self._started,
                decode_tokens_per_s=decoded / decode_s if decode_s > 0 else 0.0,
            ),
            token_ids=tuple(self.token_ids),
            prompt=self.prompt_text,
        )
