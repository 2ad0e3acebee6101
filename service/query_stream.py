"""A ``generate`` query's token stream: the tokens as they are produced, then the final
:class:`~edgechain.service.records.GenerationRecord` (what
:meth:`~edgechain.service.runtime.ModelService.start` returns)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from edgechain.errors import GuestTrap, Timeout
from edgechain.service.engine.base import Engine, Generation, Token
from edgechain.service.records import (
    GenerationRecord,
    PreparedQuery,
    Timings,
    stop_reason_name,
)

__all__ = ["QueryStream"]


class QueryStream(Iterator[Token]):
    """The tokens of one query, as they are produced. ``cancel()`` stops it; ``record`` is the
    final :class:`GenerationRecord`, available once iteration has ended."""

    def __init__(
        self,
        prepared: PreparedQuery,
        generation: Generation,
        *,
        fetch_s: float,
        load_s: float,
        on_failure: Callable[[], None],
        engine: Engine | None = None,
    ) -> None:
        self._generation = generation
        self._fetch_s = fetch_s
        self._load_s = load_s
        self._first_token_at: float | None = None
        self._on_failure = on_failure
        self.record: GenerationRecord | None = None
        #: The resolved query (parameters, seed) this stream runs, for receipts.
        self.prepared = prepared
        #: What runs, known before the first token: the certified entry and the seed.
        self.model = prepared.model
        self.seed = prepared.seed
        self.seed_source = prepared.seed_source
        self.prompt_text = generation.prompt_text
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
            model=self.model,
            seed=self.seed,
            seed_source=self.seed_source,
            timings=Timings(
                fetch_s=self._fetch_s,
                load_s=self._load_s,
                first_token_s=first - self.prepared.started,
                total_s=now - self.prepared.started,
                decode_tokens_per_s=decoded / decode_s if decode_s > 0 else 0.0,
            ),
            token_ids=tuple(self.token_ids),
            prompt=self.prompt_text,
        )
