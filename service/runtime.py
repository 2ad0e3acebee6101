"""The service runtime: answer a ``generate`` query with exactly the model the chain certified.

For each query the runtime

1. reads the model's entry from certified state only (a :class:`ModelSource`, which verifies the
   certificate that made the entry current and refuses retired models),
2. gets the weights and tokenizer from the content-addressed cache, or downloads them with
   ``fetch_url``, verifying the BLAKE3 hash before a single byte reaches the engine,
3. loads them once into the engine (a *named model*, scoped to the application, kept across
   queries),
4. resolves the seed (the query's own, else derived from the chain id, the certified block hash,
   the application id and the query), and
5. streams tokens, then a :class:`GenerationRecord` saying what ran and why it stopped.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from edgechain.chain.committee import Committee
from edgechain.contract.operations import FileRef
from edgechain.contract.registry import CertifiedModel
from edgechain.errors import Cancelled, GuestTrap
from edgechain.service.blob_source import BlobFetcher, BlobStorage
from edgechain.service.cache import ContentCache, SupportsFetchAny
from edgechain.service.engine import open_engine
from edgechain.service.engine.base import ClaimVerdict, Engine, LoadedModel
from edgechain.service.engine.files import file_identity
from edgechain.service.fetch import Fetcher, FetchPolicy
from edgechain.service.query import MAX_PROMPT_BYTES, GenerateQuery
from edgechain.service.query_stream import QueryStream
from edgechain.service.records import GenerationRecord, PreparedQuery, Timings
from edgechain.service.seed import resolve_seed

__all__ = [
    "MAX_PROMPT_BYTES",
    "DownloadProgress",
    "GenerateQuery",
    "GenerationRecord",
    "ModelService",
    "ModelSource",
    "PreparedQuery",
    "QueryStream",
    "Timings",
]

# The query and record types live in service/records.py; they are re-exported here, where
# callers of the service have always found them.


class ModelSource(Protocol):
    """Certified registry state, as the service sees it (read-only): the registry
    application's service (``edgechain.contract.registry.ModelRegistryService``) is one.

    ``query_model`` returns the latest active version when ``version`` is None and raises
    ``ModelNotFound`` or ``ModelRetired``. ``committee`` is what certificates are checked
    against.
    """

    committee: Committee

    def query_model(self, name: str, version: str | None = None) -> CertifiedModel: ...


#: Called as ``progress(label, done_bytes, total_bytes)`` while a model's files download
#: (label "weights" or "tokenizer"; total None when unknown).
DownloadProgress = Callable[[str, int, "int | None"], None]

#: How often a query waiting for a model's download checks whether its caller went away (s).
_WAIT_POLL_S = 0.1


class _Loading:
    """One model's download and load, in a background thread, shared by every query waiting
    for it; cancelled (``abort``) when the last of them goes away."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.abort = threading.Event()
        self.waiters = 0
        self.listeners: list[DownloadProgress] = []
        self.result: tuple[LoadedModel, float, float] | None = None
        self.error: BaseException | None = None
        self._guard = threading.Lock()

    def report(self, label: str, done: int, total: int | None) -> None:
        with self._guard:
            listeners = list(self.listeners)
        for listener in listeners:
            with contextlib.suppress(Exception):  # a broken progress bar never fails a fetch
                listener(label, done, total)

    def listen(self, listener: DownloadProgress | None, add: bool) -> None:
        if listener is None:
            return
        with self._guard:
            if add:
                self.listeners.append(listener)
            elif listener in self.listeners:
                self.listeners.remove(listener)


class ModelService:
    """The registry application's service: ``generate`` over certified state.

    One instance serves one application. Loaded models are *named models* in wasi-nn's sense:
    kept across queries, keyed by the certified hashes and scoped to this application, so
    another application (another ``ModelService``) can never reach them.

    Concurrency: a model's download and load run in a background thread shared by every query
    for it (one download per model, however many ask); a query waits for it without holding
    any lock another query needs, and stops waiting when its caller goes away (``cancelled``).
    When every waiter has gone, the download is cancelled. Thread-safe.
    """

    def __init__(
        self,
        source: ModelSource,
        *,
        cache_dir: str | Path,
        engine: Engine | None = None,
        fetch_policy: FetchPolicy | None = None,
        query_timeout: float | None = 120.0,
        blobs: BlobStorage | None = None,
    ) -> None:
        self.source = source
        #: Where files stored as blobs are read (service/blob_source.py); None: URLs only.
        self.blobs = blobs
        self.cache = ContentCache(cache_dir)
        self._engine = engine
        self._engine_lock = threading.Lock()
        self.fetcher = Fetcher(fetch_policy)
        self.query_timeout = query_timeout
        self._models: dict[tuple[str, str, str], LoadedModel] = {}
        self._loading: dict[tuple[str, str, str], _Loading] = {}
        self._models_lock = threading.Lock()
        self._closed = False

    @property
    def engine(self) -> Engine:
        """The engine models load into (the wasm guest unless one was given), opened lazily so
        a query that fails before loading never needs it."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = open_engine("wasm")
            return self._engine

    # --- queries -------------------------------------------------------------------------------

    def generate(
        self,
        query: GenerateQuery,
        *,
        progress: DownloadProgress | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> QueryStream:
        """Start a ``generate`` query and return its token stream: :meth:`prepare`, then
        :meth:`start`.

        Raises ModelNotFound, ModelRetired, CertificateError, FetchError, HashMismatch,
        InvalidParameter or PromptTooLong before any token; GuestTrap, Timeout while streaming.
        """
        return self.start(self.prepare(query), progress=progress, cancelled=cancelled)

    def prepare(self, query: GenerateQuery) -> PreparedQuery:
        """Resolve ``query`` against certified state: the model (certificate verified), the
        seed and the engine parameters. Quick; the only step that reads storage."""
        started = time.perf_counter()
        model = self.source.query_model(query.model, query.version)
        # Trust nothing the committee did not certify, even from our own storage.
        model.verify(self.source.committee)
        seed_source = "derived" if query.seed is None else "query"
        seed = resolve_seed(
            query.seed,
            model.chain_id,
            model.block_hash,
            model.app_id,
            query.seed_query(model.entry.version),
        )
        return PreparedQuery(query, model, seed, seed_source, query.params(seed), started)

    def start(
        self,
        prepared: PreparedQuery,
        *,
        progress: DownloadProgress | None = None,
        cancelled: Callable[[], bool] | None = None,
        timeout: float | None = None,
        hint: Sequence[int] | None = None,
    ) -> QueryStream:
        """Get the model loaded (downloading it if needed) and start generating.

        ``progress`` hears about the download, if one is needed; ``cancelled`` is polled while
        waiting for it: once it returns True this query stops waiting with
        :class:`~edgechain.errors.Cancelled`. ``timeout`` replaces the service's query timeout
        for this generation (an oracle call's share of its block's budget). ``hint``: the
        tokens the generation is claimed to produce (a validator's or a receipt's replay): the
        engine checks them in a batch and is fast when they are right; the tokens are the
        honest generation's whatever the hint (``LoadedModel.generate``).
        """
        model = prepared.model
        loaded, fetch_s, load_s = self._named_model(model, progress, cancelled)
        try:
            budget = self.query_timeout if timeout is None else timeout
            generation = loaded.generate(
                prepared.query.engine_input(), prepared.params, timeout=budget, hint=hint
            )
        except GuestTrap:
            self._discard(model)
            raise
        return QueryStream(
            prepared,
            generation,
            fetch_s=fetch_s,
            load_s=load_s,
            on_failure=lambda: self._discard(model),
            engine=self.engine,
        )

    def verify(
        self,
        prepared: PreparedQuery,
        claimed_ids: Sequence[int],
        *,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> ClaimVerdict:
        """Whether ``claimed_ids`` are exactly what :meth:`start` would generate for
        ``prepared`` (``LoadedModel.verify_claim``: at prefill speed, the verdict a full replay
        gives). ``timeout`` as in :meth:`start`; a set ``cancel`` stops it (Cancelled), also
        while the model downloads."""
        model = prepared.model
        cancelled = None if cancel is None else cancel.is_set
        loaded, _, _ = self._named_model(model, None, cancelled)
        try:
            budget = self.query_timeout if timeout is None else timeout
            return loaded.verify_claim(
                prepared.query.engine_input(),
                prepared.params,
                claimed_ids,
                timeout=budget,
                cancel=cancel,
            )
        except GuestTrap:
            self._discard(model)
            raise

    def loaded_models(self) -> list[tuple[str, str]]:
        """(weights hash, tokenizer hash) of the models loaded in this service."""
        with self._models_lock:
            return [(w, t) for (_, w, t) in self._models]

    def batching(self) -> dict[str, int]:
        """Continuous batching so far, over this service's loaded models: ``engine_calls``
        batched engine calls made, ``steps`` generation steps they served (service/engine/
        batcher.py; more steps than calls: concurrent generations shared weight passes)."""
        with self._models_lock:
            batchers = [m._step_batcher() for m in self._models.values()]  # noqa: SLF001
        return {
            "engine_calls": sum(b.calls for b in batchers),
            "steps": sum(b.steps for b in batchers),
        }

    def close(self) -> None:
        """Free every loaded model and the HTTP client; cancel downloads in flight (without
        waiting for them: their threads end at their next received piece)."""
        with self._models_lock:
            self._closed = True
            loaded = list(self._models.values())
            self._models.clear()
            for loading in self._loading.values():
                loading.abort.set()
        for model in loaded:
            with contextlib.suppress(Exception):
                model.close()
        self.fetcher.close()

    def __enter__(self) -> ModelService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- named models --------------------------------------------------------------------------

    @staticmethod
    def _key(model: CertifiedModel) -> tuple[str, str, str]:
        entry = model.entry
        return (model.app_id.hex(), entry.weights.blake3, entry.tokenizer.blake3)

    def _named_model(
        self,
        model: CertifiedModel,
        progress: DownloadProgress | None,
        cancelled: Callable[[], bool] | None,
    ) -> tuple[LoadedModel, float, float]:
        key = self._key(model)
        with self._models_lock:
            if self._closed:
                raise Cancelled("the service is closed")
            loaded = self._models.get(key)
            if loaded is not None:
                return loaded, 0.0, 0.0
            loading = self._loading.get(key)
            if loading is None:
                loading = self._loading[key] = _Loading()
                threading.Thread(
                    target=self._load_in_background,
                    args=(key, model, loading),
                    name="edgechain-model-load",
                    daemon=True,  # a stalled download never keeps the process alive
                ).start()
            loading.waiters += 1
        loading.listen(progress, add=True)
        try:
            while not loading.done.wait(_WAIT_POLL_S):
                if cancelled is not None and cancelled():
                    raise Cancelled(f"query for {model.entry.name} cancelled while it downloaded")
        finally:
            loading.listen(progress, add=False)
            with self._models_lock:
                loading.waiters -= 1
                if loading.waiters == 0 and not loading.done.is_set():
                    loading.abort.set()
                    if self._loading.get(key) is loading:
                        del self._loading[key]  # the next query starts afresh
        if loading.error is not None:
            raise loading.error
        assert loading.result is not None
        return loading.result

    def _load_in_background(
        self, key: tuple[str, str, str], model: CertifiedModel, loading: _Loading
    ) -> None:
        try:
            result = self._fetch_and_load(model, loading)
            with self._models_lock:
                if self._closed:
                    result[0].close()
                    raise Cancelled("the service closed while the model loaded")
                self._models[key] = result[0]
            loading.result = result
        except BaseException as err:  # handed to every waiter
            loading.error = err
        finally:
            with self._models_lock:
                if self._loading.get(key) is loading:
                    del self._loading[key]
            loading.done.set()

    def _fetch_and_load(
        self, model: CertifiedModel, loading: _Loading
    ) -> tuple[LoadedModel, float, float]:
        # A GGUF entry's tokenizer is its weights file (contract/operations.py): one file to
        # fetch, loaded with no separate tokenizer.
        gguf = model.entry.format == "gguf"
        cached = self._load_cached(model.entry.weights, model.entry.tokenizer, gguf)
        if cached is not None:
            return cached
        t0 = time.perf_counter()
        # Downloaded, verified and stored; the bytes are dropped at once so that loading
        # from the stored file never holds them next to the engine's copy of the weights.
        self._fetch(model.entry.weights, "weights", loading)
        if not gguf:
            self._fetch(model.entry.tokenizer, "tokenizer", loading)
        fetch_s = time.perf_counter() - t0
        cached = self._load_cached(model.entry.weights, model.entry.tokenizer, gguf)
        if cached is not None:
            return cached[0], fetch_s + cached[1], cached[2]
        # Not loadable from the cache (not stored, or changed): the verified bytes.
        t0 = time.perf_counter()
        weights = self._fetch(model.entry.weights, "weights", loading)
        tokenizer = b"" if gguf else self._fetch(model.entry.tokenizer, "tokenizer", loading)
        t1 = time.perf_counter()
        loaded = self.engine.load(weights, tokenizer)
        return loaded, fetch_s + t1 - t0, time.perf_counter() - t1

    def _load_cached(
        self, weights: FileRef, tokenizer: FileRef, gguf: bool = False
    ) -> tuple[LoadedModel, float, float] | None:
        """Load both files from the cache by path (the engine reads the weights straight into
        its memory: one copy of them in the process); None when either is not cached.

        ``get_path`` verified the files' hashes for their current identity (inode, size,
        mtime, ctime). The cache's files are immutable by design (written once, then renamed
        into place), so this only guards against tampering: the identities are taken before
        the load and checked after it (the engine also checks the checkpoint's while
        reading), and ``get_path`` is asked again, which confirms they are still the verified
        versions. Any difference discards the model and falls back to the verified bytes.
        """
        t0 = time.perf_counter()
        paths = [self.cache.get_path(weights.blake3), self.cache.get_path(tokenizer.blake3)]
        weights_path, tokenizer_path = paths
        if weights_path is None or tokenizer_path is None:
            return None
        try:
            before = [file_identity(p.stat()) for p in (weights_path, tokenizer_path)]
        except OSError:
            return None
        t1 = time.perf_counter()
        loaded = self.engine.load_files(weights_path, None if gguf else tokenizer_path)
        load_s = time.perf_counter() - t1
        try:
            again = [self.cache.get_path(weights.blake3), self.cache.get_path(tokenizer.blake3)]
            after = [file_identity(p.stat()) for p in (weights_path, tokenizer_path)]
        except OSError:
            again, after = [], []
        if again != paths or after != before:
            loaded.close()
            return None
        return loaded, t1 - t0, load_s

    def _fetch(self, file: FileRef, label: str, loading: _Loading) -> bytes:
        def progress(done: int, total: int | None) -> None:
            loading.report(label, done, total)

        fetcher: SupportsFetchAny = self.fetcher
        if file.chunks and self.blobs is not None:
            fetcher = BlobFetcher(self.blobs, file, fallback=self.fetcher)
        return self.cache.fetch_verified(
            file.blake3,
            file.size,
            list(file.urls),
            fetcher,
            progress=progress,
            cancel=loading.abort,
        )

    def _discard(self, model: CertifiedModel) -> None:
        """Forget a model whose guest instance trapped or timed out; the next query reloads it."""
        with self._models_lock:
            loaded = self._models.pop(self._key(model), None)
        if loaded is not None:
            # The instance is already broken: dropping it is all that matters.
            with contextlib.suppress(Exception):
                loaded.close()
