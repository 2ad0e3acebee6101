"""The registry's service as an oracle: a story's generation, run by the proposer and re-run by
every validator with its own engine (chain/oracle.py says how blocks record the response).

The response is what the block records: the token ids, their hash, the text, the number of
tokens and the hash of the generation's receipt (service/receipt.py); the story book stores all
but the ids. The receipt does not name the backend, so validators on the wasm and the native
engine agree on it. A validator re-executes with the recorded token ids as hints
(``LoadedModel.generate``): a correct claim is checked in batched passes instead of token by
token, and its result is the honest generation's whatever the claim.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from edgechain.chain.block import Operation
from edgechain.chain.oracle import recorded_response
from edgechain.service.blob_source import BlobStorage
from edgechain.service.engine import open_engine
from edgechain.service.fetch import FetchPolicy
from edgechain.service.query import GenerateQuery
from edgechain.service.receipt import Receipt, build_receipt, query_from_parameters
from edgechain.service.runtime import ModelService, ModelSource, PreparedQuery

__all__ = [
    "GenerationOracle",
    "mint_query",
    "recorded_token_ids",
    "run_prepared_oracle",
]


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


def run_prepared_oracle(
    service: ModelService,
    prepared: PreparedQuery,
    timeout: float | None,
    hint: Sequence[int] | None = None,
) -> tuple[dict[str, Any], Receipt]:
    """Run a query ``service.prepare`` resolved (a caller may resolve it under a lock and
    generate outside it) to its end (Timeout past ``timeout`` seconds of generation); return
    the oracle response and the receipt. ``hint``: the token ids a block records (a
    validator's re-execution), which only make it faster."""
    stream = service.start(prepared, timeout=timeout, hint=hint)
    stream.collect()
    receipt = build_receipt(stream)
    output = receipt.body["output"]
    response = {
        "token_ids": list(output["token_ids"]),
        "token_ids_blake3": output["token_ids_blake3"],
        "text": output["text"],
        "tokens": len(output["token_ids"]),
        "receipt_hash": receipt.hash,
    }
    return response, receipt


def recorded_token_ids(operation: Operation) -> list[int] | None:
    """The token ids ``operation``'s recorded oracle response claims (None if it has none in
    the expected shape: the re-execution then runs without hints)."""
    recorded = recorded_response(operation)
    ids = recorded.get("token_ids") if isinstance(recorded, dict) else None
    if isinstance(ids, list) and all(isinstance(i, int) and 0 <= i < 2**32 for i in ids):
        return ids
    return None


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
        """The response the MintStory ``operation`` records, recomputed here, with the token
        ids it records as hints."""
        prepared = self.service.prepare(mint_query(operation.payload))
        hint = recorded_token_ids(operation)
        return run_prepared_oracle(self.service, prepared, timeout, hint)[0]

    def close(self) -> None:
        self.service.close()
