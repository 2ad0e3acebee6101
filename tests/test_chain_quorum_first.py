"""A block with oracle calls is checked quorum-first (chain/agreement.py): a quorum of validators
is asked, another for each that fails, the rest once the first wave is late; the certificate
still holds a quorum of votes, each from a validator whose own oracle gave the recorded response.

The validators' oracles here are scripted (the story book's are models: tests/test_story_book.py);
the block is a MintStory whose recorded response they confirm, refuse or sit on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgechain.chain import Network, agreement
from edgechain.chain.oracle import OracleCall
from edgechain.contract.story_book import APPLICATION_NAME, MintStory, token_ids_hash
from edgechain.errors import Cancelled, QuorumNotReached
from edgechain.service.query import GenerateQuery
from edgechain.service.receipt import query_parameters

RESPONSE = {
    "token_ids": [1, 2],
    "token_ids_blake3": token_ids_hash([1, 2]),
    "text": "ab",
    "tokens": 2,
    "receipt_hash": "0" * 64,
}


class ScriptedOracle:
    """Answers the recorded response (``wrong``: another one); ``stuck``: answers only once
    cancelled (its vote no longer needed)."""

    def __init__(self, name: str, calls: list[str], lock: threading.Lock) -> None:
        self.name, self.calls, self.lock = name, calls, lock
        self.expected_cost = 1.0
        self.wrong = self.stuck = False
        self.cancelled = threading.Event()

    def response(self, call: OracleCall) -> Any:
        with self.lock:
            self.calls.append(self.name)
        call.phases["scripted_by"] = self.name
        if self.stuck:
            assert call.cancel is not None and call.cancel.wait(60)
            self.cancelled.set()
            raise Cancelled("not needed")
        return {**RESPONSE, "text": "wrong"} if self.wrong else dict(RESPONSE)

    def close(self) -> None:
        pass


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[Network, dict[str, ScriptedOracle], list[str]]]:
    calls: list[str] = []
    lock = threading.Lock()
    oracles: dict[str, ScriptedOracle] = {}

    def oracle_for(name: str) -> ScriptedOracle:
        oracles[name] = ScriptedOracle(name, calls, lock)
        return oracles[name]

    with Network.create(tmp_path / "net", validators=4) as network:
        network.install_oracles(oracle_for)
        yield network, oracles, calls


def mint(network: Network) -> Any:
    query = GenerateQuery(model="m", prompt="p", max_tokens=2)
    operation = MintStory("m", "1", "p", query_parameters(query), None, RESPONSE)
    chain = network.default_chain()
    return chain.execute(chain.app_id(APPLICATION_NAME), operation)


def first_wave(network: Network) -> list[str]:
    """The validators asked first for the default chain's next block."""
    names = network.committee.names
    start = network.default_chain().height % len(names)
    return (names[start:] + names[:start])[: network.committee.quorum]


def test_an_honest_committee_is_asked_a_quorum_and_each_signer_checked(
    net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    network, _, calls = net
    monkeypatch.setattr(agreement, "MIN_WAVE_WAIT_S", 60.0)  # never late: no jitter counts
    sat_out: set[str] = set()
    for _ in range(4):
        wave = first_wave(network)
        calls.clear()
        certificate = mint(network)
        assert sorted(calls) == sorted(wave)
        assert sorted(certificate.signers) == sorted(wave)
        assert network.default_chain().last_failures == []
        sat_out |= set(network.committee.names) - set(calls)
        # Each validator's answer to this block carries its own oracle call's phases.
        for validator in network.validators:
            times = validator.answer_times(certificate.block_hash)
            if validator.name in wave:
                assert times is not None and times.asked_at <= times.answered_at
                assert times.oracle == ({"scripted_by": validator.name},)
            else:
                assert times is None
    # The first wave turns with the height: each validator sat one of the four mints out.
    assert sat_out == set(network.committee.names)


def test_a_validator_that_refuses_in_the_first_wave_is_replaced(
    net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    network, oracles, calls = net
    monkeypatch.setattr(agreement, "MIN_WAVE_WAIT_S", 60.0)
    wrong = first_wave(network)[0]
    oracles[wrong].wrong = True
    certificate = mint(network)
    assert sorted(calls) == network.committee.names
    assert wrong not in certificate.signers and len(certificate.signers) == 3
    [failure] = network.default_chain().last_failures
    assert failure.validator == wrong and "gave another result" in failure.reason


def test_a_validator_stuck_in_the_first_wave_makes_it_late_and_is_told_to_stop(
    net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    network, oracles, calls = net
    monkeypatch.setattr(agreement, "MIN_WAVE_WAIT_S", 0.0)
    stuck = first_wave(network)[-1]
    oracles[stuck].stuck = True
    certificate = mint(network)
    assert stuck not in certificate.signers and len(certificate.signers) == 3
    assert set(certificate.signers) <= set(calls)
    assert oracles[stuck].cancelled.wait(60)  # abandoned: its check stopped


def test_a_wrong_record_is_refused_by_everyone_and_nothing_is_certified(net: Any) -> None:
    network, oracles, calls = net
    for oracle in oracles.values():
        oracle.wrong = True
    height = network.default_chain().height
    with pytest.raises(QuorumNotReached, match="0 of 4 validators signed"):
        mint(network)
    assert sorted(calls) == network.committee.names
    assert network.default_chain().height == height


def test_more_than_f_refusals_leave_no_quorum(net: Any) -> None:
    network, oracles, _ = net
    for name in first_wave(network)[:2]:
        oracles[name].wrong = True
    with pytest.raises(QuorumNotReached, match="2 of 4 validators signed, 3 needed"):
        mint(network)


def mixed_committee(net: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``net`` with v1 and v3 three times slower than v2 and v4 (as wasm validators are against
    native ones), and no second wave before a minute: the first wave alone answers."""
    network, oracles, calls = net
    monkeypatch.setattr(agreement, "MIN_WAVE_WAIT_S", 60.0)
    for name in ("v1", "v3"):
        oracles[name].expected_cost = 3.0
    return network, oracles, calls


def test_the_validators_expected_to_answer_first_are_asked_first(
    net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mixed committee (v1 and v3 three times slower, as wasm validators are): the first wave
    is the two fast validators and one slow one, the slow ones taking turns."""
    network, oracles, calls = mixed_committee(net, monkeypatch)
    slow_asked: list[str] = []
    for _ in range(4):
        calls.clear()
        certificate = mint(network)
        assert {"v2", "v4"} <= set(calls) and len(calls) == 3
        assert sorted(certificate.signers) == sorted(calls)
        [slow] = set(calls) - {"v2", "v4"}
        slow_asked.append(slow)
    assert sorted(slow_asked) == ["v1", "v1", "v3", "v3"]


def test_a_fast_validator_that_refuses_is_replaced_by_a_slow_one(
    net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    network, oracles, calls = mixed_committee(net, monkeypatch)
    oracles["v2"].wrong = True
    certificate = mint(network)
    assert sorted(calls) == network.committee.names
    assert sorted(certificate.signers) == ["v1", "v3", "v4"]


def test_an_oracle_that_does_not_say_its_cost_counts_as_a_fast_one(
    net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An oracle written before ``expected_cost`` existed still certifies, ranked at 1.0."""
    network, oracles, calls = mixed_committee(net, monkeypatch)
    del oracles["v2"].expected_cost
    certificate = mint(network)
    assert {"v2", "v4"} <= set(calls) and len(calls) == 3
    assert sorted(certificate.signers) == sorted(calls)
