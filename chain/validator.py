"""A mock validator: checks a proposal, executes it on its own state copy, votes; maybe faulty.

An honest validator votes for a proposal only if the signer's signature is valid, the block
extends its head (height, previous hash, timestamp), every operation executes, and the state hash
it computes equals the one the block claims. A faulty validator (see faults.py) deviates in one
way. Each validator serves requests one at a time, like a remote node behind a queue.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgechain.chain import signatures
from edgechain.chain.application import execute_block
from edgechain.chain.blobs import blob_id, published_blobs, referenced_blobs
from edgechain.chain.block import (
    GENESIS_HEAD,
    MAX_BLOCK_BYTES,
    Block,
    ChainHead,
    Proposal,
    proposal_message,
)
from edgechain.chain.certificate import CertifiedBlock, Vote, vote_message
from edgechain.chain.encoding import hash_encoded, hash_value
from edgechain.chain.faults import FaultKind, ValidatorFault
from edgechain.chain.keys import public_bytes
from edgechain.chain.oracle import (
    DEFAULT_ORACLE_BUDGET_S,
    Oracle,
    OracleCall,
    recorded_response,
)
from edgechain.chain.other_chains import (
    NotCertifiedElsewhere,
    check_other_chains,
    takes_from_other_chains,
)
from edgechain.chain.policy import NO_FEES, ResourcePolicy, written_bytes
from edgechain.chain.state import ChainState, WriteSet
from edgechain.errors import (
    ChainError,
    ContractError,
    EdgechainError,
    ResourceLimitExceeded,
    Timeout,
)


class ValidatorUnreachable(ChainError):
    """The validator did not answer at all (offline)."""


class ProposalRefused(ChainError):
    """An honest validator's refusal to vote; the message says why."""


#: How many answers' :class:`VoteTimes` a validator keeps (:meth:`Validator.answer_times`).
KEPT_ANSWER_TIMES = 64


@dataclass(frozen=True)
class VoteTimes:
    """Where one validator's answer to a proposal went (``time.perf_counter`` seconds): when it
    was asked and answered, and the seconds its oracle checks, its execution of the block and
    its signature took (zero for a phase it did not reach: a refusal); ``oracle``: each oracle
    call's own phases (:attr:`OracleCall.phases`), in the block's order."""

    block_hash: bytes
    asked_at: float
    answered_at: float
    checks_s: float = 0.0
    execute_s: float = 0.0
    sign_s: float = 0.0
    oracle: tuple[dict[str, float | bool], ...] = ()


@dataclass
class _Replica:
    """A validator's copy of one chain."""

    owner: bytes
    state: ChainState
    head: ChainHead = GENESIS_HEAD
    pending: dict[bytes, WriteSet] = field(default_factory=dict)


_signer_keys: dict[bytes, Ed25519PublicKey] = {}


def _public_key(raw: bytes) -> Ed25519PublicKey:
    key = _signer_keys.get(raw)
    if key is None:
        key = _signer_keys[raw] = Ed25519PublicKey.from_public_bytes(raw)
    return key


def proposal_signature_valid(signer: bytes, signature: bytes, block_hash: bytes) -> bool:
    """True when ``signature`` by ``signer`` (raw public key) covers ``block_hash``."""
    try:
        key = _public_key(signer)
    except ValueError:
        return False
    return signatures.verify(key, signer, signature, proposal_message(block_hash))


class CertifiedMessages(Protocol):
    """Where a validator reads other chains' certified blocks (the network's storage)."""

    def certified_block(self, chain_id: bytes, height: int) -> tuple[bytes, Block] | None: ...

    def has_chain(self, chain_id: bytes) -> bool: ...


class Validator:
    """One committee member with its own replica of every chain."""

    def __init__(
        self,
        name: str,
        key: Ed25519PrivateKey,
        fault: ValidatorFault | None = None,
        slow_delay: float = 0.1,
    ) -> None:
        self.name = name
        self._key = key
        self._public = public_bytes(key)
        self.fault = fault
        # How long a SLOW validator without an explicit delay waits: set past the vote timeout.
        self.slow_delay = slow_delay
        self._replicas: dict[bytes, _Replica] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        #: Per proposed block hash, set once this validator's vote on it is no longer needed
        #: (the block has its quorum): its oracle check stops (:meth:`abandon`).
        self._abandoned: dict[bytes, threading.Event] = {}
        self._abandoned_lock = threading.Lock()
        #: Recomputes the oracle responses blocks record (None: refuses blocks that have any).
        self.oracle: Oracle | None = None
        self.oracle_budget_s = DEFAULT_ORACLE_BUDGET_S
        #: The network's resource policy, checked before voting (chain/policy.py).
        self.policy: ResourcePolicy = NO_FEES
        #: Ids of the blobs this validator stores (their bytes are in the network's database).
        self.held_blobs: set[bytes] = set()
        #: Other chains' certified blocks, for incoming bundles (None: refuses blocks with any).
        self.messages: CertifiedMessages | None = None
        #: The phases of this validator's latest answers, by block hash (:meth:`answer_times`).
        self._answer_times: OrderedDict[bytes, VoteTimes] = OrderedDict()
        self._times_lock = threading.Lock()

    # --- replicas -------------------------------------------------------------------------

    def add_chain(
        self,
        chain_id: bytes,
        owner: bytes,
        state: ChainState,
        head: ChainHead = GENESIS_HEAD,
    ) -> None:
        """Start following a chain from a verified state and head (the validator keeps
        ``state``)."""
        with self._lock:
            self._replicas[chain_id] = _Replica(owner, state, head)

    def state_hash(self, chain_id: bytes) -> bytes:
        with self._lock:
            return self._replicas[chain_id].state.hash()

    def next_height(self, chain_id: bytes) -> int:
        with self._lock:
            return self._replicas[chain_id].head.next_height

    def expected_check_cost(self) -> float:
        """How long this validator's oracle checks take, relative to the fastest engine's
        (:attr:`Oracle.expected_cost`; 1.0 without an oracle, which refuses such blocks at once,
        and for an oracle that does not say: one written before the attribute existed)."""
        return float(getattr(self.oracle, "expected_cost", 1.0))

    def holds(self, blob: bytes) -> bool:
        """True when this validator can serve ``blob`` (stores it, and is reachable)."""
        if self.fault is not None and self.fault.kind in (
            FaultKind.OFFLINE,
            FaultKind.MISSING_BLOBS,
        ):
            return False
        with self._lock:
            return blob in self.held_blobs

    # --- voting ---------------------------------------------------------------------------

    def handle_proposal(self, proposal: Proposal) -> list[Vote]:
        """Check and execute ``proposal``; return this validator's vote(s) or raise a refusal."""
        fault = self.fault
        if fault is not None and fault.kind is FaultKind.OFFLINE:
            raise ValidatorUnreachable(f"{self.name} is unreachable")
        asked = time.perf_counter()
        with self._lock:
            phases: dict[str, float] = {}
            calls: list[OracleCall] = []
            try:
                votes = self._vote(proposal, phases, calls)
            finally:
                answered = time.perf_counter()
                oracle = tuple(call.phases for call in calls)
                self._remember_times(
                    VoteTimes(proposal.block_hash, asked, answered, **phases, oracle=oracle)
                )
        if fault is not None and fault.kind is FaultKind.SLOW:
            # Wait outside the lock: the validator is slow to answer, not stuck. stop() cuts the
            # wait short so that closing a network never hangs on a slow validator.
            self._stopped.wait(self.slow_delay if fault.delay is None else fault.delay)
        return votes

    def answer_times(self, block_hash: bytes) -> VoteTimes | None:
        """Where this validator's answer to the proposal of ``block_hash`` went (benchmarks
        read it); None when it was not asked, or answered too long ago (the last
        :data:`KEPT_ANSWER_TIMES` are kept)."""
        with self._times_lock:
            return self._answer_times.get(block_hash)

    def _remember_times(self, times: VoteTimes) -> None:
        # Keyed by block: answers to proposals on other chains, in other threads, do not
        # overwrite each other.
        with self._times_lock:
            self._answer_times[times.block_hash] = times
            while len(self._answer_times) > KEPT_ANSWER_TIMES:
                self._answer_times.popitem(last=False)

    def _vote(
        self, proposal: Proposal, phases: dict[str, float], calls: list[OracleCall]
    ) -> list[Vote]:
        """The checks, execution and votes of :meth:`handle_proposal`; ``phases`` gets the
        seconds fields of its :class:`VoteTimes`, ``calls`` each oracle call made."""
        block = proposal.block
        replica = self._replicas.get(block.chain_id)
        if replica is None:
            raise ProposalRefused(f"unknown chain {block.chain_id.hex()[:16]}")
        head = replica.head
        if block.height != head.next_height:
            raise ProposalRefused(f"expected height {head.next_height}, got {block.height}")
        if block.previous_hash != head.block_hash:
            raise ProposalRefused("the block does not extend the chain's head")
        if block.timestamp_us < head.timestamp_us:
            raise ProposalRefused("the block's timestamp is earlier than its predecessor's")
        encoded = block.encode()
        if len(encoded) > MAX_BLOCK_BYTES:
            raise ProposalRefused(f"the block is {len(encoded)} bytes, over {MAX_BLOCK_BYTES}")
        block_hash = hash_encoded("block", encoded)
        if not proposal_signature_valid(block.signer, proposal.signature, block_hash):
            raise ProposalRefused("the proposal's signature is not valid")
        if block.signer != replica.owner:
            raise ProposalRefused("the block is not signed by the chain's owner")
        self._check_blobs(proposal)
        self._check_messages(proposal)
        abandoned = self._abandon_event(block_hash)
        started = time.perf_counter()
        self._check_oracle_responses(block.chain_id, block.operations, abandoned, calls)
        checked = time.perf_counter()
        phases["checks_s"] = checked - started
        try:
            writes = execute_block(replica.state, block, replica.owner, block_hash)
        except ContractError as exc:
            raise ProposalRefused(f"an operation was rejected: {exc}") from exc
        finally:
            phases["execute_s"] = time.perf_counter() - checked
        try:
            self.policy.check_block(
                block_bytes=len(encoded),
                blob_sizes=[len(data) for data in proposal.blobs.values()],
                published_blobs=len(published_blobs(block.operations)),
                bytes_written=written_bytes(writes),
            )
        except ResourceLimitExceeded as exc:
            raise ProposalRefused(str(exc)) from exc
        state_hash = replica.state.hash_with(writes)
        if state_hash != block.state_hash:
            raise ProposalRefused("executing the block gives a different state hash")
        # Only the latest proposal per height is kept: a new proposal replaces an uncertified one.
        replica.pending = {block_hash: writes}
        signing = time.perf_counter()
        votes = self._signed_votes(block.chain_id, block.height, block_hash, state_hash, proposal)
        phases["sign_s"] = time.perf_counter() - signing
        return votes

    def _check_blobs(self, proposal: Proposal) -> None:
        """Refuse unless every blob the block references is held here or carried (and intact)
        by the proposal."""
        keeps = self.fault is None or self.fault.kind is not FaultKind.MISSING_BLOBS
        for published in published_blobs(proposal.block.operations):
            data = proposal.blobs.get(published.blob)
            if data is None:
                continue
            if len(data) != published.size or blob_id(data) != published.blob:
                raise ProposalRefused(
                    f"blob {published.blob.hex()[:16]} carried by the proposal does not match "
                    "its id and size"
                )
        carried = set(proposal.blobs) if keeps else set()
        for blob in referenced_blobs(proposal.block.operations):
            if not keeps or (blob not in self.held_blobs and blob not in carried):
                raise ProposalRefused(f"missing blob {blob.hex()[:16]}: it does not hold it")

    def _check_messages(self, proposal: Proposal) -> None:
        """Refuse a block that takes a bundle no certified block sent here or uses an
        application no certified block created as described (chain/other_chains.py), or that
        sends to a chain that does not exist. (Order and exactly-once are execution's:
        chain/application.py.)"""
        block = proposal.block
        if not (block.outgoing or takes_from_other_chains(block)):
            return
        if self.messages is None:
            raise ProposalRefused("the block refers to other chains: this validator reads none")
        try:
            check_other_chains(block, self.messages.certified_block)
        except NotCertifiedElsewhere as exc:
            raise ProposalRefused(str(exc)) from None
        for message in block.outgoing:
            if not self.messages.has_chain(message.recipient):
                raise ProposalRefused(
                    f"a message to chain {message.recipient.hex()[:16]}, which does not exist"
                )

    def _abandon_event(self, block_hash: bytes) -> threading.Event:
        with self._abandoned_lock:
            return self._abandoned.setdefault(block_hash, threading.Event())

    def abandon(self, block_hash: bytes) -> None:
        """The proposal of ``block_hash`` has its quorum without this validator's vote: stop
        re-executing its oracle calls (a queued proposal stops at its first one)."""
        self._abandon_event(block_hash).set()

    def _check_oracle_responses(
        self,
        chain_id: bytes,
        operations: Any,
        cancel: threading.Event | None = None,
        calls: list[OracleCall] | None = None,
    ) -> None:
        """Re-execute every oracle call the block records; refuse unless each gives the
        recorded response within the block's oracle budget. ``cancel`` set: the vote is not
        needed any more, the check stops (a refusal nobody waits for). ``calls`` gets each
        call made (their phases)."""
        started = time.monotonic()
        for index, operation in enumerate(operations):
            recorded = recorded_response(operation)
            if recorded is None:
                continue
            if self.oracle is None:
                raise ProposalRefused(f"operation {index} records an oracle response: no oracle")
            remaining = self.oracle_budget_s - (time.monotonic() - started)
            if cancel is not None and cancel.is_set():
                raise ProposalRefused(f"operation {index}: the block has its quorum, check stopped")
            try:
                if remaining <= 0:
                    raise Timeout("no time left")
                call = OracleCall(chain_id, operation, timeout=remaining, cancel=cancel)
                if calls is not None:
                    calls.append(call)
                response = self.oracle.response(call)
            except Timeout:
                raise ProposalRefused(
                    f"operation {index}: re-executing its oracle call ran past the block's "
                    f"oracle budget of {self.oracle_budget_s:g} s"
                ) from None
            except EdgechainError as exc:
                raise ProposalRefused(f"operation {index}: its oracle call failed: {exc}") from exc
            if self.fault is not None and self.fault.kind is FaultKind.WRONG_OUTPUT:
                response = _perturbed(response)
            if response != recorded:
                raise ProposalRefused(
                    f"operation {index}: re-executing its oracle call gave another result "
                    f"({_digest(response)}, the block records {_digest(recorded)})"
                )

    def _sign(self, chain_id: bytes, height: int, block_hash: bytes, state_hash: bytes) -> Vote:
        message = vote_message(chain_id, height, block_hash, state_hash)
        signature = signatures.sign(self._key, self._public, message)
        return Vote(self.name, chain_id, height, block_hash, state_hash, signature)

    def _signed_votes(
        self, chain_id: bytes, height: int, block_hash: bytes, state_hash: bytes, p: Proposal
    ) -> list[Vote]:
        kind = None if self.fault is None else self.fault.kind
        if kind is FaultKind.WRONG_STATE:
            wrong = hash_value("wrong-state", [state_hash])
            return [self._sign(chain_id, height, block_hash, wrong)]
        if kind is FaultKind.BAD_SIGNATURE:
            vote = self._sign(chain_id, height, block_hash, state_hash)
            return [replace(vote, signature=os.urandom(64))]
        if kind is FaultKind.EQUIVOCATE:
            # A conflicting block at the same height: same content, one microsecond later.
            other = replace(p.block, timestamp_us=p.block.timestamp_us + 1)
            return [
                self._sign(chain_id, height, block_hash, state_hash),
                self._sign(chain_id, height, other.hash(), state_hash),
            ]
        return [self._sign(chain_id, height, block_hash, state_hash)]

    def stop(self) -> None:
        """Stop waiting in slow answers (the network is closing)."""
        self._stopped.set()

    # --- commits --------------------------------------------------------------------------

    def handle_certificate(self, certified: CertifiedBlock) -> None:
        """Apply a certified block to this validator's replica.

        Certificates come from the in-process network, which built them from votes it verified,
        so the validator does not re-verify the signatures here.
        """
        if self.fault is not None and self.fault.kind is FaultKind.OFFLINE:
            return
        block = certified.block
        with self._lock:
            replica = self._replicas[block.chain_id]
            if block.height != replica.head.next_height:
                return  # already applied, or this replica lags and catches up on reopen
            writes = replica.pending.pop(certified.block_hash, None)
            if writes is None:
                writes = execute_block(replica.state, block, replica.owner, certified.block_hash)
            replica.state.apply(writes)
            replica.pending.clear()
            if self.fault is None or self.fault.kind is not FaultKind.MISSING_BLOBS:
                # A certified block's blobs come with its certificate (whether or not this
                # validator's vote was among the quorum's): it stores them.
                self.held_blobs.update(b.blob for b in published_blobs(block.operations))
            replica.head = ChainHead.of(block, certified.block_hash)
        with self._abandoned_lock:
            self._abandoned.clear()


def _perturbed(response: Any) -> Any:
    """A ``wrong-output`` validator's result: the response with its text changed."""
    if isinstance(response, dict) and isinstance(response.get("text"), str):
        return {**response, "text": response["text"] + "!"}
    return {"perturbed": response}


def _digest(response: Any) -> str:
    return hash_value("oracle-response", response).hex()[:12]
