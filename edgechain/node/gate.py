"""The node's one :class:`~edgechain.client.Client`, used by one thread at a time.

The client's SQLite connection and network are not made for concurrent use, and the engine is
blocking, so every call runs in a worker thread (the event loop stays free) while a lock lets
only one of them touch the client. Each call first refreshes the client, so blocks that other
processes (the CLI) committed are seen by the very next request.

The lock is held only for quick reads and writes of storage: a generation holds it just to
resolve its query against certified state; the download and load of its model, and the tokens,
happen outside it (see :class:`~edgechain.service.runtime.ModelService`), so a slow weight host
never holds up another request. A story's mint generates, and has its block certified, outside
it (:meth:`ClientGate.mint_story_blocking`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread

from edgechain.client import Client, MintedStory
from edgechain.service.query import GenerateQuery
from edgechain.service.records import QueryStream

__all__ = ["ClientGate"]

T = TypeVar("T")


class ClientGate:
    """Serialises access to a :class:`Client` and keeps it up to date with storage."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._closed = False
        # Blocks being certified outside the lock (a mint's); close waits for them.
        self._certifying = 0
        self._certified = threading.Condition(self._lock)

    async def call(self, fn: Callable[[Client], T]) -> T:
        """Run ``fn(client)`` in a worker thread, after a refresh, holding the client lock."""
        return await anyio.to_thread.run_sync(self.call_blocking, fn)

    def call_blocking(self, fn: Callable[[Client], T]) -> T:
        """``call`` for code already running in a worker thread."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the node is shutting down")
            self._client.refresh()
            return fn(self._client)

    def start_generation(
        self, query: GenerateQuery, cancelled: Callable[[], bool] | None = None
    ) -> QueryStream:
        """Resolve ``query`` under the client lock, then fetch, verify and load the model and
        start generating outside it (blocking).

        ``cancelled`` is polled while the model downloads: True stops this query's wait (the
        download goes on while another query waits for it, else it is cancelled too).
        """
        prepared, service = self.call_blocking(
            lambda client: (client.service.prepare(query), client.service)
        )
        return service.start(prepared, cancelled=cancelled)

    async def mint_story(self, query: GenerateQuery) -> MintedStory:
        """Mint a story in a worker thread (see :meth:`mint_story_blocking`)."""
        return await anyio.to_thread.run_sync(self.mint_story_blocking, query)

    def mint_story_blocking(self, query: GenerateQuery) -> MintedStory:
        """Mint a story: resolve the query under the client lock, then generate and have the
        block certified outside it (the slow parts: the proposer's generation, as
        :meth:`start_generation` does, and the validators' re-execution).

        Certifying needs no client lock: the chain holds the storage's write lock from its
        head to its commit, so no block can land under it, and a refresh meanwhile waits only
        for the commit and apply (``Network.head_lock``). Other proposals queue behind it.
        """
        pending = self.call_blocking(lambda client: client.prepare_mint(query))
        generated = pending.generate()
        with self._lock:
            if self._closed:
                raise RuntimeError("the node is shutting down")
            self._certifying += 1
        try:
            return self._client.certify_mint(generated)
        finally:
            with self._lock:
                self._certifying -= 1
                self._certified.notify_all()

    def close(self) -> None:
        """Close the client once the calls in flight are done."""
        with self._lock:
            while self._certifying:
                self._certified.wait()
            if not self._closed:
                self._closed = True
                self._client.close()
