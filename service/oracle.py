"""The registry's service as an oracle: a story's generation, run by the proposer and re-run by
every validator with its own engine (chain/oracle.py says how blocks record the response).

The response is what the story book stores: the token ids' hash, the text, the number of tokens
and the hash of the generation's receipt (service/receipt.py). The receipt does not name the
backend, so validators on the wasm and the native engine agree on it.
"""

from __future__ import annotations

import os
from typing import Any

from edgechain.chain.block import Operation
from edgechain.service.blob_source import BlobStorage
from edgechain.service.engine import open_engine
from edgechain.service.fetch import FetchPolicy
from edgechain.service.query import GenerateQuery
from edgechain.service.receipt import Receipt, build_receipt, query_from_parameters
from edgechain.service.runtime import ModelService, ModelSource, PreparedQuery

__all__ = ["GenerationOracle", "mint_query", "run_generation_oracle", "run_prepared_oracle"]


def mint_query(payload: dict[str, Any]) -> GenerateQuery:
    """The generate query a MintStory payload describes (InvalidParameter if a value is bad)."""
    seed = payload.get("seed")
    return query_from_parameters(
        payload["model"],
        payload["version"],
        payload["prompt"],
        payload["parameters"],
        None if seed is None else int(seed),
    )


def run_generation_oracle(
    service: ModelService, query: GenerateQuery, timeout: float | None
) -> tuple[dict[str, Any], Receipt]:
    """Run ``query`` to its end (Timeout past ``timeout`` seconds of generation); return the
    oracle response and the receipt."""
    return run_prepared_oracle(service, service.prepare(query), timeout)


def run_prepared_oracle(
    service: ModelService, prepared: PreparedQuery, timeout: float | None
) -> tuple[dict[str, Any], Receipt]:
    """:func:`run_generation_oracle` for a query ``service.prepare`` already resolved (so a
    caller may resolve it under a lock and generate outside it)."""
    stream = service.start(prepared, timeout=timeout)
    stream.collect()
    receipt = build_receipt(stream)
    output = receipt.body["output"]
    response = {
        "token_ids_blake3": output["token_ids_blake3"],
        "text": output["text"],
        "tokens": len(output["token_ids"]),
        "receipt_hash": receipt.hash,
    }
    return response, receipt


class GenerationOracle:
    """One validator's oracle: its own engine (``engine_kind``) and loaded models, the
    network's content cache and certified registry state."""

    def __init__(
        self,
        source: ModelSource,
        *,
        cache_dir: str | os.PathLike[str],
        engine_kind: str,
        fetch_policy: FetchPolicy | None = None,
        blobs: BlobStorage | None = None,
    ) -> None:
        self.engine_kind = engine_kind
        self.service = ModelService(
            source,
            cache_dir=cache_dir,
            engine=open_engine(engine_kind),
            fetch_policy=fetch_policy,
            blobs=blobs,
        )

    def response(self, chain_id: bytes, operation: Operation, timeout: float) -> Any:
        """The response the MintStory ``operation`` records, recomputed here."""
        return run_generation_oracle(self.service, mint_query(operation.payload), timeout)[0]

    def close(self) -> None:
        self.service.close()
