"""The node's one :class:`~edgechain.client.Client`, used by one thread at a time.

The client's SQLite connection and network are not made for concurrent use, and the engine is
blocking, so every call runs in a worker thread (the event loop stays free) while a lock lets
only one of them touch the client. Each call first refreshes the client, so blocks that other
processes (the CLI) committed are seen by the very next request.

The lock is held only for quick reads and writes of storage: a generation holds it just to
resolve its query against certified state; the download and load of its model, and the tokens,
happen outside it (see :class:`~edgechain.service.runtime.ModelService`), so a slow weight host
never holds up another request. Blocks are proposed and certified outside it too
(:meth:`ClientGate.propose`), a story's generation with them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread

from edgechain.client import Client, MintedStory
from edgechain.service.query import GenerateQuery
from edgechain.service.query_stream import QueryStream

__all__ = ["ClientGate"]

T = TypeVar("T")


class ClientGate:
    """Serialises access to a :class:`Client` and keeps it up to date with storage."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._closed = False
        # Blocks being proposed outside the lock (see propose); close waits for them.
        self._proposing = 0
        self._proposed = threading.Condition(self._lock)
        # Set (then replaced) when a block lands: a local proposal, or a refresh that picked up
        # another process's; notification subscribers wait on it (see blocks_landed).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._blocks_landed = asyncio.Event()

    async def call(self, fn: Callable[[Client], T]) -> T:
        """Run ``fn(client)`` in a worker thread, after a refresh, holding the client lock."""
        return await anyio.to_thread.run_sync(self.call_blocking, fn)

    def call_blocking(self, fn: Callable[[Client], T]) -> T:
        """``call`` for code already running in a worker thread."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the node is shutting down")
            if self._client.refresh():
                self._signal_blocks()
            return fn(self._client)

    async def propose(self, fn: Callable[[Client], T]) -> T:
        """Run ``fn(client)``, which proposes a block, in a worker thread without the client
        lock (see :meth:`propose_blocking`)."""
        return await anyio.to_thread.run_sync(self.propose_blocking, fn)

    def propose_blocking(self, fn: Callable[[Client], T]) -> T:
        """Run ``fn(client)``, which proposes a block and reads certified state, without the
        client lock: certifying a block (validators voting, re-executing a story) must not
        hold up the node's queries.

        It is safe because the chain holds the storage's write lock from reading its head to
        its commit, so no block lands under the proposal, and a refresh meanwhile waits only
        for the commit and apply (``Network.head_lock``); proposals queue on the write lock.
        No refresh first: the proposal catches up on its own.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the node is shutting down")
            self._proposing += 1
        try:
            return fn(self._client)
        finally:
            with self._lock:
                self._proposing -= 1
                self._proposed.notify_all()
            self._signal_blocks()

    def blocks_landed(self) -> asyncio.Event:
        """An event set when the next block lands: proposed here, or picked up from another
        process by any call's refresh. Take it before reading the chain, so a block landing
        during the read is not missed. Call from the event loop."""
        self._loop = asyncio.get_running_loop()
        return self._blocks_landed

    def _signal_blocks(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_waiters)

    def _wake_waiters(self) -> None:
        landed, self._blocks_landed = self._blocks_landed, asyncio.Event()
        landed.set()

    def start_generation(
        self, query: GenerateQuery, cancelled: Callable[[], bool] | None = None
    ) -> QueryStream:
        """Resolve ``query`` under the client lock, then fetch, verify and load the model and
        start generating outside it (blocking).

        ``cancelled`` is polled while the model downloads: True stops this query's wait (the
        download goes on while another query waits for it, else it is cancelled too).
        """
        pending = self.call_blocking(lambda client: client.prepare_generation(query))
        return pending.start(cancelled=cancelled)

    async def mint_story(self, query: GenerateQuery) -> MintedStory:
        """Mint a story in a worker thread (see :meth:`mint_story_blocking`)."""
        return await anyio.to_thread.run_sync(self.mint_story_blocking, query)

    def mint_story_blocking(self, query: GenerateQuery) -> MintedStory:
        """Mint a story: resolve the query under the client lock, then generate (as
        :meth:`start_generation` does) and propose the block (validators re-execute the
        generation; :meth:`propose_blocking`) outside it."""
        pending = self.call_blocking(lambda client: client.prepare_mint(query))
        generated = pending.generate()
        return self.propose_blocking(lambda client: client.certify_mint(generated))

    def close(self) -> None:
        """Close the client once the calls in flight are done."""
        with self._lock:
            if self._closed:
                return
            self._closed = True  # refuses new calls and proposals from now on
            while self._proposing:
                self._proposed.wait()
            self._client.close()
