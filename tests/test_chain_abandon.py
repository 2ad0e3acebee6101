"""A validator whose vote is no longer needed (the block has its quorum) stops re-executing the
block's oracle calls: ``Validator.abandon``, called by ``certify`` for the pending validators."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgechain.chain.block import Operation
from edgechain.chain.oracle import OracleCall
from edgechain.chain.validator import ProposalRefused, Validator
from edgechain.errors import Cancelled

OPERATION = Operation(b"\x01" * 32, "MintStory", {"oracle": {"text": "x"}})
BLOCK = b"\x02" * 32


class WaitingOracle:
    """An oracle whose answer takes until it is cancelled (or a generous bound)."""

    def __init__(self) -> None:
        self.expected_cost = 1.0
        self.started = threading.Event()
        self.calls = 0

    def response(self, call: OracleCall) -> Any:
        self.calls += 1
        self.started.set()
        if call.cancel is not None and call.cancel.wait(60):
            raise Cancelled("not needed")
        return {"text": "x"}

    def close(self) -> None:
        pass


def _validator() -> tuple[Validator, WaitingOracle]:
    validator = Validator("v1", Ed25519PrivateKey.generate())
    oracle = WaitingOracle()
    validator.oracle = oracle
    return validator, oracle


def _check(validator: Validator) -> None:
    validator._check_oracle_responses(b"c" * 32, [OPERATION], validator._abandon_event(BLOCK))


def test_an_abandoned_check_stops_while_it_runs() -> None:
    validator, oracle = _validator()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            _check(validator)
        except ProposalRefused as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert oracle.started.wait(60)
    validator.abandon(BLOCK)
    thread.join(60)
    assert not thread.is_alive()
    assert len(outcome) == 1 and "oracle call failed" in str(outcome[0])


def test_a_check_abandoned_before_it_starts_never_runs_the_oracle() -> None:
    validator, oracle = _validator()
    validator.abandon(BLOCK)
    with pytest.raises(ProposalRefused, match="has its quorum, check stopped"):
        _check(validator)
    assert oracle.calls == 0
