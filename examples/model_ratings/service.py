"""Scores per model, and a summary the best-rated model writes itself: greedy, with the seed
derived from certified state, so every node gives the same summary."""

import strawberry
from strawberry.types import Info

from edgechain.sdk import Service, service_of

from .state import RatingsState


@strawberry.type
class Score:
    model: str
    version: str
    count: int
    average_per_mille: int = strawberry.field(description="average stars x 1000")


def _scores(info: Info) -> list[Score]:
    found = []
    for key, total in service_of(info).state.totals.items():
        model, _, version = key.rpartition("@")
        average = total.stars * 1000 // total.count
        found.append(
            Score(model=model, version=version, count=total.count, average_per_mille=average)
        )
    return sorted(found, key=lambda s: (-s.average_per_mille, s.model, s.version))


@strawberry.type
class Query:
    @strawberry.field(description="Each rated model version, best first.")
    def scores(self, info: Info) -> list[Score]:
        return _scores(info)

    @strawberry.field(
        description="The best-rated model continues the best-rated prompt (greedy, 40 tokens)."
    )
    def summary(self, info: Info) -> str:
        service = service_of(info)
        scores = _scores(info)
        if not scores:
            return "no ratings yet"
        best = scores[0]
        ratings = [r for r in service.state.ratings.read() if (r.model, r.version) ==
                   (best.model, best.version)]  # fmt: skip
        prompt = max(ratings, key=lambda r: r.stars).prompt
        record = service.runtime.generate(
            best.model, prompt, version=best.version, temperature=0.0, max_tokens=40
        )
        return record.prompt + record.text


class RatingsService(Service):
    state_type = RatingsState
    query = Query
