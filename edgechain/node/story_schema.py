"""The GraphQL schema of the story book application, served at its own application URL.

Queries read certified state (``stories``, ``story``); mutations propose blocks (``mintStory``,
``transferStory``). Errors, hex strings and ``U64`` are as in the registry's schema
(:mod:`edgechain.node.schema`); ``mintStory`` takes ``generate``'s arguments.
"""

from __future__ import annotations

import dataclasses

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from edgechain.contract.story_book import Story
from edgechain.node.resolvers import call, gate, propose, typed
from edgechain.node.schema import (
    U64,
    CertificateInfo,
    application_schema,
    with_generate_arguments,
)
from edgechain.service.query import GenerateQuery

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
        """Every field of ``story`` but its parameters (JSON, in the receipt); the seed as U64."""
        fields = {f.name: getattr(story, f.name) for f in dataclasses.fields(cls)}
        fields["seed"] = None if story.seed is None else U64(int(story.seed))
        return cls(**fields)


@strawberry.type(description="A minted story, its block's certificate and its receipt.")
class MintedStoryInfo:
    story: StoryInfo
    certificate: CertificateInfo
    receipt: JSON


@strawberry.type
class StoryQuery:
    @strawberry.field(description="The stories, in mint order (or one owner's).")
    async def stories(self, info: Info, owner: str | None = None) -> list[StoryInfo]:
        return [StoryInfo.of(s) for s in await call(info, lambda c: c.stories(owner))]

    @strawberry.field(description="A story by id.")
    async def story(self, info: Info, id: int) -> StoryInfo:  # noqa: A002 (GraphQL's name)
        return StoryInfo.of(await call(info, lambda c: c.story(id)))


@strawberry.type
class StoryMutation:
    @strawberry.mutation(
        description="Generate a story and mint it: validators re-execute the generation before "
        "signing. The node's queries are answered meanwhile."
    )
    @with_generate_arguments
    async def mint_story(self, info: Info, query: GenerateQuery) -> MintedStoryInfo:
        minted = await typed(gate(info).mint_story(query))
        return MintedStoryInfo(
            story=StoryInfo.of(minted.story),
            certificate=CertificateInfo.of(minted.certificate),
            receipt=minted.receipt.to_json(),
        )

    @strawberry.mutation(description="Give a story the chain owner owns to another public key.")
    async def transfer_story(self, info: Info, id: int, owner: str) -> StoryInfo:  # noqa: A002
        return StoryInfo.of(
            await propose(info, lambda c: (c.transfer_story(id, owner), c.story(id))[1])
        )

    @strawberry.mutation(
        description="Send a story the chain owner owns to a public key on another chain (name "
        "or id): it is theirs once that chain takes its inbox, or comes back if that chain's "
        "registry does not certify its model. The certificate of the sending block."
    )
    async def send_story(
        self,
        info: Info,
        id: int,  # noqa: A002
        owner: str,
        chain: str,
    ) -> CertificateInfo:
        return CertificateInfo.of(await propose(info, lambda c: c.transfer_story(id, owner, chain)))


STORY_SCHEMA = application_schema(StoryQuery, StoryMutation)
