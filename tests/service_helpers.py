"""Helpers for the service tests: the stories260K files as constants, publishing them, a quick
fetch policy, running one call in several threads at once, recording the engine's hints."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from edgechain.client import Client, PublishedModel
from edgechain.service.engine import LoadedModel
from edgechain.service.fetch import FetchPolicy
from edgechain.testing.models import stories260k

T = TypeVar("T")

STORIES = stories260k()
MODELS = STORIES.directory
MODEL = STORIES.weights.name
MODEL_BLAKE3 = STORIES.weights_blake3
MODEL_SIZE = 1_056_540
TOKENIZER = STORIES.tokenizer.name
TOKENIZER_BLAKE3 = STORIES.tokenizer_blake3

#: Short timeouts: a stalled download fails the test in seconds, not minutes.
FAST_FETCH = FetchPolicy(read_timeout=0.5, connect_timeout=0.5, total_timeout=5.0)


def publish_stories(
    client: Client, base_url: str, name: str = "stories260K", **options: object
) -> PublishedModel:
    """Publish the stories260K files as ``name`` on ``client``'s network, with the URLs a server
    at ``base_url`` serves them at (under their own names: ``stories260K.bin``, ``tok512.bin``)."""
    return client.publish_model(
        name,
        weights=STORIES.weights,
        tokenizer=STORIES.tokenizer,
        weights_urls=[f"{base_url}/{MODEL}"],
        tokenizer_urls=[f"{base_url}/{TOKENIZER}"],
        **options,  # type: ignore[arg-type]
    )


def run_in_threads(
    call: Callable[[], T], count: int, *, barrier: bool = False
) -> tuple[list[T], list[BaseException]]:
    """``call()`` in ``count`` threads at once (released together when ``barrier``): its
    results and the exceptions raised, once every thread has finished."""
    start = threading.Barrier(count) if barrier else None
    results: list[T] = []
    failures: list[BaseException] = []

    def run() -> None:
        if start is not None:
            start.wait()
        try:
            results.append(call())
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, failures


def record_hints(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ``hint`` of every generation started from now on, in order."""
    hints: list[Any] = []
    original = LoadedModel.generate

    def generate(self: LoadedModel, *args: Any, hint: Any = None, **kwargs: Any) -> Any:
        hints.append(None if hint is None else list(hint))
        return original(self, *args, hint=hint, **kwargs)

    monkeypatch.setattr(LoadedModel, "generate", generate)
    return hints


def record_claims(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The claimed ids of every ``verify_claim`` started from now on, in order."""
    claims: list[list[int]] = []
    original = LoadedModel.verify_claim

    def verify_claim(self: LoadedModel, prompt: Any, params: Any, claimed: Any, **kw: Any) -> Any:
        claims.append(list(claimed))
        return original(self, prompt, params, claimed, **kw)

    monkeypatch.setattr(LoadedModel, "verify_claim", verify_claim)
    return claims
