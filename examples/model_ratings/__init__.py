"""model_ratings: owners rate what certified models write; the service sums the ratings up and
lets the best-rated model continue the best-rated prompt (an edgechain.sdk application).

The ABI: one operation, :class:`Rate`; the parameters bound the stars.
"""

from dataclasses import dataclass

from edgechain.sdk import Abi


@dataclass(frozen=True)
class Rate:
    """Give ``stars`` to what ``model`` ``version`` wrote for ``prompt``."""

    model: str
    version: str
    prompt: str
    stars: int


@dataclass(frozen=True)
class Parameters:
    max_stars: int = 5


@dataclass(frozen=True)
class Total:
    """A model version's ratings so far (the Rate operation's response)."""

    count: int
    stars: int


ABI = Abi(operations=(Rate,), parameters=Parameters)
