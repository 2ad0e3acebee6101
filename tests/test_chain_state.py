"""The state hash: hand-built encodings equal the documented ones; updates are incremental."""

from edgechain.chain.encoding import encode, hash_value
from edgechain.chain.state import BUCKETS, ChainState, bucket_of

CHAIN = bytes(range(32))
APP = bytes(range(1, 33))


def _documented_state_hash(entries: dict[str, object]) -> bytes:
    """The state hash exactly as docs/chain.md defines it, computed the slow, obvious way."""
    buckets: list[list[list[object]]] = [[] for _ in range(BUCKETS)]
    for key in sorted(entries, key=lambda k: k.encode("utf-8")):
        buckets[bucket_of(key)].append([key, encode(entries[key])])
    bucket_hashes = [hash_value("state-bucket", b) if b else None for b in buckets]
    app_hash = hash_value("app-state", [APP, bucket_hashes])
    return hash_value("state", [CHAIN, [[APP, app_hash]] if entries else []])


def test_state_hash_matches_the_documented_definition():
    state = ChainState(CHAIN)
    assert state.hash() == _documented_state_hash({})
    entries = {f"key/{i}": {"i": i, "s": "é" * i} for i in range(300)}
    writes = {(APP, k): encode(v) for k, v in entries.items()}
    assert state.hash_with(writes) == _documented_state_hash(entries)
    state.apply(writes)
    assert state.hash() == _documented_state_hash(entries)
    assert state.get(APP, "key/7") == {"i": 7, "s": "é" * 7}


def test_deletes_and_copies():
    state = ChainState(CHAIN)
    state.apply({(APP, "a"): encode(1), (APP, "b"): encode(2)})
    copy = state.copy()
    state.apply({(APP, "a"): None})
    assert state.hash() == _documented_state_hash({"b": 2})
    assert copy.hash() == _documented_state_hash({"a": 1, "b": 2})
    state.apply({(APP, "b"): None})
    assert state.hash() == ChainState(CHAIN).hash()
    assert state.keys(APP) == [] and copy.keys(APP) == ["a", "b"]
