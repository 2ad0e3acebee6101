"""ContentCache on a damaged or abandoned directory: killed writers and downloaders, odd entries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from service_helpers import MODEL, MODEL_BLAKE3, MODEL_SIZE, MODELS

from edgechain.errors import StorageCorrupted
from edgechain.service.cache import ContentCache
from edgechain.service.fetch import Fetcher
from edgechain.testing.weight_server import HostFault, WeightServer

MODEL_BYTES = (MODELS / MODEL).read_bytes()


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


# A writer that stops in the middle of a put: the temporary is written and locked, not renamed.
_WRITER = textwrap.dedent(
    """
    import sys, time
    from edgechain.service import cache as cache_module
    real_replace = cache_module.os.replace
    def stuck(src, dst):
        print("writing", flush=True)
        time.sleep(600)
    cache_module.os.replace = stuck
    cache = cache_module.ContentCache(sys.argv[1])
    cache.put(sys.argv[2], open(sys.argv[3], "rb").read())
    """
)

# A download from a stories_server that drips: killed while the download lock is held.
_DOWNLOADER = textwrap.dedent(
    """
    import sys
    from edgechain.service.cache import ContentCache
    from edgechain.service.fetch import Fetcher
    with Fetcher() as fetcher:
        ContentCache(sys.argv[1]).fetch_verified(sys.argv[2], None, [sys.argv[3]], fetcher)
    """
)


def test_a_killed_writers_temporary_is_removed_at_the_next_start(cache: ContentCache) -> None:
    objects = cache.directory / "objects"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, cache.directory, MODEL_BLAKE3, MODELS / MODEL],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        (temporary,) = objects.glob(".*.tmp")
        assert f".{writer.pid}-" in temporary.name
        ContentCache(cache.directory)  # another process starting: the write is in progress
        assert temporary.exists()
    finally:
        _kill(writer)
    ContentCache(cache.directory)
    assert list(objects.iterdir()) == []


def test_a_dead_pids_unlocked_temporary_is_removed_but_a_live_recent_one_stays(
    cache: ContentCache,
) -> None:
    objects = cache.directory / "objects"
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    dead = objects / f".{MODEL_BLAKE3}.{int(done.stdout)}-abc123.tmp"
    alive = objects / f".{MODEL_BLAKE3}.{os.getpid()}-def456.tmp"
    dead.write_bytes(b"partial")
    alive.write_bytes(b"partial")
    ContentCache(cache.directory)
    assert not dead.exists()
    assert alive.exists()  # its pid runs: it may be between creating and locking the file
    hours_ago = time.time() - 2 * 3600
    os.utime(alive, (hours_ago, hours_ago))
    ContentCache(cache.directory)
    assert not alive.exists()  # unlocked for hours: the pid was reused


def test_a_download_killed_midway_leaves_nothing_after_the_next_start(
    cache: ContentCache, stories_server: WeightServer
) -> None:
    stories_server.inject(MODEL, HostFault(chunk_delay=0.5))  # 17 chunks: ~8 s for the whole file
    url = stories_server.url(MODEL)
    locks = cache.directory / "locks"
    downloader = subprocess.Popen(
        [sys.executable, "-c", _DOWNLOADER, cache.directory, MODEL_BLAKE3, url]
    )
    try:
        _wait_for(lambda: stories_server.request_count(MODEL) == 1, "the download to start")
        assert [p.name for p in locks.iterdir()] == [f"{MODEL_BLAKE3}.lock"]
    finally:
        _kill(downloader)
    assert list(locks.iterdir())  # the killed process could not clean up
    fresh = ContentCache(cache.directory)
    assert list(locks.iterdir()) == [] and list((cache.directory / "objects").iterdir()) == []
    stories_server.inject(MODEL, None)
    with Fetcher() as fetcher:
        assert fresh.fetch_verified(MODEL_BLAKE3, MODEL_SIZE, [url], fetcher) == MODEL_BYTES
    assert list(locks.iterdir()) == []  # a finished download removes its lock file
    assert [p.name for p in (cache.directory / "objects").iterdir()] == [MODEL_BLAKE3]


def test_a_held_lock_file_is_not_removed(cache: ContentCache, stories_server: WeightServer) -> None:
    stories_server.inject(MODEL, HostFault(chunk_delay=0.5))
    downloader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _DOWNLOADER,
            cache.directory,
            MODEL_BLAKE3,
            stories_server.url(MODEL),
        ]
    )
    try:
        _wait_for(lambda: stories_server.request_count(MODEL) == 1, "the download to start")
        ContentCache(cache.directory)
        assert [p.name for p in (cache.directory / "locks").iterdir()] == [f"{MODEL_BLAKE3}.lock"]
    finally:
        _kill(downloader)


# --- odd entries ----------------------------------------------------------------------------------


def test_an_empty_directory_in_place_of_an_object_is_a_miss_then_replaced(
    cache: ContentCache, stories_server: WeightServer
) -> None:
    cache.path_for(MODEL_BLAKE3).mkdir()
    assert cache.get(MODEL_BLAKE3) is None
    assert cache.get_path(MODEL_BLAKE3) is None
    with Fetcher() as fetcher:
        data = cache.fetch_verified(MODEL_BLAKE3, MODEL_SIZE, [stories_server.url(MODEL)], fetcher)
    assert data == MODEL_BYTES and cache.path_for(MODEL_BLAKE3).is_file()


def test_a_non_empty_directory_in_place_of_an_object_is_a_typed_error(
    cache: ContentCache, stories_server: WeightServer
) -> None:
    (cache.path_for(MODEL_BLAKE3) / "something").mkdir(parents=True)
    assert cache.get(MODEL_BLAKE3) is None
    assert cache.get_path(MODEL_BLAKE3) is None
    with pytest.raises(StorageCorrupted, match=f"objects/{MODEL_BLAKE3} is not a regular file"):
        cache.put(MODEL_BLAKE3, MODEL_BYTES)
    with Fetcher() as fetcher, pytest.raises(StorageCorrupted, match="content cache is damaged"):
        cache.fetch_verified(MODEL_BLAKE3, MODEL_SIZE, [stories_server.url(MODEL)], fetcher)
    assert list((cache.directory / "objects").glob(".*")) == []  # no temporary left


def test_a_file_in_place_of_the_cache_directories_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "objects").write_text("not a directory")
    with pytest.raises(StorageCorrupted, match="cannot use the content cache"):
        ContentCache(tmp_path / "cache")
