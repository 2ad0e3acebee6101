"""Minting a story (the story book, contract/story_book.py) in three steps, so that a caller
sharing a client between threads (the node) generates without holding it:

1. :func:`prepare_mint` resolves the query against certified state (quick): the model
   version, the seed and the block's oracle budget, and gives every validator its oracle;
2. :meth:`PendingMint.generate` runs the generation, the proposer's oracle call (slow; needs no
   lock; OracleBudgetExceeded past the block's budget);
3. :func:`certify_mint` proposes the ``MintStory`` block recording the response; every
   validator re-executes the generation with its own engine before voting.

``Client.mint_story`` runs the three in a row.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgechain.chain.certificate import Certificate
from edgechain.chain.network import Chain, Network
from edgechain.contract.registry import ModelRegistryService
from edgechain.contract.story_book import APPLICATION_NAME as STORY_BOOK
from edgechain.contract.story_book import MintStory, Story, StoryBookService
from edgechain.errors import InvalidParameter, OracleBudgetExceeded, Timeout
from edgechain.service.blob_source import BlobStorage
from edgechain.service.fetch import FetchPolicy
from edgechain.service.query import GenerateQuery
from edgechain.service.records import PreparedQuery
from edgechain.service.runtime import ModelService

if typing.TYPE_CHECKING:
    from edgechain.service.receipt import Receipt

__all__ = [
    "GeneratedStory",
    "MintedStory",
    "PendingMint",
    "certify_mint",
    "install_oracles",
    "prepare_mint",
]


@dataclass(frozen=True)
class MintedStory:
    """What a mint certified: the story as certified state holds it, the block's certificate
    and the generation's receipt (``receipt verify`` replays it)."""

    story: Story
    certificate: Certificate
    receipt: Receipt


@dataclass(frozen=True)
class GeneratedStory:
    """A mint's generation (the proposer's oracle call): its query, response and receipt."""

    query: GenerateQuery
    response: dict[str, typing.Any]
    receipt: Receipt


@dataclass(frozen=True)
class PendingMint:
    """A mint resolved against certified state (:func:`prepare_mint`), to generate."""

    query: GenerateQuery
    prepared: PreparedQuery
    service: ModelService
    budget_s: float
    #: The policy's cap on the budget, for the error message ("" when it has none).
    budget_cap: str

    def generate(self) -> GeneratedStory:
        """Run the generation (slow: needs no client lock; OracleBudgetExceeded past the
        block's oracle budget)."""
        from edgechain.service.oracle import run_prepared_oracle

        try:
            response, receipt = run_prepared_oracle(self.service, self.prepared, self.budget_s)
        except Timeout:
            raise OracleBudgetExceeded(
                "generating the story ran past the block's oracle budget of "
                f"{self.budget_s:g} s{self.budget_cap}: ask for fewer tokens or a larger budget"
            ) from None
        return GeneratedStory(self.query, response, receipt)


def prepare_mint(
    network: Network,
    registry: ModelRegistryService,
    service: ModelService,
    query: GenerateQuery,
    oracle_budget_s: float | None = None,
) -> PendingMint:
    """Resolve a mint's query against certified state (quick): the model version, the seed
    and the block's oracle budget (``oracle_budget_s``, if given, becomes it). The caller has
    installed the validators' oracles (:func:`install_oracles`)."""
    if query.messages is not None:
        # MintStory records a prompt (contract/story_book.py): its validators could not replay
        # messages they never saw.
        raise InvalidParameter("a story is minted from a prompt, not messages")
    if oracle_budget_s is not None:
        network.set_oracle_budget(oracle_budget_s)  # its range checked there
    version = registry.query_model(query.model, query.version).entry.version
    query = dataclasses.replace(query, version=version)
    policy = network.policy
    limit = policy.maximum_service_oracle_execution_ms
    cap = "" if limit is None else (
        f" (the {policy.name} policy's maximum_service_oracle_execution_ms is {limit})"
    )
    return PendingMint(query, service.prepare(query), service, network.oracle_budget_s, cap)


def certify_mint(chain: Chain, generated: GeneratedStory) -> MintedStory:
    """Propose the MintStory block recording ``generated`` on ``chain`` (validators re-execute
    it) and return the story it minted."""
    query = generated.query
    operation = MintStory(
        model=query.model,
        version=query.version or "",
        prompt=query.prompt,
        parameters=query.encoded_parameters(),
        seed=None if query.seed is None else str(query.seed),
        oracle=generated.response,
    )
    certificate = chain.execute(chain.app_id(STORY_BOOK), operation)
    book: StoryBookService = chain.application(STORY_BOOK)
    minted = [s for s in book.stories(None) if s.minted_height == certificate.height]
    return MintedStory(minted[-1], certificate, generated.receipt)


def install_oracles(
    network: Network,
    registry: ModelRegistryService,
    engines: Mapping[str, str],
    *,
    cache_dir: str | os.PathLike[str] | Path,
    fetch_policy: FetchPolicy,
    blobs: BlobStorage,
) -> None:
    """Give every validator its oracle: its engine (``engines``, by validator name), the
    network's content cache and certified registry state."""
    from edgechain.service.oracle import GenerationOracle

    def oracle_for(name: str) -> GenerationOracle:
        return GenerationOracle(
            registry,
            cache_dir=cache_dir,
            engine_kind=engines.get(name, "wasm"),
            fetch_policy=fetch_policy,
            blobs=blobs,
        )

    network.install_oracles(oracle_for)
