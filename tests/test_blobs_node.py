"""The node's GraphQL shows blobs: each block's published blobs, a model's manifest, and the
chain's published blobs with the validators holding them; and the blob-stored model's manifest."""

from __future__ import annotations

from pathlib import Path

import httpx
from serve_helpers import start_node, stop_node

from edgechain.client import Client
from edgechain.testing.models import ModelFiles


def test_graphql_exposes_blobs_and_manifests(tmp_path: Path, stories260k: ModelFiles) -> None:
    path = tmp_path / "net"
    with Client.up(path, validators=4, policy="testnet", faulty="v4=missing-blobs") as client:
        client.publish_model(
            "stories260K", weights=stories260k.weights, tokenizer=stories260k.tokenizer, blobs=True
        )
    node = start_node(path)
    try:
        query = (
            f'{{ blobs(chainId: "{node.chain_id[:12]}") {{ blobId size height holders }}'
            f' blocks(chainId: "{node.chain_id[:12]}") {{ height blobs {{ blobId size }} }} }}'
        )
        body = httpx.post(node.base_url + "/", json={"query": query}, timeout=30).json()
        assert "errors" not in body, body
        blobs = body["data"]["blobs"]
        assert sorted(b["size"] for b in blobs) == [6_227, 56_540, 1_000_000]
        assert all(b["height"] == 0 and b["holders"] == ["v1", "v2", "v3"] for b in blobs)
        blocks = body["data"]["blocks"]
        assert [len(b["blobs"]) for b in blocks] == [3, 0]
        model = node.data(
            '{ model(name: "stories260K") { weights { blake3 size urls chunks { blobId size } } } }'
        )["model"]["weights"]
        assert model["blake3"] == stories260k.weights_blake3 and model["urls"] == []
        assert [c["size"] for c in model["chunks"]] == [1_000_000, 56_540]
        chunk_ids = {c["blobId"] for c in model["chunks"]}
        assert chunk_ids == {b["blobId"] for b in blobs if b["size"] != 6_227}
    finally:
        stop_node(node)
