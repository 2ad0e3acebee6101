"""Opening a network verifies what a command relies on, not the whole chain (issue 26): the blocks
after the recorded verified head, the head's certificate and the state against it; any other
block when it is read. Tampering with anything a command reads is still caught before use."""

from __future__ import annotations

from pathlib import Path

import pytest
from chain_helpers import create_four_block_network, flip_block_byte, run_sql

from edgechain.chain import Network
from edgechain.client import Client
from edgechain.errors import StorageCorrupted


@pytest.fixture
def net_dir(tmp_path: Path) -> Path:
    return create_four_block_network(tmp_path)


def _record(path: Path, value: str) -> None:
    run_sql(path, "UPDATE meta SET value = ? WHERE key LIKE 'verified_head:%'", (value,))


def _recorded(path: Path) -> list[str]:
    return [v for (v,) in run_sql(path, "SELECT value FROM meta WHERE key LIKE 'verified_head:%'")]


def test_each_commit_records_the_verified_head(net_dir: Path) -> None:
    [record] = _recorded(net_dir)
    with Network.open(net_dir, lazy=True) as net:
        chain = net.default_chain()
        assert record == f"3:{chain.head_hash.hex()}"
        assert net.verify().blocks == 4 and chain.honest_replicas_agree()


def test_an_old_block_is_not_read_on_open_but_is_checked_when_read(net_dir: Path) -> None:
    flip_block_byte(net_dir, "certificate", 1)
    with Network.open(net_dir, lazy=True) as net:  # block 1 is not what opening relies on
        chain = net.default_chain()
        assert chain.height == 4
        with pytest.raises(StorageCorrupted, match="height 1 fails verification"):
            chain.block(1)
        with pytest.raises(StorageCorrupted, match="height 1 fails verification"):
            list(chain.blocks())
        with pytest.raises(StorageCorrupted, match="height 1 "):
            net.verify()  # `chain verify` still checks everything
    with pytest.raises(StorageCorrupted, match="height 1 "):
        Network.open(net_dir)  # and so does a full open


def test_a_model_lookup_checks_the_block_that_certified_the_model(net_dir: Path) -> None:
    flip_block_byte(net_dir, "owner_signature", 1)  # the block registering stories260K version 2
    with Client.open(net_dir) as client:
        assert client.model("other").entry.name == "other"
        with pytest.raises(StorageCorrupted, match="height 1 fails verification"):
            client.model("stories260K")


@pytest.mark.parametrize("column", ["block", "block_hash", "owner_signature", "certificate"])
def test_a_tampered_head_is_caught_on_open(net_dir: Path, column: str) -> None:
    flip_block_byte(net_dir, column, 3)
    with pytest.raises(StorageCorrupted, match="height 3 "):
        Network.open(net_dir, lazy=True)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE state SET value = x'00' WHERE key = 'model/other/1'",
        "DELETE FROM state WHERE key = 'model/other/1'",
        "INSERT INTO state SELECT chain_id, app_id, 'model/evil/1', value FROM state LIMIT 1",
    ],
)
def test_tampered_state_is_caught_on_open(net_dir: Path, statement: str) -> None:
    run_sql(net_dir, statement)
    with pytest.raises(StorageCorrupted, match="stored state differs .* height 3"):
        Network.open(net_dir, lazy=True)


def test_blocks_after_the_recorded_head_are_verified_on_open(net_dir: Path) -> None:
    [(head_1,)] = run_sql(net_dir, "SELECT block_hash FROM blocks WHERE height = 1")
    _record(net_dir, f"1:{head_1.hex()}")
    flip_block_byte(net_dir, "certificate", 2)
    with pytest.raises(StorageCorrupted, match="height 2 "):
        Network.open(net_dir, lazy=True)


def test_an_open_moves_a_lagging_record_to_the_head(net_dir: Path) -> None:
    [(head_1,)] = run_sql(net_dir, "SELECT block_hash FROM blocks WHERE height = 1")
    _record(net_dir, f"1:{head_1.hex()}")
    with Network.open(net_dir, lazy=True) as net:
        head = net.default_chain().head_hash
    assert _recorded(net_dir) == [f"3:{head.hex()}"]


def test_without_a_record_the_chain_is_verified_in_full(net_dir: Path) -> None:
    """A network made before the record existed, or whose record the stored chain no longer
    holds (a restored backup): everything is checked, as before."""
    run_sql(net_dir, "DELETE FROM meta WHERE key LIKE 'verified_head:%'")
    flip_block_byte(net_dir, "certificate", 1)
    with pytest.raises(StorageCorrupted, match="height 1 "):
        Network.open(net_dir, lazy=True)


def test_a_record_the_chain_no_longer_holds_means_a_full_verification(net_dir: Path) -> None:
    _record(net_dir, "9:" + "00" * 32)
    flip_block_byte(net_dir, "certificate", 1)
    with pytest.raises(StorageCorrupted, match="height 1 "):
        Network.open(net_dir, lazy=True)


def test_a_malformed_record_is_storage_corrupted(net_dir: Path) -> None:
    _record(net_dir, "three")
    with pytest.raises(StorageCorrupted, match="not HEIGHT:HASH"):
        Network.open(net_dir, lazy=True)


def test_the_open_benchmark_builds_a_valid_chain_and_times_both_openings(tmp_path: Path) -> None:
    from edgechain.bench.open import run_open_benchmark

    result = run_open_benchmark(lengths=(30, 60), full_up_to=30, workdir=tmp_path)
    assert [r.blocks for r in result.results] == [30, 60]
    assert all(r.state_entries == 10 for r in result.results)
    assert result.results[0].full_verify_seconds is not None
    assert result.results[1].full_verify_seconds is None
    assert "net status (s)" in result.format()
