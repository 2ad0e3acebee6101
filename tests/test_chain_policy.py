"""Resource policies (chain/policy.py): presets, files, storage, and each limit at its bound and
one past, on the proposer and on the validators."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chain_helpers import FAST_TIMEOUT, register
from network_cli_helpers import edgechain

from edgechain.chain.blobs import PublishDataBlob, blob_id
from edgechain.chain.network import Network
from edgechain.chain.policy import NO_FEES, TESTNET, ResourcePolicy
from edgechain.errors import QuorumNotReached, ResourceLimitExceeded, UsageError


def test_testnet_preset_has_linera_testnet_limits() -> None:
    assert TESTNET.maximum_blob_size == 1_000_000
    assert TESTNET.maximum_published_blobs == 10
    assert TESTNET.maximum_executed_block_size == 1_000_000
    assert TESTNET.maximum_block_proposal_size == 13_000_000
    assert TESTNET.maximum_service_oracle_execution_ms == 10_000
    assert TESTNET.maximum_http_response_bytes == 10_000
    assert TESTNET.http_request_timeout_ms == 20_000
    assert all(v is None for v in NO_FEES.limits().values())


def test_a_60_mb_model_needs_61_blobs_in_7_blocks_under_testnet() -> None:
    chunks = -(-60 * 1024 * 1024 // TESTNET.chunk_size)
    per_block = TESTNET.blobs_per_block(64 * 1024)
    assert (chunks, per_block, -(-chunks // per_block)) == (63, 10, 7)
    assert -(-60_000_000 // TESTNET.chunk_size) + 1 == 61  # 60 MB weights and a tokenizer


def test_policy_files_are_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "small.json"
    good.write_text(json.dumps({"maximum_blob_size": 1000, "maximum_published_blobs": 2}))
    policy = ResourcePolicy.resolve(str(good))
    assert (policy.name, policy.maximum_blob_size, policy.maximum_published_blobs) == (
        "small",
        1000,
        2,
    )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"maximum_blobs": 3}))
    with pytest.raises(UsageError, match="unknown policy fields maximum_blobs"):
        ResourcePolicy.resolve(str(bad))
    bad.write_text(json.dumps({"maximum_blob_size": -1}))
    with pytest.raises(UsageError, match="maximum_blob_size must be a positive integer"):
        ResourcePolicy.resolve(str(bad))
    with pytest.raises(UsageError, match="unknown policy preset 'mainnet'"):
        ResourcePolicy.resolve("mainnet")


def test_the_policy_is_saved_with_the_network(tmp_path: Path) -> None:
    Network.create(tmp_path / "n", validators=1, policy="testnet").close()
    saved = json.loads((tmp_path / "n" / "network.json").read_text())
    assert saved["policy"]["name"] == "testnet"
    with Network.open(tmp_path / "n") as net:
        assert net.policy == TESTNET
        assert net.status().policy["maximum_blob_size"] == 1_000_000
        assert net.oracle_budget_s == 10.0


def test_net_up_policy_is_shown_by_net_status(tmp_path: Path) -> None:
    up = edgechain("net", "up", "--dir", tmp_path / "n", "--validators", "1", "--policy", "testnet")
    assert up.code == 0, up.err
    status = edgechain("net", "status", "--dir", tmp_path / "n")
    assert "policy testnet: maximum_executed_block_size 1000000" in status.out
    assert "maximum_published_blobs 10" in status.out
    as_json = edgechain("net", "status", "--dir", tmp_path / "n", "--json").json()
    assert as_json["policy"]["maximum_service_oracle_execution_ms"] == 10_000
    default = edgechain("net", "up", "--dir", tmp_path / "d", "--validators", "1")
    assert default.code == 0
    assert "policy no-fees: no limits" in edgechain("net", "status", "--dir", tmp_path / "d").out
    again = edgechain("net", "up", "--dir", tmp_path / "d", "--policy", "testnet")
    again.assert_user_error(2, "has the no-fees policy", "cannot be reopened with testnet")
    missing = edgechain("net", "up", "--dir", tmp_path / "x", "--policy", "nope.json")
    missing.assert_user_error(3, "cannot read policy file nope.json")
    assert not (tmp_path / "x").exists()


# --- each limit at its bound and one past ------------------------------------------------------


def _blobs(count: int, size: int) -> dict[bytes, bytes]:
    out = {}
    for i in range(count):
        data = bytes([i % 251]) * size
        out[blob_id(data)] = data
    return out


def _publish(net: Network, blobs: dict[bytes, bytes]):
    chain = net.default_chain()
    ops = [PublishDataBlob(b, len(d)).operation(chain.id) for b, d in blobs.items()]
    return chain.propose(ops, blobs=blobs)


def _network(tmp_path: Path, name: str, **limits: int) -> Network:
    policy = ResourcePolicy(name="test", **limits)
    return Network.create(
        tmp_path / name, validators=4, vote_timeout=5 * FAST_TIMEOUT, policy=policy
    )


def _measured(tmp_path: Path, limit: str, blobs: dict[bytes, bytes]) -> int:
    """What the block measures for ``limit`` (from the error of a policy allowing 1)."""
    with (
        _network(tmp_path, "probe", **{limit: 1}) as net,
        pytest.raises(ResourceLimitExceeded) as caught,
    ):
        _publish(net, blobs)
    assert caught.value.limit == limit and caught.value.allowance == 1
    return caught.value.value


@pytest.mark.parametrize(
    ("limit", "count", "size"),
    [
        ("maximum_blob_size", 1, 5000),
        ("maximum_published_blobs", 4, 10),
        ("maximum_executed_block_size", 3, 10),
        ("maximum_block_proposal_size", 3, 2000),
        ("maximum_bytes_written_per_block", 3, 10),
    ],
)
def test_each_block_limit_at_its_bound_and_one_past(
    tmp_path: Path, limit: str, count: int, size: int
) -> None:
    blobs = _blobs(count, size)
    value = _measured(tmp_path, limit, blobs)
    with _network(tmp_path, "past", **{limit: value - 1}) as net:
        with pytest.raises(ResourceLimitExceeded) as caught:
            _publish(net, blobs)
        message = str(caught.value)
        assert message.startswith(f"{limit}: ") and f"allowance of {value - 1}" in message
        assert str(value) in message
        assert net.default_chain().height == 0  # nothing proposed, nothing stored
    with _network(tmp_path, "bound", **{limit: value}) as net:
        certificate = _publish(net, blobs)
        assert certificate.height == 0
        assert net.storage.blob_ids() == set(blobs)


def test_validators_enforce_the_policy_too(tmp_path: Path) -> None:
    """A proposer that ignores the policy gets no votes: every validator refuses, naming it."""
    blobs = _blobs(2, 10)
    with _network(tmp_path, "n", maximum_published_blobs=1) as net:
        net.policy = NO_FEES  # the proposer's own check is skipped; validators keep theirs
        with pytest.raises(QuorumNotReached) as caught:
            _publish(net, blobs)
        assert (
            str(caught.value).count("refused: maximum_published_blobs: the block publishes 2") == 4
        )


def test_the_oracle_time_limit_caps_the_budget(tmp_path: Path) -> None:
    with Network.create(tmp_path / "n", validators=1, policy="testnet") as net:
        assert net.oracle_budget_s == 10.0
        assert all(v.oracle_budget_s == 10.0 for v in net.validators)
        net.set_oracle_budget(10.0)  # at the bound
        with pytest.raises(ResourceLimitExceeded) as caught:
            net.set_oracle_budget(10.001)  # one millisecond past
        assert caught.value.limit == "maximum_service_oracle_execution_ms"
        assert (caught.value.value, caught.value.allowance) == (10_001, 10_000)


def test_story_mint_past_the_oracle_limit_is_refused_by_name(tmp_path: Path) -> None:
    edgechain("net", "up", "--dir", tmp_path / "n", "--validators", "1", "--policy", "testnet")
    result = edgechain(
        "story", "mint", "--dir", tmp_path / "n", "--model", "m", "-i", "x", "--oracle-budget", "11"
    )
    result.assert_user_error(5, "maximum_service_oracle_execution_ms", "11000", "10000")


def test_registry_blocks_are_measured_too(tmp_path: Path) -> None:
    """A plain registration is a block like any other: past the executed-block limit, refused."""
    with _network(tmp_path, "n", maximum_executed_block_size=100) as net:
        chain = net.default_chain()
        with pytest.raises(ResourceLimitExceeded, match="maximum_executed_block_size: the block"):
            chain.execute(chain.app_id("model-registry"), register())
