"""Chain benchmark: certified blocks per second, database bytes per block, reopen time.

Run: ``python -m edgechain.bench.chain [--validators 4,7,10] [--blocks 500]
[--reopen-blocks 10000]``; with ``--chains 1,2,4,8``, several chains proposing at once from
separate processes instead (edgechain/bench/chains.py).
Each block carries one RegisterModel operation (a new version of one model), so the registry's
state grows with the chain, as it would in use.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from edgechain.applications import register_applications
from edgechain.bench.arguments import comma_separated_ints, print_result
from edgechain.chain.committee import quorum_threshold
from edgechain.chain.keys import generate_key
from edgechain.chain.network import Network
from edgechain.contract import FileRef, RegisterModel
from edgechain.errors import UsageError


@dataclass(frozen=True)
class CommitResult:
    validators: int
    quorum: int
    blocks: int
    seconds: float
    blocks_per_second: float
    db_bytes_per_block: float


@dataclass(frozen=True)
class ReopenResult:
    validators: int
    blocks: int
    build_seconds: float
    reopen_seconds: float  # Network.open: re-verify every block, certificate and the state
    db_bytes: int
    signature_checks: int  # ed25519 verifications the reopen needs: (1 + quorum) per block
    verify_floor_seconds: float  # those checks alone, timed on this machine in the same run


@dataclass(frozen=True)
class ChainBenchmark:
    commits: list[CommitResult]
    reopen: ReopenResult | None

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def format(self) -> str:
        lines = ["validators  quorum  blocks  seconds  blocks/s  db bytes/block"]
        for r in self.commits:
            lines.append(
                f"{r.validators:>10}  {r.quorum:>6}  {r.blocks:>6}  {r.seconds:>7.2f}  "
                f"{r.blocks_per_second:>8.0f}  {r.db_bytes_per_block:>14.0f}"
            )
        if self.reopen is not None:
            r = self.reopen
            lines.append(
                f"reopen + re-verify of {r.blocks} blocks (N={r.validators}): "
                f"{r.reopen_seconds:.2f} s ({r.blocks / r.reopen_seconds:.0f} blocks/s; "
                f"built in {r.build_seconds:.1f} s; database {r.db_bytes / 1e6:.1f} MB)"
            )
            lines.append(
                f"  of which {r.signature_checks} ed25519 verifications alone take "
                f"{r.verify_floor_seconds:.2f} s on this machine now"
            )
        return "\n".join(lines)


def _fill(net: Network, blocks: int) -> float:
    chain = net.default_chain()
    app_id = chain.app_id("model-registry")
    weights = FileRef("ab" * 32, 1_000_000, ("http://127.0.0.1:8000/model.bin",))
    tokenizer = FileRef("cd" * 32, 4_096, ("http://127.0.0.1:8000/tokenizer.bin",))
    start = time.perf_counter()
    for i in range(blocks):
        chain.execute(app_id, RegisterModel("bench", str(i), weights, tokenizer))
    return time.perf_counter() - start


def _time_verifications(count: int) -> float:
    key = generate_key()
    public = key.public_key()
    message = b"edgechain benchmark"
    signature = key.sign(message)
    start = time.perf_counter()
    for _ in range(count):
        public.verify(signature, message)
    return time.perf_counter() - start


def run_chain_benchmark(
    validators: Sequence[int] = (4, 7, 10),
    blocks: int = 500,
    reopen_blocks: int = 10_000,
    reopen_validators: int = 4,
    workdir: str | Path | None = None,
) -> ChainBenchmark:
    """Measure commit throughput for each committee size, then the reopen time of a long chain.

    ``reopen_blocks=0`` skips the reopen measurement. Networks are built in ``workdir`` (a
    temporary directory by default) and deleted afterwards.
    """
    if blocks < 1 or reopen_blocks < 0 or any(n < 1 for n in validators):
        raise UsageError("blocks must be >= 1, reopen blocks >= 0, validators >= 1")
    register_applications()
    with tempfile.TemporaryDirectory(dir=workdir, prefix="edgechain-bench-") as tmp:
        commits = []
        for n in validators:
            path = Path(tmp) / f"commit-{n}"
            with Network.create(path, validators=n, vote_timeout=5.0) as net:
                seconds = _fill(net, blocks)
                net.storage.checkpoint()
                size = net.storage.size_bytes()
                commits.append(
                    CommitResult(
                        n, net.committee.quorum, blocks, seconds, blocks / seconds, size / blocks
                    )
                )
        reopen = None
        if reopen_blocks:
            path = Path(tmp) / "reopen"
            with Network.create(path, validators=reopen_validators, vote_timeout=5.0) as net:
                build = _fill(net, reopen_blocks)
                net.storage.checkpoint()
                size = net.storage.size_bytes()
            start = time.perf_counter()
            with Network.open(path) as net:
                assert net.default_chain().height == reopen_blocks
            reopen_seconds = time.perf_counter() - start
            checks = reopen_blocks * (1 + quorum_threshold(reopen_validators))
            reopen = ReopenResult(
                reopen_validators,
                reopen_blocks,
                build,
                reopen_seconds,
                size,
                checks,
                _time_verifications(checks),
            )
    return ChainBenchmark(commits, reopen)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgechain.bench.chain", description=__doc__)
    parser.add_argument(
        "--validators",
        type=comma_separated_ints,
        default="4,7,10",
        help="committee sizes (default 4,7,10)",
    )
    parser.add_argument("--blocks", type=int, default=500, help="blocks per committee size")
    parser.add_argument("--reopen-blocks", type=int, default=10_000, help="0 to skip")
    parser.add_argument(
        "--chains",
        type=comma_separated_ints,
        default=None,
        help="instead: N chains proposing --blocks blocks each at once, one process per chain "
        "(e.g. 1,2,4,8), beside one chain",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if args.chains is not None:
        from edgechain.bench import chains

        counts = args.chains
        if not counts or counts[0] != 1:
            counts = [1, *counts]  # the one-chain row every other is compared with
        rows = chains.measure(counts, args.blocks)
        print(
            json.dumps([asdict(r) for r in rows], indent=2)
            if args.json
            else chains.format_results(rows)
        )
        return 0
    result = run_chain_benchmark(args.validators, args.blocks, args.reopen_blocks)
    print_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
