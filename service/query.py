"""The ``generate`` query: the generation request (contract/generation_request.py, where every
field is declared once) with what the service adds, the engine's parameters and the inputs of
the derived seed.

``edgechain generate``'s flags, the GraphQL ``generate`` arguments and the SSE endpoint's URL
parameters are built from :func:`parameters`, so defaults and ranges are the same wherever a
query comes from; constructing a :class:`GenerateQuery` is the one validation at the door.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgechain.contract.generation_request import (
    MAX_PROMPT_BYTES,
    GenerationRequest,
    Parameter,
    defaults,
    parameters,
    required,
    sampling_parameters,
    seed_parameters,
)
from edgechain.service.engine.base import GenerationParams, PromptOrMessages
from edgechain.service.seed import SeedQuery

__all__ = [
    "MAX_PROMPT_BYTES",
    "GenerateQuery",
    "Parameter",
    "defaults",
    "parameters",
    "required",
    "seed_parameters",
]


@dataclass(frozen=True)
class GenerateQuery(GenerationRequest):
    """A ``generate`` query: a :class:`GenerationRequest` the service runs."""

    def params(self, seed: int) -> GenerationParams:
        """The engine parameters of this query (checked at the door, when the query was built;
        the engine's own guard checks them again when it serialises them)."""
        sampling = {name: getattr(self, name) for name in sampling_parameters()}
        return GenerationParams(seed=seed, **sampling)

    def engine_input(self) -> PromptOrMessages:
        """What the engine generates after: the messages (generate's chat form) or the
        prompt."""
        return self.prompt if self.messages is None else self.messages

    def seed_query(self, version: str) -> SeedQuery:
        """What the derived seed covers: model, version, prompt and the sampling parameters
        that enter it (temperature, top_p, repeat_penalty, repeat_window). Not the token budget
        nor the stop strings, so ``max_tokens=20`` generates a prefix of ``max_tokens=60``.
        A query of messages adds them as the parameter ``messages`` (a list of [role, content]
        lists), so a prompt's seed is what it was before messages existed."""
        params: dict[str, object] = {name: getattr(self, name) for name in seed_parameters()}
        if self.messages is not None:
            params["messages"] = [[m.role, m.content] for m in self.messages]
        return SeedQuery(model=self.model, version=version, prompt=self.prompt, params=params)
