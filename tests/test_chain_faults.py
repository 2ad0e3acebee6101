"""Each faulty behaviour at the tolerated bound (blocks commit) and one past it (nothing does)."""

import time

import pytest
from chain_helpers import FAST_TIMEOUT, register

from edgechain.chain import Network, verify_certificate
from edgechain.errors import QuorumNotReached

# fault -> what the QuorumNotReached message says about such a validator
FAULTS = {
    "offline": "offline",
    "slow": "timed out",
    "bad-signature": "bad signature",
    "wrong-state": "wrong state hash",
    "equivocate": "equivocated",
}


def _network(tmp_path, n, faulty):
    return Network.create(tmp_path / "net", validators=n, faulty=faulty, vote_timeout=FAST_TIMEOUT)


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("n, faulty_names", [(4, ["v3"]), (7, ["v2", "v6"])])
def test_fault_at_tolerated_bound_commits(tmp_path, fault, n, faulty_names):
    with _network(tmp_path, n, {name: fault for name in faulty_names}) as net:
        assert len(faulty_names) == net.committee.tolerated_faults
        chain = net.default_chain()
        app = chain.application("model-registry")
        for version in ("1", "2"):
            cert = chain.execute(app.id, register(version=version))
            verify_certificate(cert, net.committee, chain.block(cert.height).block)
            assert not set(cert.signers) & set(faulty_names)
            assert {f.validator for f in chain.last_failures} <= set(faulty_names)
        assert chain.height == 2
        assert chain.honest_replicas_agree()
        assert app.query_model("stories260K").entry.version == "2"


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_past_bound_commits_nothing(tmp_path, fault):
    with _network(tmp_path, 4, {"v2": fault, "v4": fault}) as net:
        chain = net.default_chain()
        app = chain.application("model-registry")
        with pytest.raises(QuorumNotReached) as err:
            chain.execute(app.id, register())
        message = str(err.value)
        assert "height 0" in message and "2 of 4 validators signed, 3 needed" in message
        assert f"v2: {FAULTS[fault]}" in message and f"v4: {FAULTS[fault]}" in message
        assert "v1" not in message and "v3" not in message
        assert chain.height == 0
        assert list(net.storage.block_rows(chain.id)) == []
        assert list(chain.blocks()) == []
        # Nothing was committed, so the same height commits once the validators recover.
        net.set_faults(None)
        if fault == "slow":
            time.sleep(3 * FAST_TIMEOUT)  # the slow validators are still answering the old proposal
        assert chain.execute(app.id, register()).height == 0
        assert chain.honest_replicas_agree()


def test_mixed_faults_past_bound_name_every_failure(tmp_path):
    faulty = {"v2": "offline", "v4": "wrong-state", "v7": "equivocate"}
    with _network(tmp_path, 7, faulty) as net:
        chain = net.default_chain()
        with pytest.raises(QuorumNotReached) as err:
            chain.execute(chain.app_id("model-registry"), register())
        message = str(err.value)
        assert "4 of 7 validators signed, 5 needed" in message
        for part in ("v2: offline", "v4: wrong state hash", "v7: equivocated"):
            assert part in message


def test_slow_validator_within_timeout_still_votes(tmp_path):
    # Two of four slow but answering in time: the quorum of 3 needs one of them.
    with Network.create(
        tmp_path / "net", validators=4, faulty="v3=slow:0.01,v4=slow:0.01", vote_timeout=2.0
    ) as net:
        chain = net.default_chain()
        cert = chain.execute(chain.app_id("model-registry"), register())
        assert len(set(cert.signers) & {"v3", "v4"}) >= 1


def test_single_validator_network(tmp_path):
    with Network.create(tmp_path / "net", validators=1) as net:
        chain = net.default_chain()
        cert = chain.execute(chain.app_id("model-registry"), register())
        assert cert.signers == ["v1"]


def test_faults_persist_in_the_directory(tmp_path):
    _network(tmp_path, 4, "v2=offline").close()
    with Network.open(tmp_path / "net") as net:
        assert net.status().validators[1].fault == "offline"
    with Network.open(tmp_path / "net", faulty="") as net:
        assert all(v.fault is None for v in net.status().validators)
