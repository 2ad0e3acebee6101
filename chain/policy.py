"""Resource policies: the limits a network puts on blocks, blobs and oracle calls.

Field names and the ``testnet`` values follow Linera's ``ResourceControlPolicy`` (its
``testnet()`` preset); prices are left out (edgechain has no fees). ``no-fees`` (the default)
is unlimited: every limit is None. A policy is saved in ``network.json`` under ``"policy"``.

Where each limit is enforced (docs/blobs.md):

- ``maximum_executed_block_size``: the block's canonical bytes (the proposer before proposing,
  every validator before voting)
- ``maximum_block_proposal_size``: the block's bytes plus the blobs the proposal carries
- ``maximum_blob_size``: each published blob
- ``maximum_published_blobs``: blobs published by one block
- ``maximum_bytes_written_per_block``: state bytes (keys and values) one block writes
- ``maximum_service_oracle_execution_ms``: the oracle calls of one block (a story's mint), on
  the proposer and on every validator re-executing them
- ``maximum_http_response_bytes``, ``http_request_timeout_ms``: kept for Linera parity; contracts
  make no HTTP requests here (a service's URL fetch is off chain), so nothing checks them yet
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from edgechain.chain.state import WriteSet
from edgechain.errors import InputError, ResourceLimitExceeded, UsageError
from edgechain.files import CONFIG_MAX_BYTES, read_regular

#: Blob size used when the policy sets no maximum (a row of SQLite, a chunk of a file).
DEFAULT_CHUNK_SIZE = 1_000_000
#: Blobs per block when the policy sets no maximum (bounds the memory a publish holds).
DEFAULT_BLOBS_PER_BLOCK = 10


@dataclass(frozen=True)
class ResourcePolicy:
    """A network's limits; None means unlimited."""

    name: str = "no-fees"
    maximum_executed_block_size: int | None = None
    maximum_block_proposal_size: int | None = None
    maximum_blob_size: int | None = None
    maximum_published_blobs: int | None = None
    maximum_bytes_written_per_block: int | None = None
    maximum_service_oracle_execution_ms: int | None = None
    maximum_http_response_bytes: int | None = None
    http_request_timeout_ms: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "name":
                if not isinstance(value, str) or not value:
                    raise UsageError("a resource policy's name must be a non-empty string")
            elif value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value <= 0
            ):
                raise UsageError(f"policy field {f.name} must be a positive integer or null")

    # --- presets and files ------------------------------------------------------------------

    @classmethod
    def preset(cls, name: str) -> ResourcePolicy:
        if name not in PRESETS:
            raise UsageError(f"unknown policy preset {name!r} (presets: {', '.join(PRESETS)})")
        return PRESETS[name]

    @classmethod
    def resolve(cls, spec: str | ResourcePolicy | None) -> ResourcePolicy:
        """A preset name, a JSON file's path, a policy, or None (no-fees)."""
        if spec is None:
            return NO_FEES
        if isinstance(spec, ResourcePolicy):
            return spec
        if spec in PRESETS:
            return PRESETS[spec]
        path = Path(spec)
        if path.suffix != ".json" and not path.exists():
            return cls.preset(spec)
        try:
            raw = read_regular(path, None, InputError, CONFIG_MAX_BYTES)
        except InputError as exc:
            raise InputError(f"cannot read policy file {exc}") from None
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise InputError(f"policy file {path} is not JSON: {exc}") from exc
        return cls.from_json(value, default_name=path.stem)

    @classmethod
    def from_json(cls, value: Any, default_name: str = "custom") -> ResourcePolicy:
        if not isinstance(value, dict):
            raise UsageError("a resource policy must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise UsageError(
                f"unknown policy fields {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return cls(**{"name": default_name, **value})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def limits(self) -> dict[str, int | None]:
        """Every limit by field name (for `net status`)."""
        return {k: v for k, v in asdict(self).items() if k != "name"}

    # --- what a publisher plans with ----------------------------------------------------------

    @property
    def chunk_size(self) -> int:
        """The size a file is cut into blobs at."""
        return self.maximum_blob_size or DEFAULT_CHUNK_SIZE

    def blobs_per_block(self, block_overhead: int) -> int:
        """How many full chunks one block may publish: the count limit and the proposal size
        (``block_overhead``: the block's own bytes, a generous estimate)."""
        count = self.maximum_published_blobs or DEFAULT_BLOBS_PER_BLOCK
        if self.maximum_block_proposal_size is not None:
            room = self.maximum_block_proposal_size - block_overhead
            count = min(count, room // self.chunk_size)
        if count < 1:
            raise ResourceLimitExceeded(
                f"maximum_block_proposal_size: a block with one {self.chunk_size}-byte blob "
                f"needs {self.chunk_size + block_overhead} bytes, over the policy's allowance of "
                f"{self.maximum_block_proposal_size}",
                limit="maximum_block_proposal_size",
                value=self.chunk_size + block_overhead,
                allowance=self.maximum_block_proposal_size or 0,
            )
        return count

    # --- checks -------------------------------------------------------------------------------

    def check(self, limit: str, value: int, what: str) -> None:
        """ResourceLimitExceeded when ``value`` is over the policy's ``limit`` (``what`` says
        what was measured, e.g. "the block is 1000001 bytes")."""
        allowance = getattr(self, limit)
        if allowance is not None and value > allowance:
            raise ResourceLimitExceeded(
                f"{limit}: {what}, over the {self.name} policy's allowance of {allowance}",
                limit=limit,
                value=value,
                allowance=allowance,
            )

    def check_block(
        self,
        *,
        block_bytes: int,
        blob_sizes: list[int],
        published_blobs: int,
        bytes_written: int,
    ) -> None:
        """Every per-block limit (the first one broken raises)."""
        for size in blob_sizes:
            self.check("maximum_blob_size", size, f"a blob is {size} bytes")
        self.check(
            "maximum_published_blobs",
            published_blobs,
            f"the block publishes {published_blobs} blobs",
        )
        self.check("maximum_executed_block_size", block_bytes, f"the block is {block_bytes} bytes")
        proposal = block_bytes + sum(blob_sizes)
        self.check(
            "maximum_block_proposal_size",
            proposal,
            f"the proposal (block and blobs) is {proposal} bytes",
        )
        self.check(
            "maximum_bytes_written_per_block",
            bytes_written,
            f"the block writes {bytes_written} bytes of state",
        )

    def oracle_budget_s(self, default_s: float) -> float:
        """The per-block oracle time: the policy's, capped by the simulator's ``default_s``."""
        if self.maximum_service_oracle_execution_ms is None:
            return default_s
        return min(default_s, self.maximum_service_oracle_execution_ms / 1000)

    def check_oracle_budget(self, budget_s: float) -> None:
        """A budget asked for (``story mint --oracle-budget``) must fit the policy's."""
        ms = self.maximum_service_oracle_execution_ms
        if ms is not None and budget_s * 1000 > ms:
            asked = round(budget_s * 1000)
            raise ResourceLimitExceeded(
                f"maximum_service_oracle_execution_ms: an oracle budget of {asked} ms, over the "
                f"{self.name} policy's allowance of {ms}",
                limit="maximum_service_oracle_execution_ms",
                value=asked,
                allowance=ms,
            )


def written_bytes(writes: WriteSet) -> int:
    """State bytes a block writes (keys and encoded values), what
    ``maximum_bytes_written_per_block`` measures."""
    return sum(len(key.encode()) + len(value or b"") for (_, key), value in writes.items())


NO_FEES = ResourcePolicy()
#: Linera's testnet limits (linera-execution's ``ResourceControlPolicy::testnet``).
TESTNET = ResourcePolicy(
    name="testnet",
    maximum_executed_block_size=1_000_000,
    maximum_block_proposal_size=13_000_000,
    maximum_blob_size=1_000_000,
    maximum_published_blobs=10,
    maximum_bytes_written_per_block=10_000_000,
    maximum_service_oracle_execution_ms=10_000,
    maximum_http_response_bytes=10_000,
    http_request_timeout_ms=20_000,
)
PRESETS = {"no-fees": NO_FEES, "testnet": TESTNET}
