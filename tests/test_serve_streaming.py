"""The node's generation runner (edgechain.node.streaming) with a stand-in engine: token events
in order, then ``done``; a typed ``error``; and a consumer that goes away cancels the generation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from edgechain.errors import Cancelled, ModelNotFound
from edgechain.node.streaming import GenerationEvent, Generations, run_generation
from edgechain.service.engine.base import Token
from edgechain.service.runtime import GenerateQuery

QUERY = GenerateQuery(model="m", prompt="p")


@dataclass
class FakeStream(Iterator[Token]):
    """Like QueryStream: tokens every ``delay`` seconds, ``limit`` of them, ``cancel()``."""

    limit: int
    delay: float = 0.0
    produced: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)
    record: object | None = None

    def __next__(self) -> Token:
        if self.cancelled.is_set() or self.produced >= self.limit:
            self.record = self.record or {"tokens": self.produced}
            raise StopIteration
        time.sleep(self.delay)
        self.produced += 1
        return Token(id=self.produced, text=f"t{self.produced} ")

    def cancel(self) -> None:
        self.cancelled.set()
        self.record = {"tokens": self.produced, "cancelled": True}


class FakeGate:
    def __init__(self, stream: FakeStream | None = None, error: Exception | None = None) -> None:
        self.stream, self.error = stream, error

    def start_generation(self, query: GenerateQuery, cancelled: object = None) -> FakeStream:
        assert query is QUERY
        if self.error is not None:
            raise self.error
        assert self.stream is not None
        return self.stream


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


async def collect(gate: FakeGate, generations: Generations) -> list[GenerationEvent]:
    return [event async for event in run_generation(gate, QUERY, generations)]  # type: ignore[arg-type]


def test_tokens_arrive_in_order_then_done_with_the_record() -> None:
    stream = FakeStream(limit=5)
    generations = Generations()
    events = asyncio.run(collect(FakeGate(stream), generations))
    assert [e.kind for e in events] == ["token"] * 5 + ["done"]
    assert "".join(e.token.text for e in events[:-1]) == "t1 t2 t3 t4 t5 "
    assert events[-1].record == {"tokens": 5}
    assert generations.to_json() == {"running": 0, "completed": 1, "failed": 0, "cancelled": 0}


def test_a_failure_to_start_is_one_typed_error_event() -> None:
    generations = Generations()
    events = asyncio.run(collect(FakeGate(error=ModelNotFound("no model named m")), generations))
    [event] = events
    assert event.kind == "error" and isinstance(event.error, ModelNotFound)
    assert event.sse() == (
        'event: error\ndata: {"code": "ModelNotFound", "message": "no model named m", '
        '"exitCode": 6}\n\n'
    )
    assert generations.to_json()["failed"] == 1


def test_a_consumer_that_goes_away_cancels_the_generation() -> None:
    stream = FakeStream(limit=10_000, delay=0.01)
    generations = Generations()

    async def read_two_then_leave() -> None:
        events = run_generation(FakeGate(stream), QUERY, generations)  # type: ignore[arg-type]
        assert (await anext(events)).kind == "token"
        assert (await anext(events)).kind == "token"
        await events.aclose()  # what a client disconnect does to the SSE response

    asyncio.run(read_two_then_leave())
    wait_until(stream.cancelled.is_set)
    wait_until(lambda: generations.to_json()["running"] == 0)
    assert generations.to_json()["cancelled"] == 1
    assert stream.produced < 100  # stopped within a token or two, not run to its limit


def test_a_cancelled_consumer_task_cancels_the_generation() -> None:
    stream = FakeStream(limit=10_000, delay=0.01)
    generations = Generations()

    async def consume_until_cancelled() -> None:
        async def consume() -> None:
            async for _ in run_generation(FakeGate(stream), QUERY, generations):  # type: ignore[arg-type]
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.1)
        task.cancel()  # Starlette cancels the response task when the client disconnects
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(consume_until_cancelled())
    wait_until(stream.cancelled.is_set)
    assert stream.produced < 100


def test_the_event_loop_keeps_running_while_tokens_are_produced() -> None:
    stream = FakeStream(limit=20, delay=0.02)
    generations = Generations()

    async def generate_and_tick() -> tuple[int, int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        tick_task = asyncio.create_task(ticker())
        events = await collect(FakeGate(stream), generations)
        done.set()
        await tick_task
        return ticks, len(events)

    ticks, count = asyncio.run(generate_and_tick())
    assert count == 21
    assert ticks > 20  # the loop ran other work during the ~0.4 s of blocking generation


def test_stop_all_ends_a_running_generation_with_a_cancelled_error() -> None:
    stream = FakeStream(limit=10_000, delay=0.01)
    generations = Generations()

    async def read_then_stop() -> list[GenerationEvent]:
        events = run_generation(FakeGate(stream), QUERY, generations)  # type: ignore[arg-type]
        first = await anext(events)
        generations.stop_all()
        return [first] + [event async for event in events]

    events = asyncio.run(read_then_stop())
    assert events[-1].kind == "error" and isinstance(events[-1].error, Cancelled)
    assert all(e.kind == "token" for e in events[:-1])
    assert stream.cancelled.is_set() and stream.produced < 100
    assert generations.to_json()["cancelled"] == 1
    # ... and a generation asked for after the stop does not start at all.
    late = FakeStream(limit=5)
    [event] = asyncio.run(collect(FakeGate(late), generations))
    assert event.kind == "error" and isinstance(event.error, Cancelled)
    assert late.produced == 0
