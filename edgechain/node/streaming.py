"""One generation in a worker thread, its tokens handed to the event loop as they come.

The engine is blocking, so the query runs in its own thread and posts events (``token``, then
``done`` with the record, or ``error``) to an asyncio queue. When the consumer stops listening
(the HTTP client went away), the worker cancels the generation before its next token; when the
node shuts down, every generation ends with a ``Cancelled`` error event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from edgechain.errors import Cancelled
from edgechain.node.gate import ClientGate
from edgechain.node.typed_errors import error_payload
from edgechain.service.engine.base import Token
from edgechain.service.query import GenerateQuery
from edgechain.service.receipt import receipt_json
from edgechain.service.records import GenerationRecord

__all__ = ["GenerationEvent", "Generations", "run_generation", "sse_message"]

_SHUTTING_DOWN = "the node is shutting down; generation cancelled"


@dataclass(frozen=True)
class GenerationEvent:
    """``kind`` is "token" (``token`` set), "done" (``record`` set) or "error" (``error`` set)."""

    kind: str
    token: Token | None = None
    record: GenerationRecord | None = None
    error: BaseException | None = None
    #: With "done": the generation's receipt file, as JSON (service/receipt.py).
    receipt: dict[str, Any] | None = None

    def sse(self) -> str:
        """This event as a server-sent event (JSON data)."""
        if self.kind == "token":
            assert self.token is not None
            return sse_message("token", {"id": self.token.id, "text": self.token.text})
        if self.kind == "done":
            assert self.record is not None
            return sse_message("done", {**self.record.to_dict(), "receipt": self.receipt})
        assert self.error is not None
        return sse_message("error", error_payload(self.error))


class Generations:
    """The node's generations: how many are running, finished, failed or were cancelled (for
    ``/``), and the node-wide stop that ends them all when the node shuts down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.stopping = threading.Event()

    def add(self, field: str, delta: int = 1) -> None:
        with self._lock:
            setattr(self, field, getattr(self, field) + delta)

    def stop_all(self) -> None:
        """End every generation, now and to come, with a ``Cancelled`` error (shutdown)."""
        self.stopping.set()

    def to_json(self) -> dict[str, int]:
        with self._lock:
            return {
                "running": self.running,
                "completed": self.completed,
                "failed": self.failed,
                "cancelled": self.cancelled,
            }


def sse_message(event: str, data: Any) -> str:
    """One SSE message; JSON data is a single line, so it needs one ``data:`` field."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def run_generation(
    gate: ClientGate, query: GenerateQuery, generations: Generations
) -> AsyncIterator[GenerationEvent]:
    """Run ``query`` in a worker thread and yield its events; the last is "done" or "error".

    Closing the iterator early (or cancelling its consumer) cancels the generation.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[GenerationEvent] = asyncio.Queue()
    stop = threading.Event()

    def post(event: GenerationEvent) -> None:
        # The loop may be gone when the server shuts down mid-generation: nobody is listening.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, event)

    def work() -> None:
        generations.add("running")
        outcome, final = "failed", None
        try:
            if generations.stopping.is_set():
                raise Cancelled(_SHUTTING_DOWN)
            stream = gate.start_generation(
                query, cancelled=lambda: stop.is_set() or generations.stopping.is_set()
            )
            cancelled = False
            for token in stream:
                if stop.is_set() or generations.stopping.is_set():
                    cancelled = True
                    break
                post(GenerationEvent("token", token=token))
            if cancelled:
                stream.cancel()
                outcome = "cancelled"
                if not stop.is_set():  # the node is stopping, and someone is still listening
                    final = GenerationEvent("error", error=Cancelled(_SHUTTING_DOWN))
            else:
                outcome = "completed"
                receipt = receipt_json(stream)
                final = GenerationEvent("done", record=stream.record, receipt=receipt)
        except BaseException as err:  # the consumer gets every failure as an error event
            final = GenerationEvent("error", error=err)
        finally:
            # Counted before the last event is posted: whoever saw it sees the counts too.
            generations.add("running", -1)
            generations.add(outcome)
            if final is not None:
                post(final)

    threading.Thread(target=work, name="edgechain-generate", daemon=True).start()
    try:
        while True:
            event = await queue.get()
            yield event
            if event.kind != "token":
                return
    finally:
        stop.set()
