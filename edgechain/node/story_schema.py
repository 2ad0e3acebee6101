"""The GraphQL schema of the story book application, served at its own application URL.

Queries read certified state (``stories``, ``story``); mutations propose blocks (``mintStory``,
``transferStory``). Errors, hex strings and ``U64`` are as in the registry's schema
(:mod:`edgechain.node.schema`); ``mintStory`` takes ``generate``'s arguments.
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from edgechain.contract.story_book import Story
from edgechain.node.schema import (
    U64,
    CertificateInfo,
    _call,
    _gate,
    _generate_query,
    _propose,
    _typed,
    _with_generate_arguments,
    application_schema,
)

__all__ = ["STORY_SCHEMA"]


@strawberry.type(description="A story minted on the story book application (certified state).")
class StoryInfo:
    id: int
    owner: str = strawberry.field(description="public key (hex)")
    model: str
    version: str
    prompt: str
    seed: U64 | None = strawberry.field(description="the query's seed; null when derived")
    text: str
    tokens: int
    token_ids_blake3: str
    receipt_hash: str
    minted_height: int

    @classmethod
    def of(cls, story: Story) -> StoryInfo:
        return cls(
            id=story.id,
            owner=story.owner,
            model=story.model,
            version=story.version,
            prompt=story.prompt,
            seed=None if story.seed is None else U64(int(story.seed)),
            text=story.text,
            tokens=story.tokens,
            token_ids_blake3=story.token_ids_blake3,
            receipt_hash=story.receipt_hash,
            minted_height=story.minted_height,
        )


@strawberry.type(description="A minted story, its block's certificate and its receipt.")
class MintedStoryInfo:
    story: StoryInfo
    certificate: CertificateInfo
    receipt: JSON


@strawberry.type
class StoryQuery:
    @strawberry.field(description="The stories, in mint order (or one owner's).")
    async def stories(self, info: Info, owner: str | None = None) -> list[StoryInfo]:
        return [StoryInfo.of(s) for s in await _call(info, lambda c: c.stories(owner))]

    @strawberry.field(description="A story by id.")
    async def story(self, info: Info, id: int) -> StoryInfo:  # noqa: A002 (GraphQL's name)
        return StoryInfo.of(await _call(info, lambda c: c.story(id)))


@strawberry.type
class StoryMutation:
    @strawberry.mutation(
        description="Generate a story and mint it: validators re-execute the generation before "
        "signing. The node's queries are answered meanwhile."
    )
    @_with_generate_arguments
    async def mint_story(self, info: Info, **fields: Any) -> MintedStoryInfo:
        query = _generate_query(fields)
        minted = await _typed(_gate(info).mint_story(query))
        return MintedStoryInfo(
            story=StoryInfo.of(minted.story),
            certificate=CertificateInfo.of(minted.certificate),
            receipt=minted.receipt.to_json(),
        )

    @strawberry.mutation(description="Give a story the chain owner owns to another public key.")
    async def transfer_story(self, info: Info, id: int, owner: str) -> StoryInfo:  # noqa: A002
        return StoryInfo.of(
            await _propose(info, lambda c: (c.transfer_story(id, owner), c.story(id))[1])
        )


STORY_SCHEMA = application_schema(StoryQuery, StoryMutation)
