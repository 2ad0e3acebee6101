"""Blob benchmark: publish a synthetic model as blobs under a resource policy, read it back.

Run: ``python -m edgechain.bench.blobs [--shape 15M] [--policy testnet] [--json]``
(``--shape 110M`` writes a 438 MB checkpoint and stores it again in the database).

Prints: chunks and blocks the publish needed, its time, the database bytes per weight byte, the
verified read-back rate from the validators' blob storage (GB/s, the service's path without the
engine), and the first query's time cold from blobs (read, verify, cache, load, one token).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgechain.chain.network import Network
from edgechain.chain.policy import ResourcePolicy


@dataclass(frozen=True)
class BlobBenchResult:
    shape: str
    policy: str
    weights_bytes: int
    chunks: int
    blocks: int
    publish_seconds: float
    db_bytes_per_weight_byte: float
    read_gb_per_s: float
    first_query_seconds: float


def run(shape_name: str, policy_name: str, workdir: Path) -> BlobBenchResult:
    from edgechain.client import Client
    from edgechain.service.blob_source import BlobFetcher
    from edgechain.service.query import GenerateQuery
    from edgechain.testing.synth import shape_named, synthesize

    weights, tokenizer = workdir / "model.bin", workdir / "tok.bin"
    synthesize(shape_named(shape_name), 1, weights, tokenizer)
    policy = ResourcePolicy.resolve(policy_name)
    net = Network.create(workdir / "net", validators=4, policy=policy)
    with Client(net, cache_dir=workdir / "cache") as client:
        t0 = time.perf_counter()
        published = client.publish_model("synth", weights=weights, tokenizer=tokenizer, blobs=True)
        publish_s = time.perf_counter() - t0
        net.storage.checkpoint()
        size = weights.stat().st_size
        db_ratio = net.storage.size_bytes() / size
        ref = published.model.entry.weights
        t0 = time.perf_counter()
        BlobFetcher(net, ref).fetch_any((), expected_blake3=ref.blake3, expected_size=ref.size)
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        client.generate(GenerateQuery("synth", "a", max_tokens=1)).collect()
        first_s = time.perf_counter() - t0
    assert published.blobs is not None
    return BlobBenchResult(
        shape_name,
        policy.name,
        size,
        published.blobs.chunks,
        published.blobs.blocks + 1,  # and the manifest's block
        publish_s,
        db_ratio,
        size / read_s / 1e9,
        first_s,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgechain.bench.blobs")
    parser.add_argument("--shape", default="15M", help="synthetic model shape (default 15M)")
    parser.add_argument("--policy", default="testnet", help="resource policy (default testnet)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgechain-blob-bench-") as tmp:
        result = run(args.shape, args.policy, Path(tmp))
    if args.json:
        print(json.dumps(asdict(result), indent=2))
        return 0
    print(
        f"{result.shape} under {result.policy}: {result.weights_bytes:,} weight bytes in "
        f"{result.chunks} blobs, {result.blocks} blocks (manifest included)\n"
        f"  publish       {result.publish_seconds:.2f} s\n"
        f"  database      {result.db_bytes_per_weight_byte:.3f} bytes per weight byte\n"
        f"  read back     {result.read_gb_per_s:.2f} GB/s, every chunk verified\n"
        f"  first query   {result.first_query_seconds:.2f} s cold from blobs (load, 1 token)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
