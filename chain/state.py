"""A chain's state: per-application key-value maps, and the state hash that commits to them.

Keys are strings, values are canonical values kept in encoded form (so a reader can never mutate
state by accident). The state hash is a two-level tree so that updating one key rehashes one
bucket, not the whole state (docs/chain.md, "State hash"):

    bucket(app, i)  = H("state-bucket", [[key, value_bytes], ...] sorted by UTF-8 key)
    app_hash(app)   = H("app-state", [app_id, [bucket hash | null for i in 0..255]])
    state_hash      = H("state", [chain_id, [[app_id, app_hash], ...] sorted by app_id])

where a key lives in bucket ``BLAKE3(key)[0]`` and applications without keys are left out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import blake3

from edgechain.chain.encoding import (
    decode,
    encode_bytes,
    encode_str,
    hash_encoded,
    hash_value,
    list_header,
)

BUCKETS = 256

# A write set: (app_id, key) -> new encoded value, or None to delete the key.
WriteSet = dict[tuple[bytes, str], bytes | None]


def bucket_of(key: str) -> int:
    return blake3.blake3(key.encode("utf-8")).digest()[0]


# The encodings below are built by hand because they run for every block on every replica;
# they produce exactly encode(<the value in the comment>) (tests/test_chain_state.py checks).

_PAIR = list_header(2)


_EMPTY_BUCKET = b"\x00"  # encode(None)


def _bucket_hash(bucket: Mapping[str, bytes]) -> bytes:
    """encode(bucket hash, or None for an empty bucket), ready to join into the app hash."""
    # The hash covers encode([[key, value_bytes], ...] sorted by UTF-8 key).
    if not bucket:
        return _EMPTY_BUCKET
    items = sorted(bucket.items(), key=lambda kv: kv[0].encode("utf-8"))
    parts = [list_header(len(items))]
    for key, value in items:
        parts += (_PAIR, encode_str(key), encode_bytes(value))
    return encode_bytes(hash_encoded("state-bucket", b"".join(parts)))


def _app_hash(app_id: bytes, encoded_bucket_hashes: list[bytes]) -> bytes:
    # encode([app_id, [bucket hash or null, ...]]), the list items already encoded.
    header = _PAIR + encode_bytes(app_id) + list_header(len(encoded_bucket_hashes))
    return hash_encoded("app-state", header + b"".join(encoded_bucket_hashes))


class _AppState:
    __slots__ = ("buckets", "bucket_hashes", "size")

    def __init__(self) -> None:
        self.buckets: list[dict[str, bytes]] = [{} for _ in range(BUCKETS)]
        self.bucket_hashes: list[bytes] = [_EMPTY_BUCKET] * BUCKETS  # encoded, see _bucket_hash
        self.size = 0


class ChainState:
    """The state of one chain, as a validator (or the certified reader) holds it in memory."""

    def __init__(self, chain_id: bytes) -> None:
        self.chain_id = chain_id
        self._apps: dict[bytes, _AppState] = {}
        self._hash: bytes | None = None
        self._prepared: tuple[WriteSet, dict, bytes] | None = None

    def copy(self) -> ChainState:
        """An independent copy (each validator keeps its own)."""
        other = ChainState(self.chain_id)
        for app_id, app in self._apps.items():
            mine = other._apps[app_id] = _AppState()
            mine.buckets = [dict(b) for b in app.buckets]
            mine.bucket_hashes = list(app.bucket_hashes)
            mine.size = app.size
        other._hash = self._hash
        return other

    # --- reads ----------------------------------------------------------------------------

    def get_encoded(self, app_id: bytes, key: str) -> bytes | None:
        app = self._apps.get(app_id)
        if app is None:
            return None
        return app.buckets[bucket_of(key)].get(key)

    def get(self, app_id: bytes, key: str) -> Any:
        """The decoded value at ``key``, or None."""
        raw = self.get_encoded(app_id, key)
        return None if raw is None else decode(raw)

    def keys(self, app_id: bytes, prefix: str = "") -> list[str]:
        """The application's keys starting with ``prefix``, sorted by UTF-8 bytes."""
        app = self._apps.get(app_id)
        if app is None:
            return []
        found = [k for b in app.buckets for k in b if k.startswith(prefix)]
        return sorted(found, key=lambda k: k.encode("utf-8"))

    def entries(self) -> Iterator[tuple[bytes, str, bytes]]:
        """Every (app_id, key, encoded value), in no particular order."""
        for app_id, app in self._apps.items():
            for bucket in app.buckets:
                for key, value in bucket.items():
                    yield app_id, key, value

    # --- hashing and updates --------------------------------------------------------------

    def hash(self) -> bytes:
        """The state hash of the current state."""
        if self._hash is None:
            self._hash = self.hash_with({})
        return self._hash

    def hash_with(self, writes: WriteSet) -> bytes:
        """The state hash the state would have after applying ``writes`` (state unchanged)."""
        dirty: dict[bytes, dict[int, dict[str, bytes | None]]] = {}
        for (app_id, key), value in writes.items():
            dirty.setdefault(app_id, {}).setdefault(bucket_of(key), {})[key] = value
        new_buckets: dict[tuple[bytes, int], tuple[dict[str, bytes], bytes]] = {}
        app_hashes: list[list[bytes]] = []
        for app_id in sorted(set(self._apps) | set(dirty)):
            app = self._apps.get(app_id) or _AppState()
            hashes = list(app.bucket_hashes)
            for index, changes in dirty.get(app_id, {}).items():
                bucket = dict(app.buckets[index])
                for key, value in changes.items():
                    if value is None:
                        bucket.pop(key, None)
                    else:
                        bucket[key] = value
                hashes[index] = _bucket_hash(bucket)
                new_buckets[(app_id, index)] = (bucket, hashes[index])
            if any(h != _EMPTY_BUCKET for h in hashes):
                app_hashes.append([app_id, _app_hash(app_id, hashes)])
        result = hash_value("state", [self.chain_id, app_hashes])
        # Kept so that apply() of the same writes (the usual next step) need not rehash.
        self._prepared = (dict(writes), new_buckets, result)
        return result

    def apply(self, writes: WriteSet) -> None:
        """Apply a write set (after its block is certified)."""
        prepared = self._prepared
        self._prepared = None
        if prepared is not None and prepared[0] == writes:
            self._install(prepared[1])
            self._hash = prepared[2]
            return
        touched: dict[tuple[bytes, int], dict[str, bytes]] = {}
        for (app_id, key), value in writes.items():
            app = self._apps.get(app_id)
            index = bucket_of(key)
            bucket = touched.get((app_id, index))
            if bucket is None:
                bucket = dict(app.buckets[index]) if app is not None else {}
                touched[(app_id, index)] = bucket
            if value is None:
                bucket.pop(key, None)
            else:
                bucket[key] = value
        self._install({k: (b, _bucket_hash(b)) for k, b in touched.items()})
        self._hash = None

    def _install(self, buckets: dict[tuple[bytes, int], tuple[dict[str, bytes], bytes]]) -> None:
        for (app_id, index), (bucket, encoded_hash) in buckets.items():
            app = self._apps.get(app_id)
            if app is None:
                app = self._apps[app_id] = _AppState()
            app.size += len(bucket) - len(app.buckets[index])
            app.buckets[index] = bucket
            app.bucket_hashes[index] = encoded_hash
            if app.size == 0:
                del self._apps[app_id]
