"""The story book at its own application URL on the node: its GraphQL and GraphiQL, its place
in the node's listings, and a mint that does not hold up the node's other requests, neither
while the proposer generates (its model's weights come from a host that answers only after a
delay) nor while validators re-execute it (v3 votes only after a delay and v4 refuses, so the
quorum waits for v3)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import (
    NodeProcess,
    publish_stories_and_synthetic,
    start_node,
    stop_node,
    stories_and_synthetic,
)

from edgechain.client import Client
from edgechain.testing.weight_server import HostFault, WeightServer

#: How long the weight host waits before answering the first request for the slow model, and
#: how long validator v3 waits before it answers a proposal.
HOST_DELAY_S = 8.0
VALIDATOR_DELAY_S = 8.0
#: A generous bound for an answer that waits on nothing (the node answers in well under 1 s).
ANSWER_BOUND_S = 5.0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, WeightServer]]:
    directory = tmp_path_factory.mktemp("weights")
    stories_and_synthetic(directory, "slow", 17)
    with WeightServer(directory) as server:
        yield directory, server


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, served: tuple[Path, WeightServer]
) -> Iterator[NodeProcess]:
    directory, server = served
    net = tmp_path_factory.mktemp("story-node") / "net"
    # v4 refuses every mint (wrong-output), so a mint's quorum needs the slow v3; other blocks
    # are certified by v1, v2 and v4 without waiting.
    Client.up(net, validators=4, faulty=f"v3=slow:{VALIDATOR_DELAY_S:g},v4=wrong-output").close()
    node = start_node(net)
    try:
        publish_stories_and_synthetic(node, directory, server.base_url, "slow")
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


def _answers_during_a_mint(node: NodeProcess, server: WeightServer, model: str) -> None:
    """Mint with ``model`` in the background; once the proposer asked for its weights, the
    registry and the story book answer while the mint is still in progress; then it is
    certified by v1, v2 and the slow v3 (v4 refuses it) and listed."""
    before = node.story_data("{ stories { id } }")["stories"]
    results: dict[str, Any] = {}

    def mint() -> None:
        results["mint"] = node.graphql(
            f'mutation {{ mintStory(model: "{model}", prompt: "Once", maxTokens: 8, seed: "2") '
            "{ story { id model tokens } certificate { signers } } }",
            path=node.story_path,
        )

    minting = threading.Thread(target=mint, daemon=True)
    minting.start()
    deadline = time.monotonic() + 30
    while server.request_count(f"{model}.bin") == 0:  # the proposer is fetching the weights
        assert minting.is_alive(), results
        assert time.monotonic() < deadline, "the mint never asked for its weights"
        time.sleep(0.05)

    started = time.monotonic()
    models = node.data("{ models { name } }")["models"]
    stories = node.story_data("{ stories { id } }")["stories"]
    answered_s = time.monotonic() - started

    assert {m["name"] for m in models} == {"stories260K", "slow"}
    assert stories == before  # nothing minted yet
    assert minting.is_alive()  # the answers came while the mint was still in progress
    assert answered_s < ANSWER_BOUND_S

    minting.join(timeout=120)
    assert not minting.is_alive()
    minted = results["mint"]
    assert "errors" not in minted, minted
    story = minted["data"]["mintStory"]["story"]
    assert story["model"] == model and story["tokens"] == 8
    assert len(minted["data"]["mintStory"]["certificate"]["signers"]) == 3
    assert node.story_data("{ stories { id } }")["stories"] == [*before, {"id": story["id"]}]


def test_the_registry_answers_while_the_proposer_generates(
    node: NodeProcess, served: tuple[Path, WeightServer]
) -> None:
    _, server = served
    server.inject("slow.bin", HostFault(delay=HOST_DELAY_S, times=1))
    _answers_during_a_mint(node, server, "slow")


def test_the_registry_answers_while_validators_re_execute_a_mint(
    node: NodeProcess, served: tuple[Path, WeightServer]
) -> None:
    # stories260K's weights come at once: the mint spends its time waiting for v3's vote.
    _answers_during_a_mint(node, served[1], "stories260K")


class _FakeClient:
    """What ClientGate uses of a Client: refresh and close."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def refresh(self) -> bool:
        return False

    def close(self) -> None:
        self.closed.set()


def test_closing_the_gate_waits_for_a_proposal_outside_its_lock_and_refuses_new_ones() -> None:
    from edgechain.node.gate import ClientGate

    client = _FakeClient()
    gate = ClientGate(client)  # type: ignore[arg-type]
    certifying, finish = threading.Event(), threading.Event()

    def slow_proposal(_: object) -> str:
        certifying.set()
        finish.wait(30)
        return "certified"

    results: list[str] = []
    proposer = threading.Thread(target=lambda: results.append(gate.propose_blocking(slow_proposal)))
    proposer.start()
    assert certifying.wait(30)
    assert gate.call_blocking(lambda _: "answered") == "answered"  # the lock is free meanwhile
    closer = threading.Thread(target=gate.close)
    closer.start()
    closer.join(0.5)
    assert closer.is_alive() and not client.closed.is_set()  # waits for the proposal
    finish.set()
    proposer.join(30)
    closer.join(30)
    assert results == ["certified"] and client.closed.is_set()
    with pytest.raises(RuntimeError, match="shutting down"):
        gate.propose_blocking(slow_proposal)
