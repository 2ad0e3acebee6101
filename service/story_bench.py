"""Benchmark: the time to certify a story (the proposer generates it, 4 validators re-execute
it, wasm and native in turn, before voting) against one plain generation of the same query.

    python -m edgechain.service.story_bench [--shape 15M] [--tokens 250] [--validators 4]

A deterministic synthetic model of the shape is served over loopback and published on a fresh
network; each validator's oracle loads it once in a warm-up mint (not timed). Then the same
query (temperature 1.0, a fixed seed) runs as a plain ``generate`` and as ``mint_story``;
``ratio`` is mint / generate. The validators re-execute in parallel threads, so on a machine
with fewer cores than validators their runs share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from edgechain.client import Client
from edgechain.service.query import GenerateQuery
from edgechain.testing.synth import shape_named, synthesize
from edgechain.testing.weight_server import WeightServer


def run(shape_name: str, tokens: int, validators: int, engines: str | None) -> dict[str, object]:
    """Time one plain generation and one certified mint of the same query."""
    with tempfile.TemporaryDirectory(prefix="edgechain-story-bench-") as tmp:
        root = Path(tmp)
        synthesize(shape_named(shape_name), 1, root / "model.bin", root / "tok.bin")
        with WeightServer(root) as server, Client.up(root / "net", validators=validators) as c:
            if engines is not None:
                c.validator_engines = {n: engines for n in c.network.committee.names}
            c.publish_model(
                "bench",
                weights=root / "model.bin",
                tokenizer=root / "tok.bin",
                weights_urls=[server.url("model.bin")],
                tokenizer_urls=[server.url("tok.bin")],
            )
            query = GenerateQuery(
                model="bench", prompt="Once upon a time", temperature=1.0, seed=7, max_tokens=tokens
            )
            c.mint_story(GenerateQuery(model="bench", prompt="warm", max_tokens=2))  # loads
            started = time.perf_counter()
            record = c.generate(query).collect()
            generate_s = time.perf_counter() - started
            started = time.perf_counter()
            minted = c.mint_story(query)
            mint_s = time.perf_counter() - started
            assert minted.story.tokens == record.output_tokens
            return {
                "shape": shape_name,
                "tokens": record.output_tokens,
                "stop_reason": record.stop_reason,
                "validators": validators,
                "validator_engines": dict(c.validator_engines),
                "cores": os.cpu_count(),
                "generate_s": round(generate_s, 3),
                "mint_s": round(mint_s, 3),
                "ratio": round(mint_s / generate_s, 2),
            }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="15M")
    parser.add_argument("--tokens", type=int, default=250)
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument(
        "--engines", choices=("wasm", "native"), default=None, help="all validators on one engine"
    )
    args = parser.parse_args(argv)
    print(json.dumps(run(args.shape, args.tokens, args.validators, args.engines), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
