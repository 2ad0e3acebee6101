"""Every rating in order, and each model version's total."""

from dataclasses import dataclass

from edgechain.sdk import LogView, MapView, RootView

from . import Total


@dataclass(frozen=True)
class Rating:
    rater: str
    model: str
    version: str
    prompt: str
    stars: int


class RatingsState(RootView):
    ratings = LogView(Rating)
    totals = MapView(Total)  # key: "model@version"
