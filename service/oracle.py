"""The registry's service as an oracle: a story's generation, run by the proposer and re-run by
every validator with its own engine (chain/oracle.py says how blocks record the response).

The response is what the block records: the token ids, their hash, the text, the number of
tokens and the hash of the generation's receipt (service/receipt.py); the story book stores all
but the ids. The receipt does not name the backend, so validators on the wasm and the native
engine agree on it. A validator re-executes by verifying the recorded token ids
(``ModelService.verify``, ``LoadedModel.verify_claim``): prompt and claim go through batched
forward passes and every position is checked against the sampler's rule, with the verdict a full
replay would give; a true claim then yields the response (text, receipt) without decoding token
by token, a false one a response that names where the claim first differs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from edgechain.chain.block import Operation
from edgechain.chain.oracle import OracleCall, recorded_response
from edgechain.service.blob_source import BlobStorage
from edgechain.service.engine import open_engine
from edgechain.service.fetch import FetchPolicy
from edgechain.service.query import GenerateQuery
from edgechain.service.receipt import Receipt, build_receipt, query_from_parameters, receipt_of
from edgechain.service.records import stop_reason_name
from edgechain.service.runtime import ModelService, ModelSource, PreparedQuery

__all__ = [
    "CHECK_COST",
    "GenerationOracle",
    "mint_query",
    "recorded_token_ids",
    "run_prepared_oracle",
    "verify_prepared_oracle",
]

#: A claim's check on each engine, in units of a native one's: the CPU time of checking a
#: 256-token 15M story, 0.46 s on wasm and 0.15 s on native (docs/performance.md, "Session 14").
#: Only the order matters: a proposer asks the validators expected to answer first first
#: (chain/agreement.py).
CHECK_COST: dict[str, float] = {"native": 1.0, "wasm": 3.0}


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
    return oracle_response(receipt), receipt


def oracle_response(receipt: Receipt) -> dict[str, Any]:
    """The response a block records for the generation ``receipt`` describes."""
    output = receipt.body["output"]
    return {
        "token_ids": list(output["token_ids"]),
        "token_ids_blake3": output["token_ids_blake3"],
        "text": output["text"],
        "tokens": len(output["token_ids"]),
        "receipt_hash": receipt.hash,
    }


def verify_prepared_oracle(
    service: ModelService,
    prepared: PreparedQuery,
    claimed_ids: Sequence[int],
    timeout: float | None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """The oracle response of ``prepared`` when ``claimed_ids`` are its generation's tokens
    (checked by ``service.verify``, not replayed); when they are not, a response saying where
    the claim first differs and what the model has there (never equal to a recorded one)."""
    verdict = service.verify(prepared, claimed_ids, timeout=timeout, cancel=cancel)
    if not verdict.valid:
        stops = None if verdict.expected is not None else stop_reason_name(verdict.stop_reason)
        return {
            "claim_differs_at": verdict.matched,
            "model_token": verdict.expected,
            "model_stops": stops,
        }
    receipt = receipt_of(
        prepared,
        service.engine,
        claimed_ids,
        verdict.text,
        stop_reason_name(verdict.stop_reason),
    )
    return oracle_response(receipt)


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
        #: Its checks' expected time relative to a native engine's (:data:`CHECK_COST`).
        self.expected_cost = CHECK_COST[engine_kind]

    def response(self, call: OracleCall) -> Any:
        """The response the MintStory ``call.operation`` records, recomputed here by verifying
        the token ids it records (a full generation when it records none); a set
        ``call.cancel`` stops the check (Cancelled: the validator's vote is no longer needed).
        Notes in ``call.phases``: ``prepare_s`` (the query resolved against certified state:
        the model's certificate checked), ``check_s`` (the claim verified, or generated without
        one) and ``warm`` (the model was loaded before the call, so no load is in ``check_s``)."""
        started = time.perf_counter()
        prepared = self.service.prepare(mint_query(call.operation.payload))
        entry = prepared.model.entry
        warm = (entry.weights.blake3, entry.tokenizer.blake3) in self.service.loaded_models()
        checking = time.perf_counter()
        try:
            claimed = recorded_token_ids(call.operation)
            if claimed is None:
                return run_prepared_oracle(self.service, prepared, call.timeout)[0]
            return verify_prepared_oracle(
                self.service, prepared, claimed, call.timeout, call.cancel
            )
        finally:
            call.phases.update(
                prepare_s=checking - started, check_s=time.perf_counter() - checking, warm=warm
            )

    def close(self) -> None:
        self.service.close()
