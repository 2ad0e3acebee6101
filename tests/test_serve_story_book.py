"""The story book at its own application URL on the node: its GraphQL and GraphiQL, its place
in the node's listings, and a mint that does not hold up the node's other requests while the
proposer generates (its model's weights come from a host that answers only after a delay)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import STORIES_DIR, NodeProcess, publish_files, start_node, stop_node

from edgechain.client import Client
from edgechain.testing.synth import shape_named, synthesize
from edgechain.testing.weight_server import Fault, WeightServer

#: How long the weight host waits before answering the first request for the slow model.
HOST_DELAY_S = 10.0
#: A generous bound for an answer that waits on nothing (the node answers in well under 1 s).
ANSWER_BOUND_S = 5.0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, WeightServer]]:
    directory = tmp_path_factory.mktemp("weights")
    for name in ("stories260K.bin", "tok512.bin"):
        (directory / name).write_bytes((STORIES_DIR / name).read_bytes())
    synthesize(shape_named("260K"), 17, directory / "slow.bin", directory / "slow_tok.bin")
    with WeightServer(directory) as server:
        yield directory, server


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, served: tuple[Path, WeightServer]
) -> Iterator[NodeProcess]:
    directory, server = served
    net = tmp_path_factory.mktemp("story-node") / "net"
    Client.up(net, validators=4).close()
    node = start_node(net)
    try:
        for name, weights, tokenizer in (
            ("stories260K", "stories260K.bin", "tok512.bin"),
            ("slow", "slow.bin", "slow_tok.bin"),
        ):
            publish_files(node, name, directory / weights, directory / tokenizer, server.base_url)
        yield node
    finally:
        stop_node(node, signal.SIGKILL)


def test_the_story_book_has_its_own_graphql_and_graphiql(node: NodeProcess) -> None:
    assert node.story_path != node.app_path
    assert node.story_data("{ stories { id } }") == {"stories": []}
    # The registry's endpoint no longer answers for the story book, and the reverse.
    assert "stories" in node.graphql("{ stories { id } }")["errors"][0]["message"]
    body = node.graphql("{ models { name } }", path=node.story_path)
    assert "models" in body["errors"][0]["message"]
    page = httpx.get(node.base_url + node.story_path, headers={"Accept": "text/html"})
    assert page.status_code == 200 and "<b>story-book</b>" in page.text
    assert "mintStory" in page.text and 'href="/"' in page.text
    index = httpx.get(node.base_url + "/", headers={"Accept": "text/html"})
    assert f'href="{node.story_path}"' in index.text and "story-book GraphiQL" in index.text
    # It streams nothing: no generate endpoint.
    missing = httpx.get(node.base_url + node.story_path + "/generate", params={"model": "x"})
    assert missing.status_code == 404
    assert "story-book" in missing.json()["errors"][0]["message"]


def _mint_in_background(node: NodeProcess, results: dict[str, Any]) -> threading.Thread:
    def mint() -> None:
        results["mint"] = node.graphql(
            'mutation { mintStory(model: "slow", prompt: "Once", maxTokens: 8, seed: "2") '
            "{ story { id model tokens } certificate { signers } } }",
            path=node.story_path,
        )

    thread = threading.Thread(target=mint, daemon=True)
    thread.start()
    return thread


def test_the_registry_answers_while_a_mint_generates(
    node: NodeProcess, served: tuple[Path, WeightServer]
) -> None:
    _, server = served
    server.inject("slow.bin", Fault(delay=HOST_DELAY_S, times=1))
    results: dict[str, Any] = {}
    minting = _mint_in_background(node, results)
    deadline = time.monotonic() + 30
    while server.request_count("slow.bin") == 0:  # the proposer is fetching the weights
        assert minting.is_alive(), results
        assert time.monotonic() < deadline, "the mint never asked for its weights"
        time.sleep(0.05)

    started = time.monotonic()
    models = node.data("{ models { name } }")["models"]
    stories = node.story_data("{ stories { id } }")["stories"]
    answered_s = time.monotonic() - started

    assert {m["name"] for m in models} >= {"stories260K", "slow"}
    assert stories == []  # nothing minted yet
    assert minting.is_alive()  # the answers came while the mint was still in progress
    assert answered_s < ANSWER_BOUND_S

    minting.join(timeout=120)
    assert not minting.is_alive()
    minted = results["mint"]
    assert "errors" not in minted, minted
    story = minted["data"]["mintStory"]["story"]
    assert story["model"] == "slow" and story["tokens"] == 8
    assert len(minted["data"]["mintStory"]["certificate"]["signers"]) >= 3
    assert node.story_data("{ stories { id } }")["stories"] == [{"id": story["id"]}]
