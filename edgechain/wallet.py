"""The user's wallet in a network directory: the chains whose owner keys it holds, and which of
them commands act on by default (Linera's wallet, ``linera wallet show``).

The keys are ``keys/chains/<name>.key`` (chain/network.py writes them when a chain is opened);
``wallet.json`` records the default chain. A chain opened with ``--owner KEY`` belongs to
someone else: the network knows it, the wallet holds no key for it, and only its owner proposes
its blocks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgechain.chain.network import DEFAULT_CHAIN, Network
from edgechain.errors import StorageCorrupted, UsageError
from edgechain.files import CONFIG_MAX_BYTES, read_regular, write_atomically

WALLET_FILE = "wallet.json"
WALLET_FORMAT = "edgechain-wallet/1"


@dataclass(frozen=True)
class WalletChain:
    """One chain as the wallet sees it."""

    name: str
    chain_id: str  # hex
    owner: str  # hex public key
    owned: bool  # the wallet holds its owner's key
    default: bool
    blocks: int
    head: str | None  # HEIGHT:HASH

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def default_chain(path: Path) -> str:
    """The chain commands act on when ``--chain`` is not given."""
    file = path / WALLET_FILE
    if not file.exists():
        return DEFAULT_CHAIN
    raw = read_regular(file, "the wallet", StorageCorrupted, CONFIG_MAX_BYTES)
    try:
        value = json.loads(raw)
        if not (isinstance(value, dict) and value.get("format") == WALLET_FORMAT):
            raise ValueError(f"not an {WALLET_FORMAT} file")
        name = value["default_chain"]
        if not isinstance(name, str):
            raise ValueError("default_chain is not a name")
    except (ValueError, KeyError) as exc:
        raise StorageCorrupted(f"{file} is malformed: {exc}") from None
    return name


def set_default_chain(network: Network, name: str) -> None:
    """Make ``name`` (a chain of the network whose key the wallet holds) the default."""
    chain = network.chain(name)
    if not owns(network, chain.name):
        raise UsageError(f"the wallet holds no key for chain {chain.name!r}: it cannot be yours")
    content = json.dumps({"format": WALLET_FORMAT, "default_chain": chain.name}, indent=2)
    write_atomically(network.path / WALLET_FILE, (content + "\n").encode(), "the wallet")


def owns(network: Network, name: str) -> bool:
    return (network.path / "keys" / "chains" / f"{name}.key").is_file()


def show(network: Network) -> list[WalletChain]:
    """Every chain of the network, the wallet's own first."""
    default = default_chain(network.path)
    found = []
    for chain in network.chains():
        status = chain.status()
        found.append(
            WalletChain(
                chain.name, status.chain_id, status.owner, owns(network, chain.name),
                chain.name == default, status.blocks, status.head,
            )
        )  # fmt: skip
    return sorted(found, key=lambda c: (not c.owned, c.name))
