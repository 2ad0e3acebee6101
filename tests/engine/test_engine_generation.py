"""The Generation iterator shared by both backends, driven by a scripted fake session."""

from __future__ import annotations

import time

import pytest

from edgechain import errors
from edgechain.service.engine import Generation, StopReason
from edgechain.service.engine.base import Step


class FakeSession:
    """Produces scripted (id, bytes) steps, then stops with ``reason``."""

    def __init__(self, steps: list[tuple[int, bytes]], reason: int = 2, delay: float = 0) -> None:
        self.steps = list(steps)
        self.reason = reason
        self.delay = delay
        self.generated = 0
        self.freed = 0

    def prompt_bytes(self) -> bytes:
        return b"Once"

    def step(self, deadline: float | None) -> Step:
        time.sleep(self.delay)
        if not self.steps:
            return Step(None, self.reason, 3, self.generated)
        self.generated += 1
        return Step(self.steps.pop(0), 0, 3, self.generated)

    def counts(self) -> tuple[int, int]:
        return 3, self.generated

    def free(self) -> None:
        self.freed += 1


def test_tokens_text_and_stop_reason() -> None:
    session = FakeSession([(10, b" upon"), (11, b" a"), (12, b" time")], reason=1)
    gen = Generation(session)
    assert gen.prompt_text == "Once" and gen.prompt_data == b"Once"
    tokens = list(gen)
    assert [t.id for t in tokens] == [10, 11, 12]
    assert gen.text == " upon a time"
    assert gen.stop_reason is StopReason.END_OF_SEQUENCE
    assert (gen.prompt_tokens, gen.generated_tokens) == (3, 3)
    assert session.freed == 1
    assert list(gen) == []


def test_a_character_split_across_tokens_appears_with_the_completing_token() -> None:
    snowman = "☃".encode()
    gen = Generation(FakeSession([(1, snowman[:1]), (2, snowman[1:]), (3, b"!")]))
    tokens = list(gen)
    assert [t.text for t in tokens] == ["", "☃", "!"]
    assert b"".join(t.data for t in tokens) == "☃!".encode()


def test_an_unfinished_character_is_replaced_at_the_end() -> None:
    gen = Generation(FakeSession([(1, "é".encode()[:1])]))
    list(gen)
    assert gen.text == "\ufffd"


def test_cancel_ends_iteration_and_frees_once() -> None:
    session = FakeSession([(i, b"x") for i in range(10)])
    gen = Generation(session)
    next(gen)
    gen.cancel()
    gen.cancel()
    assert list(gen) == []
    assert gen.stop_reason is StopReason.CANCELLED
    assert session.freed == 1


def test_a_budget_spent_between_tokens_raises_timeout_and_frees() -> None:
    session = FakeSession([(i, b"x") for i in range(100)], delay=0.02)
    gen = Generation(session, timeout=0.05)
    with pytest.raises(errors.Timeout, match="budget of 0.05 s"):
        list(gen)
    assert session.freed == 1
