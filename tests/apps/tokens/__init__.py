"""A token moved between chains by tracked messages (Linera's fungible example in small), whose
mints are an event stream other chains follow: the ABI. Used by tests/test_messages.py."""

from dataclasses import dataclass

from edgechain.sdk import Abi


@dataclass(frozen=True)
class Mint:
    amount: int


@dataclass(frozen=True)
class Transfer:
    """Send ``amount`` to this application on chain ``to_chain`` (hex id)."""

    to_chain: str
    amount: int
    tracked: bool = True


@dataclass(frozen=True)
class Follow:
    """Follow the ``mints`` stream of this application on chain ``chain`` (hex id)."""

    chain: str


@dataclass(frozen=True)
class Credit:
    """The message: credit ``amount`` on the receiving chain."""

    amount: int


@dataclass(frozen=True)
class Parameters:
    #: A chain refuses a credit above this: a tracked transfer then bounces back.
    max_credit: int = 50


ABI = Abi(operations=(Mint, Transfer, Follow), parameters=Parameters, messages=(Credit,))
