"""The network facade: a directory holding the committee, keys and chains; chains to add blocks to.

Directory layout::

    <dir>/network.json                 committee (names, public keys), faults, vote timeout,
                                       policy, oracle budget, validators' oracle engines
    <dir>/chain.db                     SQLite (WAL): chains, blocks, certificates, state
    <dir>/keys/validators/<name>.key   validator private keys (hex, mode 0600)
    <dir>/keys/chains/<name>.key       chain owners' private keys

Typical use::

    register_applications()  # the application kinds, as the client registers them
    net = Network.create(tmp_path, validators=4, faulty="v3=offline")
    chain = net.default_chain()
    weights = FileRef("ab" * 32, 1_000_000, ("http://127.0.0.1:8000/stories260K.bin",))
    tokenizer = FileRef("cd" * 32, 6_000, ("http://127.0.0.1:8000/tok512.bin",))
    operation = RegisterModel("stories260K", "1", weights=weights, tokenizer=tokenizer)
    cert = chain.execute(chain.app_id("model-registry"), operation)
    model = chain.application("model-registry").query_model("stories260K")
    assert model.height == cert.height == 0 and len(cert.signers) == 3
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgechain.chain.agreement import ValidatorFailure, ValidatorPool, certify
from edgechain.chain.application import (
    OperationPayload,
    ServiceContext,
    StateReader,
    application_id,
    application_kind,
    execute_operations,
    remember_execution,
    to_operation,
)
from edgechain.chain.blobs import (
    check_blobs_at_hand,
    published_blobs,
    referenced_blobs,
    verify_blobs,
)
from edgechain.chain.block import (
    MAX_BLOCK_BYTES,
    Block,
    ChainHead,
    Operation,
    Proposal,
    sign_proposal,
)
from edgechain.chain.certificate import Certificate, CertifiedBlock
from edgechain.chain.committee import Committee, validator_name
from edgechain.chain.encoding import hash_encoded
from edgechain.chain.faults import FaultMap, ValidatorFault, format_faults, parse_faults
from edgechain.chain.keys import generate_key, load_key, public_bytes, save_key
from edgechain.chain.messages import (
    INBOX_PREFIX,
    MAX_INCOMING_BUNDLES,
    IncomingBundle,
    Message,
    bundle_for,
    messaging_id,
)
from edgechain.chain.modules import register_blob_source, unregister_blob_source
from edgechain.chain.oracle import (
    DEFAULT_ORACLE_BUDGET_S,
    MAX_ORACLE_BUDGET_S,
    Oracle,
    parse_validator_engines,
    recorded_response,
)
from edgechain.chain.policy import NO_FEES, ResourcePolicy, written_bytes
from edgechain.chain.state import WriteSet
from edgechain.chain.storage import (
    BlockRow,
    ChainRecord,
    Snapshot,
    Storage,
    VerifiedHead,
    WriteTransaction,
)
from edgechain.chain.validator import Validator
from edgechain.chain.verification import (
    VerifiedChain,
    chain_id_for,
    check_block_row,
    extend_chain,
    open_chain,
    verify_chain,
)
from edgechain.errors import (
    EdgechainError,
    NetworkNotFound,
    StorageCorrupted,
    Unauthorized,
    UsageError,
)
from edgechain.files import CONFIG_MAX_BYTES, read_regular
from edgechain.processes import process_alive

NETWORK_FILE = "network.json"
DATABASE_FILE = "chain.db"
NETWORK_FORMAT = "edgechain-network/1"
DEFAULT_CHAIN = "default"
DEFAULT_VOTE_TIMEOUT = 1.0
_MAX_HEIGHT = 2**63 - 1  # SQLite's INTEGER range
#: Certified blocks a network keeps checked for its validators (oldest dropped first).
_CERTIFIED_CACHE_BLOCKS = 256
_CHECKED_ROWS = 4096  # verified block rows a chain remembers
_CHAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

FaultsArg = str | Mapping[str, str | ValidatorFault] | None


@dataclass(frozen=True)
class ValidatorStatus:
    name: str
    public_key: str  # hex
    fault: str | None  # e.g. "offline", "slow:0.5"; None when honest


@dataclass(frozen=True)
class ChainStatus:
    name: str
    chain_id: str  # hex
    owner: str  # hex public key
    # Two words, never mixed: ``blocks`` counts the certified blocks (so it is also the next
    # block's height); a height is always one block's position, the head's is ``head_height``.
    blocks: int
    head_hash: str | None  # hex, None before the first block
    state_hash: str  # hex

    @property
    def head_height(self) -> int | None:
        """The head block's height (``blocks - 1``), None before the first block."""
        return None if self.head_hash is None else self.blocks - 1

    @property
    def head(self) -> str | None:
        """``HEIGHT:HASH`` of the head block, what `chain verify --expect-head` takes."""
        return None if self.head_hash is None else f"{self.head_height}:{self.head_hash}"


@dataclass(frozen=True)
class NetworkStatus:
    path: str
    validators: list[ValidatorStatus]
    validity: int
    quorum: int
    tolerated_faults: int
    vote_timeout: float
    chains: list[ChainStatus]
    policy: dict[str, Any] | None = None  # the resource policy: name and limits (None: unlimited)
    #: Seconds a block's oracle calls may take together (network.json, else the default).
    oracle_budget_s: float = DEFAULT_ORACLE_BUDGET_S
    #: The engine each validator re-executes oracle calls with.
    validator_engines: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        for chain, status in zip(value["chains"], self.chains, strict=True):
            chain["head_height"] = status.head_height
            chain["head"] = status.head
        return value


@dataclass(frozen=True)
class ExpectedHead:
    """A head a user recorded (``HEIGHT:HASH`` from `net status`): the chain must still hold it."""

    height: int
    block_hash: str  # hex, or a prefix of at least 8 hex digits
    chain: str = DEFAULT_CHAIN

    @classmethod
    def parse(cls, text: str, chain: str = DEFAULT_CHAIN) -> ExpectedHead:
        height, sep, block_hash = text.strip().partition(":")
        block_hash = block_hash.lower()
        if (
            not sep
            or not height.isascii()
            or not height.isdigit()
            or len(height) > 18
            or not 8 <= len(block_hash) <= 64
            or not all(c in "0123456789abcdef" for c in block_hash)
        ):
            raise UsageError(
                f"expected head {text!r} must be HEIGHT:HASH as `net status` prints it "
                "(a height, a colon, the block hash or at least its first 8 hex digits)"
            )
        return cls(int(height), block_hash, chain)

    def __str__(self) -> str:
        return f"{self.height}:{self.block_hash}"


@dataclass(frozen=True)
class VerifyReport:
    """What :meth:`Network.verify` checked."""

    chains: int
    blocks: int
    seconds: float
    blobs: int = 0  # stored blobs whose bytes were re-hashed


class Network:
    """A local network: a committee of mock validators and the chains they certify."""

    def __init__(
        self,
        path: Path,
        committee: Committee,
        validator_keys: list[Ed25519PrivateKey],
        faults: FaultMap,
        vote_timeout: float,
        storage: Storage,
        policy: ResourcePolicy = NO_FEES,
        settings: OracleSettings | None = None,
    ) -> None:
        self.path = path
        self.policy = policy
        self.committee = committee
        self.faults = faults
        self.vote_timeout = vote_timeout
        #: Blocks with oracle calls are asked of a quorum first (chain/agreement.py); False asks
        #: every validator at once (benchmarks compare the two).
        self.quorum_first = True
        self.storage = storage
        # Applications users created run code from this network's blobs (chain/modules.py).
        register_blob_source(self.read_blob)
        self.validators = [
            Validator(m.name, key, faults.get(m.name), slow_delay=2 * vote_timeout + 0.01)
            for m, key in zip(committee.members, validator_keys, strict=True)
        ]
        self._pool = ValidatorPool(self.validators)
        self._chains: dict[str, Chain] = {}
        # Other chains' certified blocks, checked once against their certificates: every
        # validator checks each incoming bundle against one, and a certified block never changes.
        self._certified: dict[tuple[bytes, int], tuple[bytes, Block]] = {}
        self._certified_lock = threading.Lock()
        #: Opened lazily (Network.open): blocks below the verified head are checked when read.
        self._lazy = False
        # Held while this process's heads move (a refresh, a catch-up, a commit and its apply):
        # a thread proposing a block may certify it while others refresh and read, but a
        # refresh must never see a block committed and not yet applied (it would apply it too).
        # Taken after the storage's write locks, never before them.
        self.head_lock = threading.RLock()
        settings = settings or OracleSettings()
        #: The budget network.json saves (None: the policy's default), kept to save it again.
        self._saved_budget_s = settings.budget_s
        #: Seconds a block's oracle calls may take together (validators re-execute them).
        self.oracle_budget_s = (
            policy.oracle_budget_s(DEFAULT_ORACLE_BUDGET_S)
            if settings.budget_s is None
            else settings.budget_s
        )
        #: The engine each validator re-executes oracle calls with (saved in network.json).
        self.validator_engines = parse_validator_engines(settings.engines, committee.names)
        held = storage.blob_ids()
        for validator in self.validators:
            validator.messages = self  # certified blocks of other chains, for incoming bundles
            validator.policy = policy
            validator.oracle_budget_s = self.oracle_budget_s
            validator.held_blobs = set(held)

    # --- creating and opening -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | Path,
        validators: int = 4,
        faulty: FaultsArg = None,
        vote_timeout: float = DEFAULT_VOTE_TIMEOUT,
        default_chain: str = DEFAULT_CHAIN,
        policy: str | ResourcePolicy | None = None,
        oracle_budget_s: float | None = None,
        validator_engines: str | dict[str, str] | None = None,
    ) -> Network:
        """Create a network in directory ``path`` (new or empty) with one chain, and open it.

        ``faulty`` (a spec string like ``"v2=offline,v3=wrong-state"`` or a mapping) is saved
        in the directory and used by later :meth:`open` calls unless they override it; so are
        the oracle budget (None: the policy's default) and the validators' engines (a spec
        like ``"v1=native"`` or a mapping; unnamed validators: wasm and native in turn).
        """
        path = Path(path)
        if (path / NETWORK_FILE).exists() or (path / DATABASE_FILE).exists():
            raise UsageError(f"a network already exists in {path}")
        if not isinstance(validators, int) or not 1 <= validators <= 100:
            raise UsageError(f"validators must be between 1 and 100, got {validators!r}")
        _check_timeout(vote_timeout)
        keys = [generate_key() for _ in range(validators)]
        committee = Committee.from_public_keys([public_bytes(k) for k in keys])
        # Every argument is checked before the directory exists: a refused `net up` leaves
        # nothing behind.
        faults = parse_faults(faulty, committee.names)
        resolved = ResourcePolicy.resolve(policy)
        settings = OracleSettings(
            _checked_budget(oracle_budget_s, resolved),
            parse_validator_engines(validator_engines, committee.names),
        )
        path.mkdir(parents=True, exist_ok=True)
        for i, key in enumerate(keys):
            save_key(key, path / "keys" / "validators" / f"{validator_name(i)}.key")
        storage = Storage(path / DATABASE_FILE, create=True)
        net = cls(path, committee, keys, faults, vote_timeout, storage, resolved, settings)
        net._save_config()
        net.storage.set_meta("committee_hash", committee.hash().hex())
        net.create_chain(default_chain)
        return net

    @classmethod
    def open(
        cls,
        path: str | Path,
        faulty: FaultsArg = None,
        vote_timeout: float | None = None,
        *,
        lazy: bool = False,
    ) -> Network:
        """Open the network in ``path`` and re-verify every stored chain (with ``lazy``, only
        what a command relies on: the blocks after the head verified before, the head's
        certificate and the state against it; other blocks when they are read; see
        chain/verification.py). `chain verify` (:meth:`verify`) checks everything either way.

        ``faulty`` and ``vote_timeout`` override the saved settings for this session only.
        Raises :class:`NetworkNotFound` or :class:`StorageCorrupted`.
        """
        path = Path(path)
        config_path = path / NETWORK_FILE
        if not config_path.is_file() or not (path / DATABASE_FILE).is_file():
            raise NetworkNotFound(f"no edgechain network in {path} (create one first)")
        raw = read_regular(config_path, None, StorageCorrupted, CONFIG_MAX_BYTES)
        try:
            config = json.loads(raw)
            if not isinstance(config, dict):
                raise ValueError(f"expected a JSON object, got {type(config).__name__}")
            if config.get("format") != NETWORK_FORMAT:
                raise ValueError(
                    f"unknown format {config.get('format')!r} (this edgechain reads "
                    f"{NETWORK_FORMAT}): open it with the edgechain that made it, or start a "
                    "new network with `edgechain net up --dir NEW`"
                )
            committee = Committee.from_json(config["committee"])
            saved_faults = config.get("faults", "")
            if not isinstance(saved_faults, str):
                raise ValueError(f"faults must be a string, got {saved_faults!r}")
            saved_faults = parse_faults(saved_faults, committee.names)
            saved_timeout = config.get("vote_timeout", DEFAULT_VOTE_TIMEOUT)
            if isinstance(saved_timeout, bool) or not isinstance(saved_timeout, int | float):
                raise ValueError(f"vote_timeout must be a number, got {saved_timeout!r}")
            policy = ResourcePolicy.from_json(config.get("policy", NO_FEES.to_json()))
            settings = OracleSettings.from_config(config, committee.names)
        except (ValueError, KeyError, TypeError, AttributeError, UsageError) as exc:
            raise StorageCorrupted(f"{config_path} is malformed: {exc}") from exc
        except RecursionError:
            raise StorageCorrupted(f"{config_path} is malformed: nested too deeply") from None
        keys = [load_key(path / "keys" / "validators" / f"{n}.key") for n in committee.names]
        for member, key in zip(committee.members, keys, strict=True):
            if public_bytes(key) != member.public_key:
                raise StorageCorrupted(f"validator {member.name}'s key file does not match")
        faults = saved_faults if faulty is None else parse_faults(faulty, committee.names)
        timeout = float(saved_timeout) if vote_timeout is None else vote_timeout
        _check_timeout(timeout)
        storage = Storage(path / DATABASE_FILE)
        if storage.get_meta("committee_hash") != committee.hash().hex():
            storage.close()
            raise StorageCorrupted(f"{config_path}: the committee does not match the database")
        net = cls(path, committee, keys, faults, timeout, storage, policy, settings)
        net._lazy = lazy
        _remove_abandoned_config_temporaries(path)
        try:
            net._load_chains()
        except BaseException:
            net.close()
            raise
        return net

    def _load_chains(self) -> None:
        unrecorded: dict[bytes, VerifiedHead] = {}
        with self.storage.snapshot() as snapshot:
            for record in snapshot.chains():
                verified = self._open_chain(snapshot, record)
                self._attach(verified)
                if verified.head.block_hash is not None:
                    head = VerifiedHead(verified.head.next_height - 1, verified.head.block_hash)
                    if snapshot.verified_head(record.chain_id) != head:
                        unrecorded[record.chain_id] = head
        if unrecorded:
            # The next open starts from here (skipped if a writer holds the lock right now).
            self.storage.try_record_verified_heads(unrecorded)

    def _open_chain(self, snapshot: Snapshot, record: ChainRecord) -> VerifiedChain:
        if not self._lazy:
            return verify_chain(snapshot, self.committee, record)
        recorded = snapshot.verified_head(record.chain_id)
        return open_chain(snapshot, self.committee, record, recorded)

    def refresh(self) -> bool:
        """Pick up the blocks (and chains) other processes committed; True if there were any.

        Reads one snapshot, verifies only the new blocks (hash links, certificates, re-executed
        state hashes) and applies them to the certified state in memory. A chain whose stored
        head is no longer the one this process saw raises :class:`StorageCorrupted`.
        """
        changed = False
        with self.head_lock, self.storage.snapshot() as snapshot:
            known = {c.id for c in self._chains.values()}
            for record in snapshot.chains():
                if record.chain_id in known:
                    changed |= self.chain(record.chain_id)._catch_up(snapshot)
                else:
                    self._attach(self._open_chain(snapshot, record))
                    changed = True
        return changed

    def _attach(self, verified: VerifiedChain) -> Chain:
        record = verified.record
        for validator in self.validators:
            validator.add_chain(
                record.chain_id,
                record.owner,
                verified.state.copy(),
                verified.head,
            )
        chain = Chain(self, verified)
        self._chains[record.name] = chain
        return chain

    def close(self) -> None:
        """Stop the validators' queues, close their oracles and the database."""
        for validator in self.validators:
            validator.stop()
        self._pool.close()
        self.install_oracles(None)
        unregister_blob_source(self.read_blob)
        self.storage.close()

    def install_oracles(
        self, factory: Callable[[str], Oracle] | None, budget_s: float | None = None
    ) -> None:
        """Give each validator its own oracle (``factory(validator name)``; None removes them)
        and, if given, the per-block oracle budget in seconds (chain/oracle.py)."""
        for validator in self.validators:
            previous, validator.oracle = validator.oracle, None
            if previous is not None:
                with contextlib.suppress(Exception):
                    previous.close()
            if factory is not None:
                validator.oracle = factory(validator.name)
        if budget_s is not None:
            self.set_oracle_budget(budget_s)

    def set_oracle_budget(self, budget_s: float, persist: bool = False) -> None:
        """Seconds the oracle calls of one block may take together, for every validator
        (ResourceLimitExceeded past the policy's ``maximum_service_oracle_execution_ms``), in
        network.json too if ``persist``."""
        _checked_budget(budget_s, self.policy)
        self.oracle_budget_s = budget_s
        for validator in self.validators:
            validator.oracle_budget_s = budget_s
        if persist:
            self._saved_budget_s = float(budget_s)
            self._save_config()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- chains ---------------------------------------------------------------------------

    def create_chain(self, name: str, owner: bytes | None = None) -> Chain:
        """A new, empty chain owned by a fresh key kept in ``keys/chains/<name>.key`` (the
        wallet's), or by ``owner`` (a public key whose private key is held elsewhere: this
        directory cannot propose the chain's blocks)."""
        if not _CHAIN_NAME.fullmatch(name):
            raise UsageError(
                f"chain name {name!r} must match {_CHAIN_NAME.pattern} (letters, digits, _ -)"
            )
        if name in self._chains:
            raise UsageError(f"a chain named {name!r} already exists")
        key_path = self.path / "keys" / "chains" / f"{name}.key"
        if key_path.exists():
            raise UsageError(f"{key_path} already exists")
        if owner is not None and not (isinstance(owner, bytes) and len(owner) == 32):
            raise UsageError("a chain's owner is a 32-byte Ed25519 public key")
        owner_key = generate_key() if owner is None else None
        if owner_key is not None:
            owner = public_bytes(owner_key)
        assert owner is not None
        record = ChainRecord(chain_id_for(self.committee, name, owner), name, owner)
        if owner_key is not None:
            save_key(owner_key, key_path)
        try:
            self.storage.add_chain(record)
        except BaseException:
            if owner_key is not None:  # another process took the name: no stray key
                key_path.unlink(missing_ok=True)
            raise
        with self.storage.snapshot() as snapshot:
            return self._attach(verify_chain(snapshot, self.committee, record))

    def default_chain(self) -> Chain:
        """The chain created with the network (named "default")."""
        return self.chain(DEFAULT_CHAIN)

    def chain(self, name_or_id: str | bytes) -> Chain:
        """A chain by name, by id (bytes) or by hex id (or a unique hex prefix of it)."""
        if isinstance(name_or_id, str) and name_or_id in self._chains:
            return self._chains[name_or_id]
        if isinstance(name_or_id, bytes):
            matches = [c for c in self._chains.values() if c.id == name_or_id]
        else:
            text = name_or_id.lower()
            matches = [c for c in self._chains.values() if c.id.hex().startswith(text)]
        if len(matches) != 1 or not name_or_id:
            raise UsageError(f"no chain {name_or_id!r} (chains: {', '.join(self._chains)})")
        return matches[0]

    def chains(self) -> list[Chain]:
        return list(self._chains.values())

    # --- status and verification ----------------------------------------------------------

    def status(self) -> NetworkStatus:
        """Validators, faults, thresholds, chains and heights (for `net up` / `chain show`)."""
        return NetworkStatus(
            path=str(self.path),
            validators=[
                ValidatorStatus(
                    m.name,
                    m.public_key.hex(),
                    str(self.faults[m.name]) if m.name in self.faults else None,
                )
                for m in self.committee.members
            ],
            validity=self.committee.validity,
            quorum=self.committee.quorum,
            tolerated_faults=self.committee.tolerated_faults,
            vote_timeout=self.vote_timeout,
            chains=[c.status() for c in self._chains.values()],
            policy=self.policy.to_json(),
            oracle_budget_s=self.oracle_budget_s,
            validator_engines=dict(self.validator_engines),
        )

    def verify(self, expect_head: ExpectedHead | None = None) -> VerifyReport:
        """Re-verify every stored chain from scratch (what `chain verify` runs), in one snapshot.

        With ``expect_head``, the chain must also still hold that block at that height: a chain
        cut back below a head the user recorded (or rewritten from it) raises
        :class:`StorageCorrupted`, which re-verification alone cannot see.
        """
        start = time.perf_counter()
        blocks = 0
        with self.storage.snapshot() as snapshot:
            records = snapshot.chains()
            verified = {}
            for record in records:
                verified[record.name] = verify_chain(snapshot, self.committee, record)
                blocks += verified[record.name].head.next_height
            if expect_head is not None:
                _check_expected_head(snapshot, verified, expect_head)
            checked = verify_blobs(snapshot, [v.state for v in verified.values()])
        return VerifyReport(len(records), blocks, time.perf_counter() - start, checked)

    def read_blob(self, blob: bytes) -> bytes | None:
        """A stored blob's bytes (what the validators holding it serve)."""
        return self.storage.blob(blob)

    def certified_block(self, chain_id: bytes, height: int) -> tuple[bytes, Block] | None:
        """The hash and block of chain ``chain_id``'s certified block at ``height`` (checked
        against its certificate), None if there is none: what validators check incoming
        bundles (chain/messages.py) and used applications (chain/modules.py) against."""
        with self._certified_lock:
            known = self._certified.get((chain_id, height))
            if known is not None:
                return known
            row = self.storage.block_row(chain_id, height) if 0 <= height < _MAX_HEIGHT else None
            if row is None:
                return None
            try:
                block, _ = check_block_row(row, chain_id, height, self.committee)
            except EdgechainError:
                return None
            if len(self._certified) >= _CERTIFIED_CACHE_BLOCKS:
                del self._certified[next(iter(self._certified))]
            known = self._certified[(chain_id, height)] = (row.block_hash, block)
            return known

    def has_chain(self, chain_id: bytes) -> bool:
        """True when a chain with this id exists (in this network's storage)."""
        return any(c.id == chain_id for c in self._chains.values()) or self.storage.has_chain(
            chain_id
        )

    def set_faults(self, faulty: FaultsArg, persist: bool = False) -> None:
        """Change the validators' faults now (and in network.json if ``persist``)."""
        faults = parse_faults(faulty, self.committee.names)
        self.faults = faults
        for validator in self.validators:
            validator.fault = faults.get(validator.name)
        if persist:
            self._save_config()

    def set_validator_engines(
        self, engines: str | dict[str, str] | None, persist: bool = False
    ) -> None:
        """Change the validators' oracle engines (a spec like ``"v1=native"`` or a mapping;
        validators it does not name keep theirs), in network.json too if ``persist``."""
        self.validator_engines = parse_validator_engines(
            engines, self.committee.names, base=self.validator_engines
        )
        if persist:
            self._save_config()

    def _save_config(self) -> None:
        """Write network.json: what :meth:`open` reads back (the committee, faults, vote
        timeout, policy, oracle budget and validator engines)."""
        config = {
            "format": NETWORK_FORMAT,
            "committee": self.committee.to_json(),
            "faults": format_faults(self.faults),
            "vote_timeout": self.vote_timeout,
            "policy": self.policy.to_json(),
            "oracle_budget_s": self._saved_budget_s,
            "validator_engines": dict(self.validator_engines),
        }
        # Named with the pid: two processes saving faults at once never write one temporary.
        tmp = self.path / f"{NETWORK_FILE}.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps(config, indent=2) + "\n")
            tmp.replace(self.path / NETWORK_FILE)
        finally:
            tmp.unlink(missing_ok=True)


class Chain:
    """One chain of a network: add blocks, read certified state, list certified blocks."""

    def __init__(self, network: Network, verified: VerifiedChain) -> None:
        self.network = network
        self.name = verified.record.name
        self.id = verified.record.chain_id
        self.owner = verified.record.owner
        self._state = verified.state  # certified state, as of the last committed block
        self._state_lock = threading.RLock()  # held while a certified block is applied
        #: This process's head of the chain (as of the last committed block it applied).
        self.head = verified.head
        self._services: dict[str, Any] = {}
        self._owner_key: Ed25519PrivateKey | None = None
        self.last_failures: list[ValidatorFailure] = []
        self.last_responses: list[Any] = []
        #: Seconds the phases of the last block this process proposed took: ``proposal``
        #: (execute, build, hash and sign the block), ``votes`` (until a quorum signed: the
        #: validators' checks), ``commit`` (store it, apply it to every replica).
        self.last_phases: dict[str, float] = {}
        #: Rows read and verified by height (Chain.block: a model's certificate per query).
        self._checked_rows: dict[int, tuple[BlockRow, CertifiedBlock]] = {}

    def __repr__(self) -> str:
        return f"Chain(name={self.name!r}, id={self.id.hex()[:16]}, height={self.height})"

    @property
    def height(self) -> int:
        """The height the next block takes (the number of blocks)."""
        return self.head.next_height

    @property
    def head_hash(self) -> bytes | None:
        """The last block's hash (None before the first)."""
        return self.head.block_hash

    @property
    def state_hash(self) -> bytes:
        with self._state_lock:  # not half-way through a block's apply in another thread
            return self._state.hash()

    def owner_key(self) -> Ed25519PrivateKey:
        """The chain owner's private key, from ``keys/chains/<name>.key``."""
        if self._owner_key is None:
            path = self.network.path / "keys" / "chains" / f"{self.name}.key"
            if not path.exists():
                raise Unauthorized(
                    f"you do not own chain {self.name!r}: its owner is "
                    f"{self.owner.hex()[:16]}, and this wallet holds no key for it (only a "
                    "chain's owner proposes its blocks)"
                )
            key = load_key(path)
            if public_bytes(key) != self.owner:
                raise StorageCorrupted(f"{path} does not hold the key of chain {self.name!r}")
            self._owner_key = key
        return self._owner_key

    def status(self) -> ChainStatus:
        with self._state_lock:  # height, head and state of one block
            return ChainStatus(
                self.name,
                self.id.hex(),
                self.owner.hex(),
                self.height,
                None if self.head_hash is None else self.head_hash.hex(),
                self.state_hash.hex(),
            )

    # --- applications ---------------------------------------------------------------------

    def app_id(self, kind: str) -> bytes:
        """The id of application ``kind`` (e.g. "model-registry") on this chain."""
        application_kind(kind)
        return application_id(self.id, kind)

    def application(self, kind: str) -> Any:
        """The service of application ``kind`` on this chain, reading certified state only."""
        service = self._services.get(kind)
        if service is None:
            app_kind = application_kind(kind)
            app_id = application_id(self.id, kind)
            context = ServiceContext(
                chain_id=self.id,
                app_id=app_id,
                state=StateReader(self._state, app_id, self._state_lock),
                committee=self.network.committee,
                certified_block=self.block,
            )
            service = self._services[kind] = app_kind.service_factory(context)
        return service

    def service_context(self, app_id: bytes) -> ServiceContext:
        """What a service of application ``app_id`` reads: this chain's certified state in
        its namespace (for applications users created: chain/modules.py)."""
        return ServiceContext(
            chain_id=self.id,
            app_id=app_id,
            state=StateReader(self._state, app_id, self._state_lock),
            committee=self.network.committee,
            certified_block=self.block,
        )

    # --- adding blocks --------------------------------------------------------------------

    def execute(
        self,
        app_id: bytes,
        *operations: OperationPayload | Operation,
        signer: Ed25519PrivateKey | None = None,
    ) -> Certificate:
        """Propose a block with ``operations`` for application ``app_id``; return its certificate.

        Executes locally first (a contract rejection raises before anything is proposed), then
        gathers a quorum of votes and commits block, certificate and state in one transaction.
        """
        return self.propose([to_operation(app_id, op) for op in operations], signer=signer)

    def propose(
        self,
        operations: Sequence[Operation],
        signer: Ed25519PrivateKey | None = None,
        blobs: Mapping[bytes, bytes] | None = None,
    ) -> Certificate:
        """Like :meth:`execute` with ready-made operations (possibly for several applications).

        ``blobs``: the bytes of the blobs the operations publish, by id (chain/blobs.py); they
        are stored with the block, in its transaction.
        """
        certificate = self._propose(operations, signer, dict(blobs or {}), inbox_only=False)
        assert certificate is not None  # an empty block raises instead (inbox_only=False)
        return certificate

    def _propose(
        self,
        operations: Sequence[Operation],
        signer: Ed25519PrivateKey | None,
        blobs: dict[bytes, bytes],
        inbox_only: bool,
    ) -> Certificate | None:
        net = self.network
        key = signer if signer is not None else self.owner_key()
        # The write lock is held from reading the head to committing: writers of every process
        # take turns, and each builds on the head it commits over (no "already committed").
        with contextlib.ExitStack() as moving_head:
            with net.storage.write_transaction() as txn:
                self._catch_up(txn)
                # The owner's blocks take what waits in the inbox (as Linera's client does).
                incoming = self._pending_bundles(txn) if public_bytes(key) == self.owner else []
                if not operations and not incoming:
                    if inbox_only:
                        return None
                    raise UsageError("a block needs at least one operation or incoming message")
                certified, writes = self._certify(operations, key, blobs, incoming)
                committing = time.perf_counter()
                txn.commit_block(
                    BlockRow(
                        self.id,
                        certified.block.height,
                        certified.block_hash,
                        certified.block.encode(),
                        certified.owner_signature,
                        certified.certificate.encode(),
                    ),
                    writes,
                    [(m.recipient, m.seq) for m in certified.block.outgoing],
                    [(b.origin, b.messages[-1].seq + 1) for b in certified.block.incoming],
                )
                txn.store_blobs(blobs)
                # Certified here on the head verified above: the next open starts from it.
                txn.record_verified_head(
                    self.id, VerifiedHead(certified.block.height, certified.block_hash)
                )
                # From the commit to the apply, no refresh of this process (Network.head_lock).
                moving_head.enter_context(net.head_lock)
            self._apply(certified, writes)
        self.last_phases["commit"] = time.perf_counter() - committing
        return certified.certificate

    def process_inbox(self) -> Certificate | None:
        """Propose a block that only takes this chain's incoming messages (None when its inbox
        is empty); only the owner may (Unauthorized otherwise)."""
        return self._propose([], None, {}, inbox_only=True)

    def inbox(self) -> list[IncomingBundle]:
        """The bundles of certified messages waiting for this chain's next block, in order."""
        with self.network.storage.snapshot() as snapshot:
            return self._pending_bundles(snapshot)

    def _pending_bundles(self, snapshot: Snapshot | WriteTransaction) -> list[IncomingBundle]:
        with self._state_lock:
            counters = StateReader(self._state, messaging_id(self.id))
            taken: dict[bytes, int] = {}
            blocks: dict[tuple[bytes, int], None] = {}  # ordered, without repeats
            for origin, seq, height in snapshot.sent_messages(self.id):
                if origin not in taken:
                    taken[origin] = counters.get(f"{INBOX_PREFIX}{origin.hex()}") or 0
                if seq >= taken[origin]:
                    blocks[(origin, height)] = None
        bundles = []
        for origin, height in list(blocks)[:MAX_INCOMING_BUNDLES]:
            row = snapshot.block_row(origin, height)
            if row is None:
                raise StorageCorrupted(f"a message names block {height} of a chain that lacks it")
            block = Block.decode(row.block)
            bundle = bundle_for(origin, height, row.block_hash, block.outgoing, self.id)
            if bundle is not None:
                bundles.append(bundle)
        return bundles

    def _certify(
        self,
        operations: Sequence[Operation],
        key: Ed25519PrivateKey,
        blobs: dict[bytes, bytes],
        incoming: Sequence[IncomingBundle] = (),
    ) -> tuple[CertifiedBlock, WriteSet]:
        """Execute ``incoming`` and ``operations`` on the current head and gather a certificate
        for the block."""
        net = self.network
        started = time.perf_counter()
        signer_public = public_bytes(key)
        timestamp = max(time.time_ns() // 1000, self.head.timestamp_us)
        state_before = self._state.hash()  # before hash_with(), which prepares the apply
        responses: list[Any] = []
        sent: list[Message] = []
        writes = execute_operations(
            self._state,
            height=self.height,
            timestamp_us=timestamp,
            signer=signer_public,
            chain_owner=self.owner,
            operations=operations,
            responses=responses,
            incoming=incoming,
            outgoing=sent,
        )
        if signer_public != self.owner:
            # After executing, so an application's own refusal (its message) comes first.
            raise Unauthorized(
                f"only chain {self.name!r}'s owner ({self.owner.hex()[:16]}) proposes its "
                f"blocks; this one is signed by {signer_public.hex()[:16]}"
            )
        for message in sent:
            if not net.has_chain(message.recipient):
                raise UsageError(
                    f"a message to chain {message.recipient.hex()[:16]}, which does not exist "
                    "(`edgechain net status` lists the chains)"
                )
        #: Each operation's response in the last block this chain proposed (not stored).
        self.last_responses = responses
        block = Block(
            chain_id=self.id,
            height=self.height,
            previous_hash=self.head_hash,
            timestamp_us=timestamp,
            operations=tuple(operations),
            signer=signer_public,
            state_hash=self._state.hash_with(writes),
            incoming=tuple(incoming),
            outgoing=tuple(sent),
        )
        encoded = block.encode()
        if len(encoded) > MAX_BLOCK_BYTES:
            raise UsageError(
                f"the block would be {len(encoded)} bytes; blocks are limited to "
                f"{MAX_BLOCK_BYTES} bytes: split the operations"
            )
        published = published_blobs(operations)
        net.policy.check_block(
            block_bytes=len(encoded),
            blob_sizes=[len(data) for data in blobs.values()],
            published_blobs=len(published),
            bytes_written=written_bytes(writes),
        )
        check_blobs_at_hand(published, referenced_blobs(operations), blobs, net.storage.blob_ids)
        block_hash = hash_encoded("block", encoded)
        # The validators, whose replicas hold this same state, reuse this execution.
        remember_execution(state_before, block_hash, self.owner, writes, tuple(sent))
        proposal = Proposal(block, sign_proposal(block, key, block_hash), block_hash, blobs)
        timeout = net.vote_timeout
        oracle_calls = any(recorded_response(op) is not None for op in operations)
        if oracle_calls:
            timeout += net.oracle_budget_s  # validators re-execute the oracle calls first
        proposed = time.perf_counter()
        certificate, failures = certify(
            # Re-executing oracle calls takes the validators seconds each: in parallel then,
            # a quorum's worth first (the others' checks would only share the cores).
            proposal, net.committee, net._pool, timeout, chain_label=self.name,
            inline=not oracle_calls, quorum_first=oracle_calls and net.quorum_first,
        )  # fmt: skip
        self.last_failures = failures
        self.last_phases = {
            "proposal": proposed - started,
            "votes": time.perf_counter() - proposed,
        }
        return CertifiedBlock(block, block_hash, proposal.signature, certificate), writes

    def _apply(self, certified: CertifiedBlock, writes: WriteSet) -> None:
        """Make a committed block this process's head (state, height, validators' replicas)."""
        with self._state_lock:
            self._state.apply(writes)
            self.head = ChainHead.of(certified.block, certified.block_hash)
        for validator in self.network.validators:
            validator.handle_certificate(certified)

    def _catch_up(self, snapshot: Snapshot | WriteTransaction) -> bool:
        """Verify and apply the blocks other processes committed after this process's head."""
        with self.network.head_lock:
            return self._catch_up_locked(snapshot)

    def _catch_up_locked(self, snapshot: Snapshot | WriteTransaction) -> bool:
        if self.height > 0:
            row = snapshot.block_row(self.id, self.height - 1)
            if row is None or row.block_hash != self.head_hash:
                stored = snapshot.next_height(self.id)
                raise StorageCorrupted(
                    f"chain {self.name!r}: the stored chain no longer holds the head this process "
                    f"saw (height {self.height - 1}, block {_hex(self.head_hash)[:16]}); it now "
                    f"has {stored} blocks: it was cut back or rewritten"
                )
        rows = list(snapshot.block_rows(self.id, self.height))
        if not rows:
            return False
        with self._state_lock:
            cursor = VerifiedChain(
                ChainRecord(self.id, self.name, self.owner),
                self._state.copy(),
                self.head,
            )
        for certified, writes in extend_chain(cursor, rows, self.network.committee, snapshot):
            self._apply(certified, writes)
        return True

    # --- reading blocks -------------------------------------------------------------------

    def block(self, height: int) -> CertifiedBlock:
        """The certified block at ``height``, verified (StorageCorrupted if it fails)."""
        # Out of SQLite's integer range there is no block either (and no OverflowError).
        row = self.network.storage.block_row(self.id, height) if 0 <= height < _MAX_HEIGHT else None
        if row is None:
            raise UsageError(f"chain {self.name!r} has no block at height {height}")
        return self._checked(row, height)

    def blocks(self, start: int = 0, end: int | None = None) -> Iterator[CertifiedBlock]:
        """Certified blocks in height order (for `chain show`), each verified and linked to the
        one before; signers are in the certificates."""
        start = min(max(start, 0), _MAX_HEIGHT)
        end = None if end is None else min(max(end, 0), _MAX_HEIGHT)
        previous: CertifiedBlock | None = None
        for height, row in enumerate(self.network.storage.block_rows(self.id, start, end), start):
            certified = self._checked(row, height)
            if previous is not None and certified.block.previous_hash != previous.block_hash:
                raise StorageCorrupted(
                    f"chain {self.name!r}: stored block at height {height} fails verification: "
                    "previous-block hash does not link to the block before"
                )
            previous = certified
            yield certified

    def _checked(self, row: BlockRow, height: int) -> CertifiedBlock:
        """``row`` as a certified block once it passes check_block_row (remembered: a row read
        again unchanged is not checked twice)."""
        known = self._checked_rows.get(height)
        if known is not None and known[0] == row:
            return known[1]
        try:
            block, certificate = check_block_row(row, self.id, height, self.network.committee)
        except EdgechainError as exc:
            raise StorageCorrupted(
                f"chain {self.name!r}: stored block at height {height} fails verification: {exc}"
            ) from exc
        certified = CertifiedBlock(block, row.block_hash, row.owner_signature, certificate)
        if len(self._checked_rows) >= _CHECKED_ROWS:
            self._checked_rows.clear()
        self._checked_rows[height] = (row, certified)
        return certified

    def honest_replicas_agree(self) -> bool:
        """True when every non-faulty validator is at this chain's height and state hash."""
        honest = [v for v in self.network.validators if v.fault is None]
        return all(
            v.next_height(self.id) == self.height and v.state_hash(self.id) == self.state_hash
            for v in honest
        )


def _hex(value: bytes | None) -> str:
    return "none" if value is None else value.hex()


def _check_expected_head(
    snapshot: Snapshot, verified: dict[str, VerifiedChain], expected: ExpectedHead
) -> None:
    chain = verified.get(expected.chain)
    if chain is None:
        raise UsageError(f"no chain {expected.chain!r} to check the expected head {expected} on")
    label = f"chain {expected.chain!r}"
    stored_blocks = chain.head.next_height
    if stored_blocks <= expected.height:
        raise StorageCorrupted(
            f"{label} was cut back: it has {stored_blocks} blocks (head height "
            f"{stored_blocks - 1}) but the head you recorded is {expected}"
        )
    row = snapshot.block_row(chain.record.chain_id, expected.height)
    stored = "none" if row is None else row.block_hash.hex()
    if not stored.startswith(expected.block_hash):
        raise StorageCorrupted(
            f"{label} was rewritten: the block at height {expected.height} is {stored[:16]}, "
            f"not the {expected.block_hash[:16]} you recorded"
        )


def _check_timeout(timeout: float) -> None:
    if not isinstance(timeout, (int, float)) or not 0 < timeout <= 600:
        raise UsageError(f"vote timeout must be in (0, 600] seconds, got {timeout!r}")


@dataclass(frozen=True)
class OracleSettings:
    """The oracle settings network.json keeps: the block's oracle budget in seconds (None: the
    policy's default) and each validator's engine (None: the default, wasm and native in turn)."""

    budget_s: float | None = None
    engines: dict[str, str] | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any], names: list[str]) -> OracleSettings:
        """Read from network.json (older files have neither: the defaults)."""
        budget = config.get("oracle_budget_s")
        if budget is not None and not _budget_in_range(budget):
            raise ValueError(
                f"oracle_budget_s must be a number in (0, {MAX_ORACLE_BUDGET_S:g}], got {budget!r}"
            )
        engines = config.get("validator_engines")
        if engines is not None and not isinstance(engines, dict):
            raise ValueError("validator_engines must be a map of validator to engine")
        return cls(budget, parse_validator_engines(engines, names, option="validator_engines"))


def _budget_in_range(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value <= MAX_ORACLE_BUDGET_S
    )


def _checked_budget(budget_s: float | None, policy: ResourcePolicy) -> float | None:
    """``budget_s`` if None or a positive number within ``policy``'s cap (UsageError or
    ResourceLimitExceeded otherwise)."""
    if budget_s is None:
        return None
    if not _budget_in_range(budget_s):
        raise UsageError(
            f"the oracle budget must be > 0 seconds and at most {MAX_ORACLE_BUDGET_S:g} (a day), "
            f"got {budget_s}"
        )
    policy.check_oracle_budget(budget_s)
    return float(budget_s)


def _remove_abandoned_config_temporaries(path: Path) -> None:
    """Delete the network.json temporaries of processes killed while saving it."""
    for tmp in path.glob(f"{NETWORK_FILE}.*.tmp"):
        pid = tmp.name[len(NETWORK_FILE) + 1 : -len(".tmp")]
        if pid.isascii() and pid.isdigit() and len(pid) < 10 and not process_alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()
