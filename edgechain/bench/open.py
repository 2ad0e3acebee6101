"""Open benchmark: how long a command takes to open a network, against the chain's length.

Run: ``python -m edgechain.bench.open [--lengths 1000,10000,100000] [--full-up-to 10000]``.

One network is grown to each length in turn; at each, it is opened the way commands open it
(``Client.open``, chain/verification.py's ``open_chain``) and timed for two commands:
``net status`` (open, status) and ``generate``'s opening (open, then the model's certified
entry and its block's certificate, what a query reads before the engine starts). Next to them,
the full re-verification every command paid before (``Network.open`` without ``lazy``, what
`chain verify` still does), up to ``--full-up-to`` blocks (it grows with the length).

The blocks are written by a fast path (:func:`append_blocks`) that does what the validators do,
in one process and one transaction: each block re-registers one of the network's models with
the same bytes (a valid block the registry executes as "nothing changes", so the state stays
the same size), is signed by the chain owner and certified by a quorum of the committee's
keys, and the verified head is recorded as a writer records it. `chain verify` passes on the
result (the benchmark checks it at the smallest length).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from edgechain.applications import register_applications
from edgechain.bench.arguments import comma_separated_ints, print_result
from edgechain.chain.application import execute_operations, to_operation
from edgechain.chain.block import Block, sign_proposal
from edgechain.chain.certificate import Certificate, vote_message
from edgechain.chain.encoding import hash_encoded
from edgechain.chain.keys import load_key
from edgechain.chain.network import Chain, Network
from edgechain.chain.storage import BlockRow, VerifiedHead
from edgechain.client import Client
from edgechain.contract import FileRef, RegisterModel
from edgechain.errors import UsageError

#: Models registered before the chain grows (the state the opening checks).
MODELS = 10


@dataclass(frozen=True)
class OpenResult:
    blocks: int
    state_entries: int
    status_seconds: float  # Client.open + network status (`net status`)
    generate_open_seconds: float  # Client.open + the model's certified entry (`generate`)
    full_verify_seconds: float | None  # every block re-verified (the opening before), if run


@dataclass(frozen=True)
class OpenBenchmark:
    validators: int
    results: list[OpenResult]

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def format(self) -> str:
        lines = [
            f"opening a network (N={self.validators}), median of 3 opens",
            "    blocks  state entries  net status (s)  generate open (s)  full re-verify (s)",
        ]
        for r in self.results:
            full = "-" if r.full_verify_seconds is None else f"{r.full_verify_seconds:.2f}"
            lines.append(
                f"{r.blocks:>10}  {r.state_entries:>13}  {r.status_seconds:>14.3f}  "
                f"{r.generate_open_seconds:>17.3f}  {full:>18}"
            )
        return "\n".join(lines)


def _file(i: int) -> tuple[FileRef, FileRef]:
    return (
        FileRef(f"{i:02x}" * 32, 1_000_000, ("http://127.0.0.1:8000/model.bin",)),
        FileRef(f"{i + 128:02x}" * 32, 4_096, ("http://127.0.0.1:8000/tokenizer.bin",)),
    )


def _operation(chain: Chain, i: int) -> RegisterModel:
    weights, tokenizer = _file(i % MODELS)
    return RegisterModel(f"model{i % MODELS}", "1", weights, tokenizer)


def append_blocks(net: Network, count: int) -> None:
    """Append ``count`` certified blocks to the default chain, as the validators would certify
    them, in one transaction (the benchmark's fast path; the network stays valid)."""
    chain = net.default_chain()
    committee = net.committee
    keys = {m.name: load_key(net.path / "keys" / "validators" / f"{m.name}.key")
            for m in committee.members}  # fmt: skip
    signers = committee.names[: committee.quorum]
    owner_key = chain.owner_key()
    state = chain._state.copy()
    app_id = chain.app_id("model-registry")
    height, head = chain.height, chain.head_hash
    timestamp = max(time.time_ns() // 1000, chain.head.timestamp_us)
    with net.storage.write_transaction() as txn:
        for _ in range(count):
            operations = (to_operation(app_id, _operation(chain, height)),)
            writes = execute_operations(
                state,
                height=height,
                timestamp_us=timestamp,
                signer=chain.owner,
                chain_owner=chain.owner,
                operations=operations,
            )
            block = Block(chain.id, height, head, timestamp, operations, chain.owner,
                          state.hash_with(writes))  # fmt: skip
            encoded = block.encode()
            block_hash = hash_encoded("block", encoded)
            message = vote_message(chain.id, height, block_hash, block.state_hash)
            certificate = Certificate(
                chain.id, height, block_hash, block.state_hash,
                tuple((name, keys[name].sign(message)) for name in signers),
            )  # fmt: skip
            signature = sign_proposal(block, owner_key, block_hash)
            txn.commit_block(
                BlockRow(chain.id, height, block_hash, encoded, signature, certificate.encode()),
                writes,
            )
            state.apply(writes)
            height, head = height + 1, block_hash
            timestamp += 1
        txn.record_verified_head(chain.id, VerifiedHead(height - 1, block_hash))


def _median_seconds(action: object, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _status(path: Path) -> None:
    with Client.open(path) as client:
        client.network.status()


def _generate_open(path: Path) -> None:
    with Client.open(path) as client:
        client.model("model0")


def _full(path: Path) -> None:
    with Network.open(path):
        pass


def run_open_benchmark(
    lengths: Sequence[int] = (1_000, 10_000, 100_000),
    full_up_to: int = 10_000,
    validators: int = 4,
    workdir: str | Path | None = None,
) -> OpenBenchmark:
    """Grow one network to each of ``lengths`` (ascending) and time its opening at each."""
    if not lengths or any(n <= MODELS for n in lengths) or list(lengths) != sorted(lengths):
        raise UsageError(f"lengths must be ascending and each over {MODELS}")
    register_applications()
    results = []
    with tempfile.TemporaryDirectory(dir=workdir, prefix="edgechain-bench-") as tmp:
        path = Path(tmp) / "net"
        with Network.create(path, validators=validators) as net:
            chain = net.default_chain()
            app_id = chain.app_id("model-registry")
            for i in range(MODELS):  # through the validators: the state the chain keeps
                chain.execute(app_id, _operation(chain, i))
        for length in lengths:
            with Network.open(path, lazy=True) as net:
                append_blocks(net, length - net.default_chain().height)
                net.storage.checkpoint()
                entries = sum(1 for _ in net.default_chain()._state.entries())
            if length == lengths[0]:
                with Client.open(path) as client:
                    client.verify()  # the fast path's blocks pass `chain verify`
            results.append(
                OpenResult(
                    length,
                    entries,
                    _median_seconds(lambda: _status(path)),
                    _median_seconds(lambda: _generate_open(path)),
                    _median_seconds(lambda: _full(path), 1) if length <= full_up_to else None,
                )
            )
    return OpenBenchmark(validators, results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgechain.bench.open", description=__doc__)
    parser.add_argument(
        "--lengths", type=comma_separated_ints, default="1000,10000,100000", help="chain lengths"
    )
    parser.add_argument(
        "--full-up-to", type=int, default=10_000, help="time the full re-verification up to here"
    )
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    result = run_open_benchmark(args.lengths, args.full_up_to, args.validators)
    print_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
