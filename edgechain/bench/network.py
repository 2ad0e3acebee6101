"""The setup the query and story benchmarks measure: a synthetic model of a stories shape,
served over loopback and published on a fresh network in a temporary directory."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgechain.client import Client
from edgechain.testing.synth import shape_named, synthesize
from edgechain.testing.weight_server import WeightServer

__all__ = ["BENCH_MODEL", "synthetic_model_network"]

#: The name the synthetic model is published under.
BENCH_MODEL = "bench"


@contextlib.contextmanager
def synthetic_model_network(shape_name: str, seed: int, **client_options: Any) -> Iterator[Client]:
    """A client on a new network (``client_options`` go to :meth:`Client.up`) on which the
    synthetic ``shape_name`` model (weights from ``seed``) is published as :data:`BENCH_MODEL`
    and served over loopback until the block exits; everything is deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="edgechain-bench-") as tmp:
        root = Path(tmp)
        weights, tokenizer = root / "model.bin", root / "tok.bin"
        synthesize(shape_named(shape_name), seed, weights, tokenizer)
        with WeightServer(root) as server, Client.up(root / "net", **client_options) as client:
            client.publish_served(BENCH_MODEL, weights=weights, tokenizer=tokenizer, server=server)
            yield client
