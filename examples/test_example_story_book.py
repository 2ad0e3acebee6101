"""A user's test of the story book with edgechain's pytest fixtures: mint a story that every
validator re-executes (wasm and native in turn), then replay its receipt.

Run it alone with ``python -m pytest examples/test_example_story_book.py``.
"""

from __future__ import annotations

import pytest

from edgechain.errors import QuorumNotReached
from edgechain.service.runtime import GenerateQuery


def test_mint_a_story_and_verify_its_receipt(
    edgechain_network, publish_model, stories260k, mint_story, verify_receipt
) -> None:
    publish_model("stories260K", stories260k.weights, stories260k.tokenizer)
    query = GenerateQuery(model="stories260K", prompt="Lily", temperature=1.0, max_tokens=24)

    edgechain_network.network.set_faults("v4=wrong-output")  # f = 1 of 4: tolerated
    minted = mint_story(query)
    assert minted.story.text == minted.receipt.text
    assert verify_receipt(minted.receipt).tokens == 24

    edgechain_network.network.set_faults("v3=wrong-output,v4=wrong-output")  # f + 1
    with pytest.raises(QuorumNotReached):
        mint_story(query)
    assert [story.id for story in edgechain_network.stories()] == [minted.story.id]
