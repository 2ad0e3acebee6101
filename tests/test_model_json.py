"""A certified model has one JSON shape (``CertifiedModel.to_json``): the CLI's ``--json`` and
the node's SSE ``done`` record print it, and GraphQL's ``Model`` has the same fields."""

from __future__ import annotations

import json
from typing import Any

from edgechain.node.schema import Model
from edgechain.service.records import GenerationRecord, Timings

#: GraphQL's names for the JSON fields it words differently (the rest are camelCase of the same).
_GRAPHQL_NAMES = {"certificate_height": "height", "status": "retired"}


def test_the_json_shape_has_the_entry_files_and_certificate(
    publish_model, stories260k: Any  # the plugin's ModelFiles
) -> None:
    model = publish_model("stories260K", stories260k.weights, stories260k.tokenizer)
    shown = json.loads(json.dumps(model.to_json()))  # plain JSON, nothing left to encode
    assert shown["weights"] == {
        "blake3": stories260k.weights_blake3,
        "size": stories260k.weights.stat().st_size,
        "urls": list(model.entry.weights.urls),
    }
    assert shown["tokenizer"]["blake3"] == stories260k.tokenizer_blake3
    assert shown["certificate_height"] == model.height == 0
    assert shown["status"] == "active" and shown["signers"] == model.certificate.signers
    assert shown["block_hash"] == model.block_hash.hex()


def test_the_generation_record_and_graphql_use_the_same_fields(
    publish_model, stories260k: Any  # the plugin's ModelFiles
) -> None:
    model = publish_model("stories260K", stories260k.weights, stories260k.tokenizer)
    record = GenerationRecord(
        text="",
        stop_reason="max_tokens",
        input_tokens=1,
        output_tokens=0,
        model=model,
        seed=1,
        seed_source="query",
        timings=Timings(0.0, 0.0, 0.0, 0.0, 0.0),
    )
    assert record.to_dict()["model"] == model.to_json()
    graphql = {f.python_name for f in Model.__strawberry_definition__.fields}
    assert {_GRAPHQL_NAMES.get(key, key) for key in model.to_json()} == graphql
