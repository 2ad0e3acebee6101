"""Where blocks are certified: send a proposal to all validators, gather votes, certify.

Every validator is asked at once; each vote has ``vote_timeout`` seconds to arrive. A block
without oracle calls is quick to check, so with ``inline`` the honest validators (no fault
configured) are asked first, in committee order, in the proposer's thread, until a quorum has
voted; only if they do not make a quorum are the others asked through their queues. Handing a
small block to N threads and back costs more than checking it. Each vote is
checked on arrival (signature, block, state hash); a validator that signs two different blocks at
the proposal's height is excluded as equivocating. As soon as a quorum of valid votes agree on
(block hash, state hash), the certificate is built from exactly a quorum of them. Without a
quorum, :class:`QuorumNotReached` names every validator that failed and how.

A block with oracle calls costs each validator a re-execution (seconds of the cores they
share), so with ``quorum_first`` only a quorum of validators is asked at first, in order of
expected answer time: the validators whose engines check fastest first
(:meth:`Validator.expected_check_cost`; on a mixed committee a wasm check takes about three
times a native one), and among equals from a place that turns with the block's height (each
takes its share of the checks). Another is asked for each one that fails, and all the rest once
the first wave is late (a slow or stuck validator): three times the time its first vote took (at
least half a second) after it, since validators on different engines check at speeds up to
about three times apart. Asking fewer, or the fastest first, changes nothing a certificate
means: it still needs a quorum of votes, each from a validator that checked the block, and any
quorum certifies (a fast validator that fails or is late is replaced by the next). The honest
case saves the check a quorum makes unnecessary (one of four) and the cores it would have taken
from the others; a validator asked but no longer needed is told to stop
(:meth:`ValidatorPool.abandon`).
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from edgechain.chain.block import Proposal
from edgechain.chain.certificate import Certificate, Vote
from edgechain.chain.committee import Committee
from edgechain.chain.validator import ProposalRefused, Validator, ValidatorUnreachable
from edgechain.errors import QuorumNotReached


@dataclass(frozen=True)
class ValidatorFailure:
    """Why one validator's vote did not count."""

    validator: str
    reason: str

    def __str__(self) -> str:
        return f"{self.validator}: {self.reason}"


class ValidatorPool:
    """One single-threaded request queue per validator, as if each were a remote node."""

    def __init__(self, validators: list[Validator]) -> None:
        self.validators = validators
        self._queues = {
            v.name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"validator-{v.name}")
            for v in validators
        }

    def submit(self, validator: Validator, proposal: Proposal) -> Future[list[Vote]]:
        return self._queues[validator.name].submit(validator.handle_proposal, proposal)

    def abandon(self, name: str, block_hash: bytes) -> None:
        """Tell validator ``name`` its vote on ``block_hash`` is no longer needed."""
        for validator in self.validators:
            if validator.name == name:
                validator.abandon(block_hash)

    def close(self) -> None:
        for queue in self._queues.values():
            queue.shutdown(wait=False, cancel_futures=True)


def _short(h: bytes) -> str:
    return h.hex()[:12]


def _judge(
    name: str, votes: list[Vote], proposal: Proposal, block_hash: bytes, committee: Committee
) -> Vote | ValidatorFailure:
    """The one vote of ``name`` that counts, or why none does."""
    block = proposal.block
    if any(not v.is_valid(committee) or v.validator != name for v in votes):
        return ValidatorFailure(name, "bad signature (vote does not verify)")
    at_height = {
        v.block_hash for v in votes if (v.chain_id, v.height) == (block.chain_id, block.height)
    }
    if len(at_height) > 1:
        hashes = " and ".join(sorted(_short(h) for h in at_height))
        return ValidatorFailure(
            name, f"equivocated (signed blocks {hashes} at height {block.height})"
        )
    for vote in votes:
        if (vote.chain_id, vote.height, vote.block_hash) != (
            block.chain_id,
            block.height,
            block_hash,
        ):
            continue
        if vote.state_hash != block.state_hash:
            return ValidatorFailure(
                name,
                f"wrong state hash (signed {_short(vote.state_hash)}, "
                f"block has {_short(block.state_hash)})",
            )
        return vote
    return ValidatorFailure(name, "voted for another block")


def _outcome(
    name: str, answer: Future[list[Vote]], proposal: Proposal, committee: Committee
) -> Vote | ValidatorFailure:
    try:
        return _judge(name, answer.result(), proposal, proposal.block_hash, committee)
    except ValidatorUnreachable:
        return ValidatorFailure(name, "offline (unreachable)")
    except ProposalRefused as exc:
        return ValidatorFailure(name, f"refused: {exc}")


def _asked_inline(validator: Validator, proposal: Proposal) -> Future[list[Vote]]:
    answer: Future[list[Vote]] = Future()
    try:
        answer.set_result(validator.handle_proposal(proposal))
    except (ValidatorUnreachable, ProposalRefused) as exc:
        answer.set_exception(exc)
    return answer


#: How long a quorum-first certification's first wave may take after its first vote, as a
#: share of the time that vote took, before the other validators are asked too.
WAVE_SLACK = 3.0
#: The least that wait is, in seconds: below it a late vote is the machine's jitter (checks of a
#: tiny model take milliseconds), not a slow validator.
MIN_WAVE_WAIT_S = 0.5


def _turned(validators: list[Validator], height: int) -> list[Validator]:
    """``validators`` in committee order, starting at the place ``height`` turns to."""
    start = height % len(validators) if validators else 0
    return validators[start:] + validators[:start]


def asking_order(validators: list[Validator], height: int) -> list[Validator]:
    """The order a block at ``height`` with oracle calls asks ``validators`` in: by expected
    answer time (:meth:`Validator.expected_check_cost`), equals in the turned order (the sort
    is stable), so that equal validators share the checks."""
    return sorted(_turned(validators, height), key=Validator.expected_check_cost)


def certify(
    proposal: Proposal,
    committee: Committee,
    pool: ValidatorPool,
    vote_timeout: float,
    chain_label: str = "",
    inline: bool = False,
    quorum_first: bool = False,
) -> tuple[Certificate, list[ValidatorFailure]]:
    """Gather votes for ``proposal`` and return its certificate and the failures seen so far.

    Raises :class:`QuorumNotReached` when fewer than a quorum of valid, agreeing votes arrive
    within ``vote_timeout`` seconds; nothing is committed then. ``inline``: ask the honest
    validators in this thread first; ``quorum_first``: ask only a quorum at first, the others
    as needed (the module's docstring).
    """
    block = proposal.block
    started = time.monotonic()
    deadline = started + vote_timeout
    accepted: dict[str, Vote] = {}
    failures: list[ValidatorFailure] = []
    asked: set[str] = set()
    if inline:
        for validator in pool.validators:
            if len(accepted) >= committee.quorum:
                break
            if validator.fault is None:
                asked.add(validator.name)
                outcome = _outcome(
                    validator.name, _asked_inline(validator, proposal), proposal, committee
                )
                if isinstance(outcome, Vote):
                    accepted[validator.name] = outcome
                else:
                    failures.append(outcome)
    pending: dict[Future[list[Vote]], str] = {}
    reserve: list[Validator] = []
    if len(accepted) < committee.quorum:
        reserve = [v for v in asking_order(pool.validators, block.height) if v.name not in asked]
        wave = committee.quorum - len(accepted) if quorum_first else len(reserve)
        pending = {pool.submit(v, proposal): v.name for v in reserve[:wave]}
        reserve = reserve[wave:]
    late_at: float | None = None  # when the first wave is late (set at its first vote)
    while pending and len(accepted) < committee.quorum:
        now = time.monotonic()
        remaining = deadline - now
        if remaining <= 0:
            break
        if reserve and late_at is not None and now >= late_at:
            pending.update({pool.submit(v, proposal): v.name for v in reserve})
            reserve = []
        wake = remaining if not reserve or late_at is None else min(remaining, late_at - now)
        done, _ = wait(pending, timeout=max(wake, 0.0), return_when=FIRST_COMPLETED)
        for future in done:
            name = pending.pop(future)
            outcome = _outcome(name, future, proposal, committee)
            if isinstance(outcome, Vote):
                accepted[name] = outcome
                if late_at is None:
                    now = time.monotonic()
                    late_at = now + max(WAVE_SLACK * (now - started), MIN_WAVE_WAIT_S)
            else:
                failures.append(outcome)
                if reserve:  # one more validator in its place
                    validator = reserve.pop(0)
                    pending[pool.submit(validator, proposal)] = validator.name
    if len(accepted) < committee.quorum:
        for name in pending.values():
            failures.append(ValidatorFailure(name, f"timed out (no vote within {vote_timeout:g}s)"))
        for validator in reserve:
            failures.append(ValidatorFailure(validator.name, "not asked (no first vote came)"))
        failures.sort(key=lambda f: committee.index_of(f.validator))
        where = f" on chain {chain_label}" if chain_label else ""
        raise QuorumNotReached(
            f"no quorum at height {block.height}{where}: {len(accepted)} of {committee.size} "
            f"validators signed, {committee.quorum} needed; " + "; ".join(str(f) for f in failures)
        )
    # The quorum has signed: the others' votes are not needed, their checks stop.
    for name in pending.values():
        pool.abandon(name, proposal.block_hash)
    signers = sorted(accepted, key=committee.index_of)[: committee.quorum]
    certificate = Certificate(
        block.chain_id,
        block.height,
        proposal.block_hash,
        block.state_hash,
        tuple((name, accepted[name].signature) for name in signers),
    )
    return certificate, failures
