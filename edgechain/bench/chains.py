"""Several chains proposing at once, each from its own process: aggregate certified blocks per
second beside one chain (``python -m edgechain.bench.chain --chains 1,2,4,8``).

Chains never wait for one another's blocks, but every commit takes SQLite's write lock, held
from reading the head to committing (chain/network.py, ``Chain.propose``), and certification
(execution, votes) happens under it: so the chains' blocks are certified one at a time, and what
several processes add is only that one process's Python work overlaps another's commit.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgechain.applications import register_applications
from edgechain.chain.network import Network
from edgechain.contract import FileRef, RegisterModel


@dataclass(frozen=True)
class ChainsResult:
    chains: int
    blocks_per_chain: int
    seconds: float  # from the start signal until every process has committed its blocks
    blocks_per_second: float  # all chains together
    speedup: float  # blocks_per_second over the one-chain row's


def _propose(path: str, name: str, blocks: int, ready: object, start: object) -> None:
    register_applications()
    weights = FileRef("ab" * 32, 1_000_000, ("http://127.0.0.1:8000/model.bin",))
    tokenizer = FileRef("cd" * 32, 4_096, ("http://127.0.0.1:8000/tokenizer.bin",))
    with Network.open(path, lazy=True) as net:
        chain = net.chain(name)
        app_id = chain.app_id("model-registry")
        ready.release()  # type: ignore[attr-defined]
        start.wait()  # type: ignore[attr-defined]
        for i in range(blocks):
            chain.execute(app_id, RegisterModel(name, str(i), weights, tokenizer))


def measure(counts: Sequence[int], blocks: int, validators: int = 4) -> list[ChainsResult]:
    """For each count of chains: a new network with that many chains, one process each
    proposing ``blocks`` blocks on its own chain, all started at once."""
    register_applications()
    context = multiprocessing.get_context("spawn")
    results: list[ChainsResult] = []
    with tempfile.TemporaryDirectory(prefix="edgechain-bench-chains-") as tmp:
        for count in counts:
            path = Path(tmp) / f"chains-{count}"
            names = [f"c{i}" for i in range(count)]
            with Network.create(path, validators=validators, vote_timeout=5.0) as net:
                for name in names:
                    net.create_chain(name)
            ready, start = context.Semaphore(0), context.Event()
            workers = [
                context.Process(target=_propose, args=(str(path), n, blocks, ready, start))
                for n in names
            ]
            for worker in workers:
                worker.start()
            for _ in workers:
                ready.acquire()
            began = time.perf_counter()
            start.set()
            for worker in workers:
                worker.join()
                if worker.exitcode != 0:
                    raise RuntimeError(f"a proposing process exited {worker.exitcode}")
            seconds = time.perf_counter() - began
            rate = count * blocks / seconds
            base = results[0].blocks_per_second if results else rate
            results.append(ChainsResult(count, blocks, seconds, rate, rate / base))
    return results


def format_results(results: list[ChainsResult]) -> str:
    lines = ["chains  blocks each  seconds  blocks/s (all)  vs 1 chain"]
    for r in results:
        lines.append(
            f"{r.chains:>6}  {r.blocks_per_chain:>11}  {r.seconds:>7.2f}  "
            f"{r.blocks_per_second:>14.0f}  {r.speedup:>9.2f}x"
        )
    return "\n".join(lines)
