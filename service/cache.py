"""A content-addressed cache of verified bytes on disk, keyed by BLAKE3.

Layout under the cache directory::

    objects/<64 hex digits>              one file per digest, written once, never modified
    objects/.<digest>.<pid>-<random>.tmp a write in progress by process <pid>, flock-ed while
                                         written (renamed into place when complete)
    locks/<64 hex digits>.lock           flock-ed while a process downloads that digest;
                                         removed by the holder when it is done

Guarantees:

- :meth:`ContentCache.put` stores only bytes whose digest matches, atomically (temporary file in
  the same directory, fsync, rename, fsync of the directory): a reader sees the whole file or
  none of it, even after a crash.
- :meth:`ContentCache.get` never returns bytes that do not hash to the key. A file that fails
  the check (disk corruption, a user editing it) is deleted, counted in ``stats.corrupted``,
  logged, and reported as a miss.
- :meth:`ContentCache.fetch_verified` downloads a digest at most once at a time: a per-digest
  lock serializes the threads of this process and an ``fcntl.flock`` on the digest's lock file
  serializes processes; whoever waited finds the file in place and does not download again.
- Leftovers of killed processes are removed when the next cache object is made on the
  directory: a temporary or lock file that nobody holds an ``flock`` on, and (for temporaries)
  whose writer's pid is dead or that is over an hour old, is deleted. Nothing is resumed: the
  bytes of an unfinished write were never verified.
- A cached object that cannot be read as a file (a directory in its place, an I/O error) is a
  miss, logged; storing over it raises :class:`~edgechain.errors.StorageCorrupted` naming it.

Re-verification policy (``reverify``). Hashing is cheap next to everything else a query does
(BLAKE3 runs at several GB/s here: the cache benchmark, README "Other benchmarks"), but reading
and hashing a 438 MB model on every query is still ~0.1 s of waste. With the default,
:attr:`Reverify.ONCE_PER_PROCESS`, a file is hashed on its first use in this process (and on
:meth:`put`, the bytes are hashed before they are written); its identity (device, inode, size,
mtime and ctime in ns) is then remembered, and later reads of the same, unchanged file skip the
hash. Any rewrite, replacement or truncation changes that identity and forces a new check. What
it does not catch: an in-place edit within the filesystem's timestamp granularity (a few ms) of
the check, or silent media corruption after the first check; use :attr:`Reverify.ALWAYS` where
that matters.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import blake3

from edgechain.errors import HashMismatch, StorageCorrupted
from edgechain.processes import process_alive
from edgechain.service.engine.files import FileIdentity, file_identity
from edgechain.service.fetch import normalize_blake3_hex

__all__ = [
    "CacheStats",
    "ContentCache",
    "Reverify",
    "SupportsFetchAny",
    "blake3_hex",
    "object_path",
]

log = logging.getLogger(__name__)


class Reverify(StrEnum):
    """When :meth:`ContentCache.get` re-hashes a cached file."""

    ALWAYS = "always"
    ONCE_PER_PROCESS = "once-per-process"


class SupportsFetchAny(Protocol):
    """What :meth:`ContentCache.fetch_verified` needs: :class:`~edgechain.service.fetch.Fetcher`."""

    def fetch_any(
        self,
        urls: Sequence[str],
        *,
        expected_blake3: str,
        expected_size: int | None = None,
        **options: Any,
    ) -> bytes: ...


@dataclass
class CacheStats:
    """Counters since the cache object was made (this process only)."""

    hits: int = 0
    misses: int = 0
    corrupted: int = 0
    downloads: int = 0
    hashed_bytes: int = 0


def blake3_hex(data: bytes | bytearray | memoryview) -> str:
    """BLAKE3 of ``data`` as 64 hex digits, using every core for large buffers."""
    return blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest()


# Threads of one process serialize downloads per (cache directory, digest), whichever
# ContentCache object they use. Entries are a few bytes each and are never removed.
_DOWNLOAD_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_DOWNLOAD_LOCKS_GUARD = threading.Lock()


def object_path(directory: str | Path, digest: str) -> Path:
    """Where a cache in ``directory`` keeps the bytes of ``digest``, without opening the cache
    (a reader that must not create or tidy anything; the bytes are verified on every use only
    through :class:`ContentCache`)."""
    return Path(directory).resolve() / "objects" / normalize_blake3_hex(digest)


class ContentCache:
    """Verified bytes on disk, keyed by their BLAKE3 digest (64 hex digits)."""

    def __init__(
        self, directory: str | Path, *, reverify: Reverify = Reverify.ONCE_PER_PROCESS
    ) -> None:
        self.directory = Path(directory).resolve()
        self.reverify = Reverify(reverify)
        self.stats = CacheStats()
        self._objects = self.directory / "objects"
        self._locks = self.directory / "locks"
        try:
            self._objects.mkdir(parents=True, exist_ok=True)
            self._locks.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageCorrupted(
                f"cannot use the content cache {self.directory}: "
                f"{exc.strerror or exc} ({exc.filename or self.directory})"
            ) from exc
        self._verified: dict[str, FileIdentity] = {}
        self._verified_guard = threading.Lock()
        self._remove_abandoned_temporaries()
        self._remove_abandoned_locks()

    # --- lookup --------------------------------------------------------------------------------

    def path_for(self, digest: str) -> Path:
        """Where the bytes of ``digest`` live (whether or not they are cached)."""
        return object_path(self.directory, digest)

    def get(self, digest: str) -> bytes | None:
        """The cached bytes of ``digest``, verified, or None on a miss (or a corrupted file)."""
        data = self._read_verified(normalize_blake3_hex(digest))
        if data is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return data

    def get_path(self, digest: str) -> Path | None:
        """The path of the verified file for ``digest``, or None; hashes via mmap, reads nothing.

        The file may change after this returns; callers that cannot tolerate that use
        :meth:`get`.
        """
        key = normalize_blake3_hex(digest)
        path = self._objects / key
        try:
            st = path.stat()
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        if not self._known_good(key, st):
            hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
            try:
                if not stat.S_ISREG(st.st_mode):
                    raise IsADirectoryError(21, "not a regular file", str(path))
                hasher.update_mmap(path)
            except OSError as exc:
                self._unreadable(path, exc)
                self.stats.misses += 1
                return None
            self.stats.hashed_bytes += st.st_size
            if hasher.hexdigest() != key or file_identity(path.stat()) != file_identity(st):
                self._discard_corrupted(key, st, hasher.hexdigest())
                self.stats.misses += 1
                return None
            self._remember(key, st)
        self.stats.hits += 1
        return path

    def __contains__(self, digest: str) -> bool:
        """Whether a file for ``digest`` exists (not verified: use :meth:`get` for that)."""
        return self.path_for(digest).is_file()

    # --- store ---------------------------------------------------------------------------------

    def put(self, digest: str, data: bytes | bytearray | memoryview) -> Path:
        """Store ``data`` under ``digest`` atomically; raise HashMismatch if it does not match."""
        key = normalize_blake3_hex(digest)
        actual = blake3_hex(data)
        self.stats.hashed_bytes += len(data)
        if actual != key:
            raise HashMismatch(
                f"refusing to cache bytes under {key}: their BLAKE3 is {actual}",
                expected=key,
                actual=actual,
            )
        path = self._objects / key
        self._clear_non_file(path)
        fd, tmp_name = tempfile.mkstemp(
            dir=self._objects, prefix=f".{key}.{os.getpid()}-", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "wb") as tmp:
                # Held until the file is renamed or deleted: a cache opened meanwhile (another
                # process starting) sees the temporary is in use and leaves it alone.
                fcntl.flock(tmp.fileno(), fcntl.LOCK_EX)
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
                os.chmod(tmp_name, 0o644)
                try:
                    os.replace(tmp_name, path)
                except IsADirectoryError as exc:
                    raise self._damaged(path) from exc
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        _fsync_directory(self._objects)
        self._remember(key, path.stat())
        return path

    def evict(self, digest: str) -> bool:
        """Delete the file for ``digest``; return whether there was one."""
        key = normalize_blake3_hex(digest)
        with self._verified_guard:
            self._verified.pop(key, None)
        try:
            (self._objects / key).unlink()
        except FileNotFoundError:
            return False
        return True

    # --- fetch ---------------------------------------------------------------------------------

    def fetch_verified(
        self,
        digest: str,
        size: int | None,
        urls: Sequence[str],
        fetcher: SupportsFetchAny,
        **fetch_options: Any,
    ) -> bytes:
        """The bytes of ``digest``: from the cache, else downloaded, verified and stored.

        Concurrent calls for one digest, from threads or processes, download it once; the
        others wait and read the stored file. Raises what ``fetcher.fetch_any`` raises
        (:class:`~edgechain.errors.FetchError`, :class:`~edgechain.errors.HashMismatch`,
        :class:`~edgechain.errors.Cancelled`); nothing is stored then. ``fetch_options`` (such
        as ``progress`` and ``cancel``, see :class:`~edgechain.service.fetch.Fetcher`) go to
        ``fetch_any``.
        """
        key = normalize_blake3_hex(digest)
        data = self._read_verified(key)
        if data is not None:
            self.stats.hits += 1
            return data
        self.stats.misses += 1
        with self._download_lock(key):
            # Stored by whoever held the lock before us?
            data = self._read_verified(key, holding_lock=True)
            if data is not None:
                return data
            log.info("cache miss for %s: downloading from %d URL(s)", key, len(urls))
            data = fetcher.fetch_any(
                urls, expected_blake3=key, expected_size=size, **fetch_options
            )
            self.put(key, data)
            self.stats.downloads += 1
            return data

    # --- internals -----------------------------------------------------------------------------

    def _remove_abandoned_temporaries(
        self, max_age_s: float = 24 * 3600, unlocked_max_age_s: float = 3600
    ) -> None:
        """Delete temporary files killed writers left behind (nobody holds their lock).

        A temporary named with a pid is removed when no one holds its lock and that process is
        gone (or, a pid being reusable, when it is over ``unlocked_max_age_s`` old); one from an
        older version, without pid or lock, when it is over ``max_age_s`` old.
        """
        now = time.time()
        for tmp in self._objects.glob(".*.tmp"):
            pid = _writer_pid(tmp.name)
            with contextlib.suppress(OSError), _try_flock(tmp) as free:
                age = now - tmp.stat().st_mtime
                if pid is None:
                    abandoned = age > max_age_s
                else:
                    abandoned = free and (not process_alive(pid) or age > unlocked_max_age_s)
                if abandoned:
                    tmp.unlink()

    def _remove_abandoned_locks(self) -> None:
        """Delete download lock files nobody holds (their holder was killed before removing it)."""
        for lock in self._locks.glob("*.lock"):
            with contextlib.suppress(OSError), _try_flock(lock) as free:
                if free:
                    lock.unlink()

    def _clear_non_file(self, path: Path) -> None:
        """Remove an empty directory where a cached object belongs; refuse anything else odd."""
        try:
            st = path.lstat()
        except FileNotFoundError:
            return
        if stat.S_ISREG(st.st_mode):
            return
        if stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(OSError):
                path.rmdir()
                log.warning("removed an empty directory in place of cached object %s", path)
                return
        raise self._damaged(path)

    def _damaged(self, path: Path) -> StorageCorrupted:
        return StorageCorrupted(
            f"the content cache is damaged: {path} is not a regular file; remove it"
        )

    def _unreadable(self, path: Path, exc: OSError) -> None:
        log.warning(
            "cannot read cached object %s (%s); treating it as not cached",
            path,
            exc.strerror or exc,
        )

    def _read_verified(self, key: str, *, holding_lock: bool = False) -> bytes | None:
        path = self._objects / key
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed below, after a second fstat)
        except FileNotFoundError:
            return None
        except OSError as exc:  # a directory in its place, permissions, I/O
            self._unreadable(path, exc)
            return None
        try:
            with f:
                before = os.fstat(f.fileno())
                data = f.read()
                after = os.fstat(f.fileno())
        except OSError as exc:
            self._unreadable(path, exc)
            return None
        if (
            file_identity(before) == file_identity(after)
            and len(data) == before.st_size
            and self._known_good(key, before)
        ):
            return data
        actual = blake3_hex(data)
        self.stats.hashed_bytes += len(data)
        if actual != key:
            self._discard_corrupted(key, after, actual, holding_lock=holding_lock)
            return None
        if file_identity(before) == file_identity(after):
            self._remember(key, after)
        return data

    def _known_good(self, key: str, st: os.stat_result) -> bool:
        if self.reverify is Reverify.ALWAYS:
            return False
        with self._verified_guard:
            return self._verified.get(key) == file_identity(st)

    def _remember(self, key: str, st: os.stat_result) -> None:
        with self._verified_guard:
            self._verified[key] = file_identity(st)

    def _discard_corrupted(
        self, key: str, st: os.stat_result, actual: str, *, holding_lock: bool = False
    ) -> None:
        """Delete the corrupted file, unless someone already replaced it with a new one."""
        self.stats.corrupted += 1
        with self._verified_guard:
            self._verified.pop(key, None)
        path = self._objects / key
        log.warning(
            "cache file %s is corrupted (BLAKE3 %s); deleting it and treating it as a miss",
            path,
            actual,
        )
        # The lock keeps us from deleting a good file that a concurrent put just renamed in.
        lock = contextlib.nullcontext() if holding_lock else self._download_lock(key)
        with lock:
            try:
                current = path.stat()
            except FileNotFoundError:
                return
            if (current.st_dev, current.st_ino) == (st.st_dev, st.st_ino):
                path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _download_lock(self, key: str) -> Iterator[None]:
        with _DOWNLOAD_LOCKS_GUARD:
            thread_lock = _DOWNLOAD_LOCKS.setdefault((str(self.directory), key), threading.Lock())
        path = self._locks / f"{key}.lock"
        with thread_lock:
            while True:
                try:
                    lock_file = open(path, "a+b")  # noqa: SIM115 (closed below)
                except OSError as exc:
                    raise StorageCorrupted(
                        f"the content cache is damaged: cannot open the lock file {path} "
                        f"({exc.strerror or exc})"
                    ) from exc
                with lock_file:
                    fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
                    # The holder before us removed the file when it was done: our lock is on
                    # an unlinked inode that no one else will lock. Lock the current file.
                    if not _same_file(lock_file.fileno(), path):
                        continue
                    try:
                        yield
                    finally:
                        # Removed while held, so lock files never outlive their use.
                        path.unlink(missing_ok=True)
                        fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
                    return


def _same_file(fd: int, path: Path) -> bool:
    try:
        current = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (current.st_dev, current.st_ino)


@contextlib.contextmanager
def _try_flock(path: Path) -> Iterator[bool]:
    """Whether ``path``'s lock is free, holding it (if it was) for the body."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        # A lock file replaced since we opened it is someone else's now.
        yield _same_file(fd, path)
    finally:
        os.close(fd)


def _writer_pid(name: str) -> int | None:
    """The pid in ``.<digest>.<pid>-<random>.tmp``, or None for older names."""
    parts = name.split(".")
    if len(parts) != 4:
        return None
    pid, dash, _ = parts[2].partition("-")
    return int(pid) if dash and pid.isascii() and pid.isdigit() and len(pid) < 10 else None



def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
