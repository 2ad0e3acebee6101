"""Issue 22's walkthrough on the built-in applications: bob's registry follows alice's and
answers `generate` from bob's own certified state; alice's story moves to bob's chain; a chain
that does not certify the story's model refuses it and the story bounces back to alice."""

from __future__ import annotations

from typing import Any

import pytest
from network_cli_helpers import edgechain

from edgechain.client import Client
from edgechain.contract.story_book import StoryNotFound
from edgechain.service.query import GenerateQuery
from edgechain.testing.models import ModelFiles

GREEDY = {"prompt": "Once upon a time", "temperature": 0.0, "max_tokens": 24}


@pytest.fixture
def alice(edgechain_network: Client, publish_model: Any, stories260k: ModelFiles) -> Client:
    publish_model("stories260K", stories260k.weights, stories260k.tokenizer)
    edgechain_network.open_chain("bob")
    edgechain_network.open_chain("carol")
    return edgechain_network


def on(alice: Client, chain: str) -> Client:
    """A client of the same network acting on ``chain`` (the same process, like a wallet)."""
    return Client(alice.network, chain=chain, fetch_policy=alice.fetch_policy)


def test_bobs_registry_follows_alices_and_generates_from_its_own_state(alice: Client) -> None:
    bob = on(alice, "bob")
    assert bob.models() == []
    bob.follow_registry("default")
    assert alice.process_inbox() is not None  # takes bob's request, sends what it certified
    assert bob.process_inbox() is not None  # bob's block certifies the model on bob's chain
    [model] = bob.models()
    assert (model.entry.name, model.chain_id) == ("stories260K", bob.chain.id)
    assert model.height == bob.chain.height - 1
    mine = alice.generate(GenerateQuery(model="stories260K", **GREEDY)).collect().text
    theirs = bob.generate(GenerateQuery(model="stories260K", **GREEDY)).collect().text
    assert theirs == mine and theirs
    # A retirement on alice's chain reaches bob's registry too.
    alice.retire_model("stories260K", model.entry.version)
    bob.process_inbox()
    assert [m.entry.retired for m in bob.models()] == [True]
    assert edgechain("chain", "verify", "--dir", alice.network.path).code == 0


def test_a_story_moves_to_bobs_chain_and_bounces_off_carols(alice: Client) -> None:
    bob, carol = on(alice, "bob"), on(alice, "carol")
    bob.follow_registry("default")
    alice.process_inbox()
    bob.process_inbox()
    minted = alice.mint_story(GenerateQuery(model="stories260K", **GREEDY))
    story_id = minted.story.id
    text = alice.story(story_id).text
    # carol's registry does not certify stories260K: the story comes back to alice.
    alice.transfer_story(story_id, carol.chain.owner.hex(), "carol")
    with pytest.raises(StoryNotFound):
        alice.story(story_id)  # in flight
    carol.process_inbox()
    assert carol.stories() == []
    alice.process_inbox()
    assert alice.story(story_id).owner == alice.chain.owner.hex()
    # bob's chain certifies the model: the story is bob's there, under bob's numbering.
    alice.transfer_story(story_id, bob.chain.owner.hex(), "bob")
    bob.process_inbox()
    [arrived] = bob.stories(bob.chain.owner.hex())
    assert (arrived.id, arrived.text, arrived.model) == (1, text, "stories260K")
    with pytest.raises(StoryNotFound):
        alice.story(story_id)
    assert edgechain("chain", "verify", "--dir", alice.network.path).code == 0


def test_the_cli_sends_a_story_to_another_chain(alice: Client) -> None:
    alice.mint_story(GenerateQuery(model="stories260K", **GREEDY))
    path = alice.network.path
    owner = alice.network.chain("carol").owner.hex()
    sent = edgechain("story", "transfer", "1", f"{owner}@carol", "--dir", path)
    assert sent.code == 0, sent.err
    assert "left chain default" in sent.out and "process-inbox --chain carol" in sent.out
    refused = edgechain("story", "transfer", "1", f"{owner}@nowhere", "--dir", path)
    assert refused.code == 2 and "no chain 'nowhere'" in refused.err
