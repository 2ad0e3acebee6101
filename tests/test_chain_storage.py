"""Storage: reopening re-verifies, and tampering with any stored field is named on reopen."""

import contextlib
import json
import sqlite3
import threading
import time

import pytest
from chain_helpers import create_four_block_network, flip_block_byte, register, run_sql

from edgechain.chain import Network
from edgechain.chain import storage as storage_module
from edgechain.chain.keys import generate_key, save_key
from edgechain.errors import ChainError, NetworkNotFound, StorageCorrupted


@pytest.fixture
def net_dir(tmp_path):
    return create_four_block_network(tmp_path)


def test_reopen_verifies_and_restores_state(net_dir):
    with Network.open(net_dir) as net:
        chain = net.default_chain()
        assert chain.height == 4
        app = chain.application("model-registry")
        assert app.query_model("stories260K").entry.version == "2"
        report = net.verify()
        assert (report.chains, report.blocks) == (1, 4)
        assert [b.height for b in chain.blocks()] == [0, 1, 2, 3]
        assert chain.honest_replicas_agree()


def test_database_uses_wal(net_dir):
    db = sqlite3.connect(net_dir / "chain.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


@pytest.mark.parametrize("column", ["block", "block_hash", "owner_signature", "certificate"])
@pytest.mark.parametrize("offset", [-5, 10])
def test_tampered_block_column_names_height(net_dir, column, offset):
    flip_block_byte(net_dir, column, 2, offset)
    with pytest.raises(StorageCorrupted, match="height 2 "):
        Network.open(net_dir)


def test_first_bad_height_is_named(net_dir):
    flip_block_byte(net_dir, "owner_signature", 3)
    flip_block_byte(net_dir, "certificate", 1)
    with pytest.raises(StorageCorrupted, match="height 1 "):
        Network.open(net_dir)


def test_swapped_blocks_are_detected(net_dir):
    run_sql(net_dir, "UPDATE blocks SET height = -1 WHERE height = 1")
    run_sql(net_dir, "UPDATE blocks SET height = 1 WHERE height = 2")
    run_sql(net_dir, "UPDATE blocks SET height = 2 WHERE height = -1")
    with pytest.raises(StorageCorrupted, match="height 1 "):
        Network.open(net_dir)


@pytest.mark.parametrize(
    ("statement", "params", "message"),
    [
        ("UPDATE blocks SET height = 7 WHERE height = 2", (), "height 2 "),
        ("UPDATE blocks SET chain_id = x'00' WHERE height = 2", (), "height 2 "),
        ("DELETE FROM blocks WHERE height = 2", (), "height 2 "),
        (
            "UPDATE state SET value = ? WHERE key = 'model/other/1'",
            (b"\x00",),
            "stored state differs .* height 3",
        ),
        ("DELETE FROM state WHERE key = 'model/other/1'", (), "stored state differs .* height 3"),
        (
            "UPDATE state SET key = 'model/other/9' WHERE key = 'model/other/1'",
            (),
            "stored state differs .* height 3",
        ),
        (
            "INSERT INTO state SELECT chain_id, app_id, 'model/evil/1', value FROM state LIMIT 1",
            (),
            "stored state differs .* height 3",
        ),
        ("UPDATE chains SET name = 'renamed'", (), "chains table"),
        ("UPDATE chains SET owner = zeroblob(32)", (), "chains table"),
        ("UPDATE chains SET chain_id = zeroblob(32)", (), "chains table"),
    ],
)
def test_a_tampered_row_is_detected_naming_what_differs(net_dir, statement, params, message):
    """Block rows name the height, state rows the height whose state differs, chain rows the
    chains table."""
    run_sql(net_dir, statement, params)
    with pytest.raises(StorageCorrupted, match=message):
        Network.open(net_dir)


def test_tampered_committee_is_detected(net_dir):
    run_sql(net_dir, "UPDATE meta SET value = 'ff' WHERE key = 'committee_hash'")
    with pytest.raises(StorageCorrupted, match="committee does not match"):
        Network.open(net_dir)


def test_swapped_validator_key_in_config_is_detected(net_dir):
    config_path = net_dir / "network.json"
    config = json.loads(config_path.read_text())
    first, second = config["committee"][0], config["committee"][1]
    first["public_key"], second["public_key"] = second["public_key"], first["public_key"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(StorageCorrupted, match="key file does not match"):
        Network.open(net_dir)


def test_missing_network(tmp_path):
    with pytest.raises(NetworkNotFound):
        Network.open(tmp_path / "nothing")


def test_several_chains_share_the_committee(tmp_path):
    path = tmp_path / "net"
    with Network.create(path, validators=4) as net:
        first = net.default_chain()
        second = net.create_chain("second")
        assert first.id != second.id
        assert first.app_id("model-registry") != second.app_id("model-registry")
        second.execute(second.app_id("model-registry"), register(name="only-on-second"))
        first.execute(first.app_id("model-registry"), register())
    with Network.open(path) as net:
        heights = {c.name: c.blocks for c in net.status().chains}
        assert heights == {"default": 1, "second": 1}
        second = net.chain("second")
        assert net.chain(second.id) is second and net.chain(second.id.hex()[:10]) is second
        models = second.application("model-registry").list_models()
        assert [m.entry.name for m in models] == ["only-on-second"]


def test_a_second_writer_catches_up_and_commits_at_the_next_height(net_dir):
    with Network.open(net_dir) as first, Network.open(net_dir) as second:
        a, b = first.default_chain(), second.default_chain()
        start = a.height
        a.execute(a.app_id("model-registry"), register(version="9"))
        cert = b.execute(b.app_id("model-registry"), register(version="10"))
        assert cert.height == start + 1 and b.height == start + 2
        # The second process re-executed on the new head: it sees the first one's model.
        versions = {m.entry.version for m in b.application("model-registry").list_models()}
        assert {"9", "10"} <= versions
        assert b.honest_replicas_agree()
        assert first.refresh() and a.height == start + 2 and a.state_hash == b.state_hash
        assert not first.refresh()
    with Network.open(net_dir) as again:
        assert again.default_chain().height == start + 2


def test_a_chain_cut_back_under_a_running_process_is_refused(net_dir):
    with Network.open(net_dir) as net:
        chain = net.default_chain()
        top = chain.height - 1
        run_sql(net_dir, f"DELETE FROM blocks WHERE height = {top}")
        with pytest.raises(StorageCorrupted, match="cut back or rewritten"):
            net.refresh()


def test_tampered_schema_version_is_refused(net_dir):
    run_sql(net_dir, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ChainError, match="unsupported storage schema version 99"):
        Network.open(net_dir)


def test_replaced_owner_key_is_refused(net_dir):
    key_path = net_dir / "keys" / "chains" / "default.key"
    key_path.unlink()
    save_key(generate_key(), key_path)
    with Network.open(net_dir) as net:
        chain = net.default_chain()
        with pytest.raises(StorageCorrupted, match="does not hold the key of chain 'default'"):
            chain.execute(chain.app_id("model-registry"), register(version="5"))


def _hold_write_lock(path, seconds):
    """Another process's writer, as SQLite sees it: a connection holding the write lock."""
    db = sqlite3.connect(path / "chain.db", isolation_level=None, check_same_thread=False)
    db.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(seconds, lambda: (db.execute("COMMIT"), db.close()))
    timer.start()
    return timer


def test_a_writer_waits_for_another_writer_then_commits(net_dir):
    with Network.open(net_dir) as net:
        chain = net.default_chain()
        timer = _hold_write_lock(net_dir, 0.5)
        cert = chain.execute(chain.app_id("model-registry"), register(version="7"))
        timer.join()
        assert cert.height == 4 and chain.height == 5


def test_a_writer_that_waits_too_long_is_told_the_database_is_busy(net_dir, monkeypatch):
    monkeypatch.setattr(storage_module, "BUSY_TIMEOUT", 0.2)
    with Network.open(net_dir) as net:
        chain = net.default_chain()
        timer = _hold_write_lock(net_dir, 3)
        try:
            with pytest.raises(ChainError, match="chain.db is busy"):
                chain.execute(chain.app_id("model-registry"), register(version="7"))
        finally:
            timer.join()
        assert chain.height == 4  # nothing committed, nothing applied
        chain.execute(chain.app_id("model-registry"), register(version="7"))
        assert chain.height == 5 and chain.honest_replicas_agree()


def test_verification_reads_blocks_and_state_from_one_snapshot(net_dir):
    with Network.open(net_dir) as net, Network.open(net_dir) as other:
        writer = other.default_chain()
        real = net.storage.snapshot

        @contextlib.contextmanager
        def snapshot_with_a_commit_in_between():
            with real() as snapshot:
                rows = list(snapshot.block_rows(net.default_chain().id))
                # Another process commits after the blocks were read, before the state is.
                writer.execute(writer.app_id("model-registry"), register(name="late"))
                snapshot.block_rows = lambda *a, **k: iter(rows)
                yield snapshot

        net.storage.snapshot = snapshot_with_a_commit_in_between
        assert net.verify().blocks == 4  # the snapshot's moment, not the newest
    with Network.open(net_dir) as net:
        assert net.verify().blocks == 5


def test_a_killed_processes_network_json_temporary_is_removed_on_open(net_dir):
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          check=True, capture_output=True, text=True)  # fmt: skip
    dead = net_dir / f"network.json.{int(done.stdout)}.tmp"
    running = net_dir / f"network.json.{os.getpid()}.tmp"
    dead.write_text("{")
    running.write_text("{")
    Network.open(net_dir).close()
    assert not dead.exists() and running.exists()
    running.unlink()
    with Network.open(net_dir) as net:
        net.set_faults("v2=offline", persist=True)
    assert sorted(p.name for p in net_dir.glob("network.json*")) == ["network.json"]


def test_a_refresh_while_this_process_proposes_never_applies_a_block_twice(net_dir, monkeypatch):
    """The node certifies a mint outside its client lock while other requests refresh: a
    refresh must wait for the commit and its apply, never apply the new block itself too."""
    from edgechain.chain.network import Chain

    applied: list[int] = []
    original = Chain._apply

    def slow_apply(self, certified, writes):
        applied.append(certified.block.height)
        time.sleep(0.02)  # widen the window between a commit and its apply
        original(self, certified, writes)

    monkeypatch.setattr(Chain, "_apply", slow_apply)
    errors: list[BaseException] = []
    with Network.open(net_dir) as net:
        chain = net.default_chain()
        app = chain.application("model-registry")
        proposing = threading.Event()
        proposing.set()

        def refresher() -> None:
            while proposing.is_set():
                try:
                    net.refresh()
                except BaseException as exc:  # reported below, with the heights
                    errors.append(exc)
                    return

        thread = threading.Thread(target=refresher)
        thread.start()
        try:
            for n in range(10):
                chain.execute(app.id, register(name=f"m{n}"))
        finally:
            proposing.clear()
            thread.join()
        assert not errors, errors
        assert applied == list(range(4, 14))  # each new block applied once, in order
        assert chain.height == 14 and chain.honest_replicas_agree()
