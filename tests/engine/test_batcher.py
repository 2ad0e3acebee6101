"""Continuous batching (service/engine/batcher.py): concurrent generations of one model step
together, each still producing exactly its solo tokens, on both engines; sessions join, leave,
are cancelled, fail and time out without disturbing the others."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from edgechain import errors
from edgechain.service.engine import Engine, Generation, LoadedModel, StopReason
from edgechain.service.engine.base import GenerationParams, Step
from edgechain.service.engine.batcher import StepBatcher
from edgechain.testing.models import ModelFiles

PROMPTS = ["Once upon a time", "Lily", "The cat", "One day", "Tom and Sam", "A big dog"]


class Counted:
    """A model's ``step_batch`` wrapped: records every call's batch size and deadline."""

    def __init__(self, model: LoadedModel) -> None:
        self.inner = model.step_batch
        self.sizes: list[int] = []
        self.deadlines: list[float | None] = []
        self._lock = threading.Lock()
        model.step_batch = self  # type: ignore[method-assign]

    def reset(self) -> None:
        self.sizes.clear()
        self.deadlines.clear()

    def __call__(self, drivers: Sequence[Any], deadline: float | None) -> list[Step]:
        with self._lock:
            self.sizes.append(len(drivers))
            self.deadlines.append(deadline)
        return self.inner(drivers, deadline)


@pytest.fixture(params=["wasm", "native"])
def fresh(request: pytest.FixtureRequest, stories260k: ModelFiles) -> Iterator[LoadedModel]:
    """stories260K freshly loaded in each engine in turn, its ``step_batch`` counted (wrapped
    before its batcher is made) as ``model.counted``."""
    engine: Engine = request.getfixturevalue(f"{request.param}_engine")
    with stories260k.load(engine) as model:
        model.counted = Counted(model)  # type: ignore[attr-defined]
        yield model


def params(seed: int, tokens: int = 40) -> GenerationParams:
    return GenerationParams(temperature=1.0, top_p=0.9, seed=seed, max_tokens=tokens)


def solo(model: LoadedModel, prompt: str, p: GenerationParams) -> tuple[list[int], str]:
    gen = model.generate(prompt, p)
    ids = [t.id for t in gen]
    return ids, gen.text


def run_threads(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run ``jobs`` in threads started together; their results (or exceptions), in order."""
    results: list[Any] = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def body(i: int) -> None:
        barrier.wait()
        try:
            results[i] = jobs[i]()
        except BaseException as err:  # handed to the test
            results[i] = err

    threads = [threading.Thread(target=body, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def consume(gen: Generation, after: Callable[[int], None] | None = None) -> tuple[list[int], str]:
    ids = []
    for token in gen:
        ids.append(token.id)
        if after is not None:
            after(len(ids))
    return ids, gen.text


def test_concurrent_generations_each_get_their_solo_text_in_fewer_engine_calls(
    fresh: LoadedModel,
) -> None:
    expected = [solo(fresh, p, params(i)) for i, p in enumerate(PROMPTS)]
    counted: Counted = fresh.counted  # type: ignore[attr-defined]
    counted.reset()
    # Started before any thread steps, so every step already waits for the others (started in
    # the threads, a fast engine may finish one generation before the next has begun).
    gens = [fresh.generate(p, params(i)) for i, p in enumerate(PROMPTS)]
    results = run_threads([lambda g=g: consume(g) for g in gens])
    assert results == expected
    steps = sum(counted.sizes)
    assert steps == sum(len(ids) + 1 for ids, _ in expected)  # each token, then its stop
    assert len(counted.sizes) < steps
    assert max(counted.sizes) > 1


def test_sessions_join_and_leave_between_steps(fresh: LoadedModel) -> None:
    long_p, short_p = params(1, tokens=80), params(2, tokens=5)
    expected_long = solo(fresh, "Once upon a time", long_p)
    expected_short = [solo(fresh, p, short_p) for p in PROMPTS[1:4]]
    counted: Counted = fresh.counted  # type: ignore[attr-defined]
    counted.reset()
    joined: list[tuple[list[int], str] | BaseException] = []
    started: list[threading.Thread] = []

    def join_later(n: int) -> None:
        # A new short generation joins every 15 tokens of the long one, and leaves soon.
        if n % 15 == 0 and n // 15 <= len(expected_short):
            # Joined here, between two steps of the long generation; consumed in its thread.
            gen = fresh.generate(PROMPTS[n // 15], short_p)

            def short() -> None:
                joined.append(consume(gen))

            started.append(threading.Thread(target=short))
            started[-1].start()

    assert consume(fresh.generate("Once upon a time", long_p), join_later) == expected_long
    for t in started:
        t.join(60)
    assert sorted(joined) == sorted(expected_short)
    assert max(counted.sizes) >= 2  # the joiners did share steps with the long generation


def test_a_generation_cancelled_mid_batch_leaves_the_others_untouched(
    fresh: LoadedModel,
) -> None:
    expected = [solo(fresh, p, params(i, 60)) for i, p in enumerate(PROMPTS[:3])]
    gens = [fresh.generate(p, params(i, 60)) for i, p in enumerate(PROMPTS[:3])]
    five = threading.Event()
    cancelled = threading.Event()
    victim: list[int] = []

    def watch(n: int) -> None:
        if n == 5:
            five.set()
            # The victim pauses until another thread has cancelled it, so the cancel cannot
            # lose a race with the victim's last token (a fast engine finishes 60 in a blink).
            cancelled.wait(30)

    def cancel_it() -> None:
        five.wait(30)
        gens[1].cancel()
        cancelled.set()

    jobs = [
        lambda: consume(gens[0]),
        lambda: victim.extend(consume(gens[1], watch)[0]),
        lambda: consume(gens[2]),
        cancel_it,
    ]
    results = run_threads(jobs)
    assert results[0] == expected[0] and results[2] == expected[2]
    assert gens[1].stop_reason is StopReason.CANCELLED
    assert 5 <= len(victim) < len(expected[1][0])
    assert victim == expected[1][0][: len(victim)]
    # Every generation left the batcher: none is waited for any more.
    assert fresh._step_batcher().members == 0
    assert solo(fresh, PROMPTS[0], params(0, 60)) == expected[0]


def test_a_session_stopping_on_a_full_context_does_not_stop_the_others(
    fresh: LoadedModel,
) -> None:
    full_prompt = "Once upon a time there was a cat. " * 50  # 502 of 512 positions
    greedy = GenerationParams(temperature=0.0)
    expected = [solo(fresh, p, params(i, 60)) for i, p in enumerate(PROMPTS[:2])]
    expected_full = solo(fresh, full_prompt, greedy)
    gens = [fresh.generate(p, params(i, 60)) for i, p in enumerate(PROMPTS[:2])]
    full = fresh.generate(full_prompt, greedy)
    jobs = [lambda: consume(gens[0]), lambda: consume(full), lambda: consume(gens[1])]
    results = run_threads(jobs)
    assert results == [expected[0], expected_full, expected[1]]
    assert full.stop_reason is StopReason.CONTEXT_FULL


def test_one_sessions_deadline_does_not_interrupt_the_others(fresh: LoadedModel) -> None:
    expected = solo(fresh, PROMPTS[0], params(0, 120))
    counted: Counted = fresh.counted  # type: ignore[attr-defined]
    counted.reset()
    hurried = fresh.generate(PROMPTS[1], params(1, 120), timeout=0.3)
    patient = fresh.generate(PROMPTS[0], params(0, 120))

    def slow_consumer() -> None:
        next(hurried)
        time.sleep(0.5)  # its budget runs out between steps
        list(hurried)

    results = run_threads([slow_consumer, lambda: consume(patient)])
    assert isinstance(results[0], errors.Timeout)
    assert results[1] == expected
    # Every batched call that served the patient generation had no deadline (only a backstop
    # for batches in which every session is late), so its instance was never interrupted.
    assert all(d is None for d, n in zip(counted.deadlines, counted.sizes, strict=True) if n > 1)
    assert not getattr(fresh, "discarded", False)
    assert solo(fresh, PROMPTS[0], params(0, 120)) == expected


# --- the batcher's rules, on a scripted model ------------------------------------------------


class Script:
    """A scripted session: ``n`` tokens, a step taking ``delay`` s; ``fail_at`` raises."""

    def __init__(self, n: int, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.n, self.delay, self.fail_at = n, delay, fail_at
        self.done = 0
        self.freed = False

    def prompt_bytes(self) -> bytes:
        return b"P"

    def step(self, deadline: float | None) -> Step:
        time.sleep(self.delay)
        if self.fail_at is not None and self.done == self.fail_at:
            raise errors.EngineInternalError("scripted failure")
        if self.done == self.n:
            return Step(None, int(StopReason.MAX_TOKENS), 1, self.done)
        self.done += 1
        return Step((self.done, b"x"), 0, 1, self.done)

    def counts(self) -> tuple[int, int]:
        return 1, self.done

    def free(self) -> None:
        self.freed = True


def scripted(batcher: StepBatcher, session: Script, timeout: float | None = None) -> Generation:
    return Generation(session, timeout=timeout, batcher=batcher)


def loop_batch(drivers: Sequence[Any], deadline: float | None) -> list[Step]:
    return LoadedModel.step_batch(None, drivers, deadline)  # type: ignore[arg-type]


def test_a_failing_session_fails_alone() -> None:
    batcher = StepBatcher(loop_batch)
    sessions = [Script(20, 0.001), Script(20, 0.001, fail_at=3), Script(20, 0.001)]
    gens = [scripted(batcher, s) for s in sessions]
    results = run_threads([lambda g=g: len(list(g)) for g in gens])
    assert results[0] == 20 and results[2] == 20
    assert isinstance(results[1], errors.EngineInternalError)
    assert all(s.freed for s in sessions)
    assert batcher.steps < 3 * 21 and batcher.calls < batcher.steps


def test_a_whole_batch_failure_reaches_every_session_in_it() -> None:
    def broken(drivers: Sequence[Any], deadline: float | None) -> list[Step]:
        raise errors.GuestTrap("scripted trap")

    batcher = StepBatcher(broken)
    gens = [scripted(batcher, Script(5)) for _ in range(3)]
    results = run_threads([lambda g=g: list(g) for g in gens])
    assert all(isinstance(r, errors.GuestTrap) for r in results)


def test_a_late_request_leaves_the_batch_before_it_runs() -> None:
    seen: list[tuple[int, float | None]] = []

    def record(drivers: Sequence[Any], deadline: float | None) -> list[Step]:
        seen.append((len(drivers), deadline))
        return loop_batch(drivers, deadline)

    batcher = StepBatcher(record)
    hurried = scripted(batcher, Script(1000, 0.02), timeout=0.15)
    patient = scripted(batcher, Script(15, 0.02))
    results = run_threads([lambda: list(hurried), lambda: len(list(patient))])
    assert isinstance(results[0], errors.Timeout)
    assert results[1] == 15
    assert all(deadline is None for n, deadline in seen if n > 1)
    assert any(n > 1 for n, _ in seen)
