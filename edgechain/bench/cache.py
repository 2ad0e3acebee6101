"""How fast the service checks hashes: ``python -m edgechain.bench.cache``.

For buffers the size of stories15M (61 MB) and stories110M (438 MB) it reports MB/s (10**6 bytes
per second) of:

- ``hash 1 thread``: BLAKE3 of the whole buffer in memory, single-threaded;
- ``hash all cores``: the same with ``max_threads=AUTO`` (what the cache and fetcher use);
- ``hash streamed``: 1 MiB updates on a memoryview, as the fetcher hashes a download;
- ``cache get, first``: ``ContentCache.get`` on a file not yet verified in this process
  (read from the page cache + hash);
- ``cache get, again``: the same file again (read only: the hash is skipped once verified);
- ``cache get, always``: ``Reverify.ALWAYS`` (read + hash on every get);
- ``cache get_path``: first verification of ``get_path`` (hash via mmap, no copy).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import blake3

from edgechain.bench.arguments import comma_separated_ints
from edgechain.service.cache import ContentCache, Reverify, blake3_hex

__all__ = ["BenchResult", "benchmark_verification", "main"]

_MIB = 1 << 20


@dataclass(frozen=True)
class BenchResult:
    """One measurement: the best of ``repeats`` runs."""

    what: str
    size_bytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.size_bytes / self.seconds / 1e6


def _best(repeats: int, fn: Callable[..., object], *args: object) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


def _hash_one_thread(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def _hash_streamed(data: bytes) -> str:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    view = memoryview(data)
    for start in range(0, len(view), _MIB):
        hasher.update(view[start : start + _MIB])
    return hasher.hexdigest()


def _first_get(directory: str, digest: str) -> None:
    if ContentCache(directory).get(digest) is None:
        raise RuntimeError("benchmark cache lost its file")


def _first_get_path(directory: str, digest: str) -> None:
    if ContentCache(directory).get_path(digest) is None:
        raise RuntimeError("benchmark cache lost its file")


def benchmark_verification(
    sizes_mb: Sequence[int] = (61, 438), *, repeats: int = 3, directory: str | None = None
) -> list[BenchResult]:
    """Measure hash-check throughput for buffers of ``sizes_mb`` (10**6 bytes) of random data."""
    results: list[BenchResult] = []
    for size_mb in sizes_mb:
        size = size_mb * 1_000_000
        data = os.urandom(size)
        digest = blake3_hex(data)
        timings = [
            ("hash 1 thread", _best(repeats, _hash_one_thread, data)),
            ("hash all cores", _best(repeats, blake3_hex, data)),
            ("hash streamed", _best(repeats, _hash_streamed, data)),
        ]
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            ContentCache(tmp).put(digest, data)
            warm = ContentCache(tmp)
            warm.get(digest)
            always = ContentCache(tmp, reverify=Reverify.ALWAYS)
            timings += [
                ("cache get, first", _best(repeats, _first_get, tmp, digest)),
                ("cache get, again", _best(repeats, warm.get, digest)),
                ("cache get, always", _best(repeats, always.get, digest)),
                ("cache get_path", _best(repeats, _first_get_path, tmp, digest)),
            ]
        results += [BenchResult(what, size, seconds) for what, seconds in timings]
        del data
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgechain.bench.cache", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sizes",
        type=comma_separated_ints,
        default="61,438",
        help="buffer sizes in MB, comma-separated",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to put the temporary cache")
    args = parser.parse_args(argv)
    print(f"{'what':<20} {'size MB':>8} {'seconds':>9} {'MB/s':>9}  (cpus: {os.cpu_count()})")
    for r in benchmark_verification(args.sizes, repeats=args.repeats, directory=args.dir):
        print(f"{r.what:<20} {r.size_bytes / 1e6:>8.0f} {r.seconds:>9.4f} {r.mb_per_s:>9.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
