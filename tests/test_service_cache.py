"""ContentCache: verified reads, atomic writes, corruption handling, download-once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from service_helpers import MODEL, MODEL_BLAKE3, MODEL_SIZE, MODELS, run_in_threads

from edgechain.errors import FetchError, HashMismatch, InputError
from edgechain.service.cache import ContentCache, Reverify, blake3_hex
from edgechain.service.fetch import Fetcher
from edgechain.testing.weight_server import HostFault, WeightServer

MODEL_BYTES = (MODELS / MODEL).read_bytes()


def stored_files(cache: ContentCache) -> list[str]:
    """Every file under objects/, temporary ones included."""
    return sorted(p.name for p in (cache.directory / "objects").iterdir())


def corrupt_in_place(path: Path, offset: int = 1234) -> None:
    # Past the timestamp granularity of the put, as a later edit would be.
    time.sleep(0.02)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


# --- get and put ---------------------------------------------------------------------------------


def test_put_then_get_returns_the_bytes(cache: ContentCache) -> None:
    path = cache.put(MODEL_BLAKE3, MODEL_BYTES)
    assert path == cache.path_for(MODEL_BLAKE3)
    assert path.read_bytes() == MODEL_BYTES
    assert cache.get(MODEL_BLAKE3) == MODEL_BYTES
    assert ContentCache(cache.directory).get(MODEL_BLAKE3.upper()) == MODEL_BYTES
    assert stored_files(cache) == [MODEL_BLAKE3]


def test_get_of_an_unknown_hash_is_a_miss(cache: ContentCache) -> None:
    assert cache.get(MODEL_BLAKE3) is None
    assert cache.get_path(MODEL_BLAKE3) is None
    assert cache.stats.misses == 2 and cache.stats.hits == 0


def test_put_refuses_bytes_that_do_not_match(cache: ContentCache) -> None:
    with pytest.raises(HashMismatch) as info:
        cache.put(MODEL_BLAKE3, MODEL_BYTES[:-1])
    assert info.value.expected == MODEL_BLAKE3
    assert info.value.actual == blake3_hex(MODEL_BYTES[:-1])
    assert stored_files(cache) == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ab", "g" * 64, MODEL_BLAKE3 + "0"])
def test_malformed_keys_are_input_errors(cache: ContentCache, bad: str) -> None:
    with pytest.raises(InputError):
        cache.get(bad)
    with pytest.raises(InputError):
        cache.put(bad, b"")


def test_evict_removes_the_file(cache: ContentCache) -> None:
    cache.put(MODEL_BLAKE3, MODEL_BYTES)
    assert MODEL_BLAKE3 in cache
    assert cache.evict(MODEL_BLAKE3) is True
    assert MODEL_BLAKE3 not in cache
    assert cache.evict(MODEL_BLAKE3) is False
    assert cache.get(MODEL_BLAKE3) is None


def test_get_path_verifies_the_file(cache: ContentCache) -> None:
    path = cache.put(MODEL_BLAKE3, MODEL_BYTES)
    assert ContentCache(cache.directory).get_path(MODEL_BLAKE3) == path
    corrupt_in_place(path)
    fresh = ContentCache(cache.directory)
    assert fresh.get_path(MODEL_BLAKE3) is None
    assert fresh.stats.corrupted == 1
    assert not path.exists()


# --- corruption on disk --------------------------------------------------------------------------


@pytest.mark.parametrize("reverify", list(Reverify))
def test_a_file_altered_on_disk_is_detected_deleted_and_a_miss(
    cache: ContentCache, reverify: Reverify
) -> None:
    reader = ContentCache(cache.directory, reverify=reverify)
    path = cache.put(MODEL_BLAKE3, MODEL_BYTES)
    assert reader.get(MODEL_BLAKE3) == MODEL_BYTES  # verified once: remembered
    corrupt_in_place(path)
    assert reader.get(MODEL_BLAKE3) is None
    assert reader.stats.corrupted == 1
    assert not path.exists()


def test_a_truncated_cache_file_is_a_miss(cache: ContentCache) -> None:
    path = cache.put(MODEL_BLAKE3, MODEL_BYTES)
    os.truncate(path, 1000)
    assert cache.get(MODEL_BLAKE3) is None
    assert cache.stats.corrupted == 1


def test_an_edit_hidden_by_restoring_the_mtime_is_still_detected(cache: ContentCache) -> None:
    path = cache.put(MODEL_BLAKE3, MODEL_BYTES)
    assert cache.get(MODEL_BLAKE3) == MODEL_BYTES
    before = path.stat()
    corrupt_in_place(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the ctime moves anyway
    assert cache.get(MODEL_BLAKE3) is None


def test_once_per_process_skips_the_hash_on_later_gets(cache: ContentCache) -> None:
    cache.put(MODEL_BLAKE3, MODEL_BYTES)
    reader = ContentCache(cache.directory)
    for _ in range(3):
        assert reader.get(MODEL_BLAKE3) == MODEL_BYTES
    assert reader.stats.hashed_bytes == MODEL_SIZE
    always = ContentCache(cache.directory, reverify=Reverify.ALWAYS)
    for _ in range(3):
        assert always.get(MODEL_BLAKE3) == MODEL_BYTES
    assert always.stats.hashed_bytes == 3 * MODEL_SIZE


# --- atomic put ----------------------------------------------------------------------------------


def test_a_put_that_fails_midway_leaves_no_file(
    cache: ContentCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        cache.put(MODEL_BLAKE3, MODEL_BYTES)
    monkeypatch.undo()
    assert stored_files(cache) == []
    assert cache.get(MODEL_BLAKE3) is None


def test_readers_never_see_a_partial_file(cache: ContentCache) -> None:
    data = os.urandom(24 << 20)
    digest = blake3_hex(data)
    reader = ContentCache(cache.directory, reverify=Reverify.ALWAYS)
    results: list[bool] = []
    done = threading.Event()

    def read_until_done() -> None:
        while not done.is_set():
            got = reader.get(digest)
            results.append(got is None or got == data)

    thread = threading.Thread(target=read_until_done)
    thread.start()
    try:
        for _ in range(5):
            cache.put(digest, data)
    finally:
        done.set()
        thread.join()
    assert results and all(results)
    assert reader.stats.corrupted == 0
    assert stored_files(cache) == [digest]


def test_abandoned_temporary_files_are_removed_when_old(cache: ContentCache) -> None:
    objects = cache.directory / "objects"
    old = objects / f".{MODEL_BLAKE3}.crashed.tmp"
    recent = objects / f".{MODEL_BLAKE3}.writing.tmp"
    old.write_bytes(b"partial")
    recent.write_bytes(b"partial")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    ContentCache(cache.directory)
    assert not old.exists()
    assert recent.exists()  # may belong to a writer in another process


# --- fetch_verified ------------------------------------------------------------------------------


def test_fetch_verified_downloads_once_then_hits(
    cache: ContentCache, stories_server: WeightServer, fetcher: Fetcher
) -> None:
    urls = [stories_server.url(MODEL)]
    assert cache.fetch_verified(MODEL_BLAKE3, MODEL_SIZE, urls, fetcher) == MODEL_BYTES
    assert cache.fetch_verified(MODEL_BLAKE3, MODEL_SIZE, urls, fetcher) == MODEL_BYTES
    other = ContentCache(cache.directory)  # a new service process, same cache directory
    assert other.fetch_verified(MODEL_BLAKE3, MODEL_SIZE, urls, fetcher) == MODEL_BYTES
    assert stories_server.request_count(MODEL) == 1
    assert cache.stats.downloads == 1 and cache.stats.hits == 1
    assert other.stats.downloads == 0 and other.stats.hits == 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [(HostFault(corrupt_offset=7), HashMismatch), (HostFault(truncate_to=500_000), FetchError)],
    ids=["corrupted", "truncated"],
)
def test_a_bad_download_is_not_cached(
    cache: ContentCache,
    stories_server: WeightServer,
    fetcher: Fetcher,
    fault: HostFault,
    error: type[Exception],
) -> None:
    stories_server.inject(MODEL, fault)
    with pytest.raises(error):
        cache.fetch_verified(MODEL_BLAKE3, MODEL_SIZE, [stories_server.url(MODEL)], fetcher)
    assert stored_files(cache) == []
    stories_server.inject(MODEL, None)
    assert cache.fetch_verified(MODEL_BLAKE3, MODEL_SIZE, [stories_server.url(MODEL)], fetcher)
    assert stories_server.request_count(MODEL) == 2


def test_a_corrupted_cache_file_is_fetched_again(
    cache: ContentCache, stories_server: WeightServer, fetcher: Fetcher
) -> None:
    urls = [stories_server.url(MODEL)]
    cache.fetch_verified(MODEL_BLAKE3, MODEL_SIZE, urls, fetcher)
    corrupt_in_place(cache.path_for(MODEL_BLAKE3))
    assert cache.fetch_verified(MODEL_BLAKE3, MODEL_SIZE, urls, fetcher) == MODEL_BYTES
    assert stories_server.request_count(MODEL) == 2
    assert cache.stats.corrupted == 1
    assert cache.path_for(MODEL_BLAKE3).read_bytes() == MODEL_BYTES


def test_concurrent_threads_download_once(
    cache: ContentCache, stories_server: WeightServer, fetcher: Fetcher
) -> None:
    stories_server.inject(MODEL, HostFault(delay=0.3))  # keep the first download in flight
    urls = [stories_server.url(MODEL)]
    results, errors = run_in_threads(
        lambda: cache.fetch_verified(MODEL_BLAKE3, MODEL_SIZE, urls, fetcher), 8, barrier=True
    )
    assert errors == []
    assert len(results) == 8 and all(r == MODEL_BYTES for r in results)
    assert stories_server.request_count(MODEL) == 1
    assert cache.stats.downloads == 1


_CHILD = textwrap.dedent(
    """
    import sys
    from edgechain.service.cache import ContentCache
    from edgechain.service.fetch import Fetcher
    directory, url, digest, size = sys.argv[1:]
    with Fetcher() as fetcher:
        data = ContentCache(directory).fetch_verified(digest, int(size), [url], fetcher)
    print(len(data))
    """
)


def test_concurrent_processes_download_once(
    cache: ContentCache, stories_server: WeightServer
) -> None:
    stories_server.inject(MODEL, HostFault(delay=1.0))  # longer than a child's start-up
    args = [str(cache.directory), stories_server.url(MODEL), MODEL_BLAKE3, str(MODEL_SIZE)]
    children = [
        subprocess.Popen([sys.executable, "-c", _CHILD, *args], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [child.communicate(timeout=60)[0].strip() for child in children]
    assert [child.returncode for child in children] == [0, 0, 0]
    assert outputs == [str(MODEL_SIZE)] * 3
    assert stories_server.request_count(MODEL) == 1
