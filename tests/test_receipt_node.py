"""The node's generations carry receipts: the SSE ``done`` event and GraphQL ``generate``;
each one verifies against the node's network directory (replayed in-process)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import (
    STORIES_DIR,
    NodeProcess,
    publish_files,
    running_node,
    stream_generation,
)

from edgechain.client import Client
from edgechain.service.receipt import Receipt, verify_receipt
from edgechain.testing.weight_server import WeightServer

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def node(network_dir: Path) -> Iterator[NodeProcess]:
    """The node, with stories260K published."""
    with WeightServer(STORIES_DIR) as server, running_node(network_dir) as node:
        weights, tokenizer = STORIES_DIR / "stories260K.bin", STORIES_DIR / "tok512.bin"
        publish_files(node, "stories260K", weights, tokenizer, server.base_url)
        yield node


def _verify(data: dict, directory: Path) -> int:
    with Client.open(directory) as client:
        return verify_receipt(Receipt.from_json(data), client).tokens


def test_the_sse_done_event_carries_a_receipt_that_verifies(
    node: NodeProcess,
    network_dir: Path,
) -> None:
    events = stream_generation(
        node, model="stories260K", prompt=PROMPT, temperature=1.0, maxTokens=30
    )
    done = events[-1]
    assert done.event == "done", done.data
    receipt = done.data["receipt"]
    assert receipt["receipt"]["output"]["text"] == done.data["text"]
    assert receipt["receipt"]["output"]["token_ids"] == [e.data["id"] for e in events[:-1]]
    assert _verify(receipt, network_dir) == 30


def test_graphql_generate_returns_the_receipt(node: NodeProcess, network_dir: Path) -> None:
    data = node.data(
        '{ generate(model: "stories260K", prompt: "Lily", maxTokens: 12, seed: "5") '
        "{ text receipt } }"
    )
    receipt = data["generate"]["receipt"]
    assert receipt["format"] == "edgechain-receipt/v1"
    assert receipt["receipt"]["seed"] == {
        "value": "5",
        "source": "query",
        "derivation": None,
        "inputs": [],
    }
    assert receipt["receipt"]["output"]["text"] == data["generate"]["text"]
    assert _verify(receipt, network_dir) == 12


def test_the_story_book_application_mints_lists_and_transfers_stories(
    node: NodeProcess, network_dir: Path
) -> None:
    minted = node.story_data(
        'mutation { mintStory(model: "stories260K", prompt: "Once", maxTokens: 16, seed: "3") '
        "{ story { id owner text tokens receiptHash seed } certificate { signers } receipt } }"
    )["mintStory"]
    story = minted["story"]
    assert story["tokens"] == 16 and story["seed"] == "3"
    assert len(minted["certificate"]["signers"]) == 3
    assert minted["receipt"]["hash"] == story["receiptHash"]
    assert _verify(minted["receipt"], network_dir) == 16

    listed = node.story_data("{ stories { id text } }")["stories"]
    assert {"id": story["id"], "text": story["text"]} in listed
    new_owner = "ef" * 32
    moved = node.story_data(
        f'mutation {{ transferStory(id: {story["id"]}, owner: "{new_owner}") {{ owner }} }}'
    )
    assert moved["transferStory"]["owner"] == new_owner
    mine = node.story_data(f'{{ stories(owner: "{new_owner}") {{ id }} }}')["stories"]
    assert mine == [{"id": story["id"]}]
    missing = node.graphql("{ story(id: 999) { id } }", path=node.story_path)
    assert "no story 999" in json.dumps(missing)
