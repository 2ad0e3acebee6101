"""Continuous batching: the steps of one model's concurrent generations combined into one engine
call (``LoadedModel.step_batch``), so the weights are read once per step for every active
sequence. Sequences join and leave between steps; each still gets exactly its solo tokens (the
engines' batched step is bit-identical to stepping each session alone).

The combining pattern, without a worker thread: a generation that wants its next token queues a
request; if no batch is running, its own thread becomes the combiner, waits a moment for the
model's other generations to queue theirs (``gather_s``, ended early once all have), takes every
queued request and runs one ``step_batch`` for them; requests queued meanwhile form the next
batch. Chosen over a worker thread per model because the engine calls release the GIL and the
caller's thread is idle while it waits anyway, and because a model then needs no thread to start
and stop with it (a model is closed and dropped by its service, not by the batcher).

Deadlines are checked between steps, never inside a shared call: a request whose deadline has
passed leaves the batch before it runs (its generation raises Timeout), and the batched call's
own deadline, only a backstop, is the latest of its requests' (none if any has none), so a guest
interrupt (which discards the whole wasm instance) can only hit a batch in which every session is
already late.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgechain.service.engine.base import SessionDriver, Step

__all__ = ["GATHER_S", "StepBatcher"]

#: How long a combiner waits for the model's other generations to queue their step (seconds).
#: Ended as soon as every member has queued; a member whose consumer is slow costs the others at
#: most this per step.
GATHER_S = 0.002


@dataclass
class _Request:
    driver: SessionDriver
    deadline: float | None
    step: Step | None = None
    error: BaseException | None = None
    late: bool = False
    done: bool = field(default=False)


class StepBatcher:
    """Combines the step requests of one model's sessions (thread-safe).

    ``run_batch(drivers, deadline)`` is the model's ``step_batch``. Counters: ``calls`` batched
    calls made, ``steps`` session steps they served (``steps / calls`` is the mean batch size).
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[Any], float | None], list[Step]],
        gather_s: float = GATHER_S,
    ) -> None:
        self._run_batch = run_batch
        self.gather_s = gather_s
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._busy = False
        self._members = 0
        self.calls = 0
        self.steps = 0

    # --- membership: the generations that may ask for a step ----------------------------------

    def join(self) -> None:
        """A generation started: combiners wait for its requests too."""
        with self._cond:
            self._members += 1

    def leave(self) -> None:
        """A generation ended (finished, cancelled, failed): combiners stop waiting for it."""
        with self._cond:
            self._members -= 1
            self._cond.notify_all()

    @property
    def members(self) -> int:
        """How many generations are stepping through this batcher."""
        with self._cond:
            return self._members

    # --- stepping -------------------------------------------------------------------------------

    def step(self, driver: SessionDriver, deadline: float | None) -> Step | None:
        """``driver``'s next step, run in a batch with whichever sessions of the model ask at
        the same time. None when ``deadline`` passed before its batch ran (nothing ran for it);
        raises the error of its session's step (or of the whole batched call)."""
        request = _Request(driver, deadline)
        with self._cond:
            self._queue.append(request)
            self._cond.notify_all()  # a gathering combiner counts the queue again
            while self._busy and not request.done:
                self._cond.wait()
            combiner = not request.done
            if combiner:
                self._busy = True
                self._gather()
                batch, self._queue = self._queue, []
        if combiner:
            try:
                self._run(batch)
            finally:
                with self._cond:
                    for queued in batch:
                        queued.done = True
                    self._busy = False
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error
        return None if request.late else request.step

    def _gather(self) -> None:
        """Wait (lock held, released while waiting) until every member has queued, at most
        ``gather_s``."""
        end = time.monotonic() + self.gather_s
        while len(self._queue) < self._members:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _run(self, batch: list[_Request]) -> None:
        now = time.monotonic()
        live = []
        for request in batch:
            if request.deadline is not None and now >= request.deadline:
                request.late = True
            else:
                live.append(request)
        if not live:
            return
        deadlines = [r.deadline for r in live]
        backstop = None if None in deadlines else max(d for d in deadlines if d is not None)
        try:
            steps = self._run_batch([r.driver for r in live], backstop)
            if len(steps) != len(live):
                raise RuntimeError(f"step_batch returned {len(steps)} steps for {len(live)}")
        except BaseException as err:  # the whole call failed: every session in it did
            for request in live:
                request.error = err
            return
        finally:
            self.calls += 1
            self.steps += len(live)
        for request, step in zip(live, steps, strict=True):
            if step.error is not None:
                request.error = step.error
            else:
                request.step = step
