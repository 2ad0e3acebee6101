"""What a user's own test looks like with edgechain's pytest fixtures (no imports of fixtures:
the plugin is registered when edgechain is installed).

Run it alone with ``python -m pytest examples/test_example_user.py``.
"""

from __future__ import annotations

import pytest

from edgechain import GenerateQuery, HashMismatch, ModelRetired


def test_publish_generate_and_retire(
    edgechain_network, publish_model, stories260k, service_client
) -> None:
    model = publish_model("stories260K", stories260k.weights, stories260k.tokenizer)
    assert model.entry.weights.blake3 == stories260k.weights_blake3
    assert len(model.certificate.signers) >= edgechain_network.network.committee.quorum

    query = GenerateQuery(
        model="stories260K", prompt="Once upon a time", temperature=0.0, max_tokens=12
    )
    record = service_client.generate(query).collect()
    assert record.text.startswith(", there was a little girl named Lily")
    assert record.stop_reason == "max_tokens"
    assert record.model.entry.tokenizer.blake3 == stories260k.tokenizer_blake3

    edgechain_network.retire_model("stories260K", "1")
    with pytest.raises(ModelRetired):
        service_client.generate(query)


def test_a_tampered_file_is_refused(
    publish_model, tamper_model, empty_cache_client, stories260k
) -> None:
    model = publish_model("stories260K", stories260k.weights, stories260k.tokenizer)
    tamper_model(model)  # the weight server now flips a byte of model.weights_url's file
    # A fresh service (empty cache) fetches the file and refuses it before it runs.
    with pytest.raises(HashMismatch):
        empty_cache_client().generate(GenerateQuery(model="stories260K", prompt="Once"))
