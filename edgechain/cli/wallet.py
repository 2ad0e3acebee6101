"""``edgechain wallet``: the chains whose keys this network directory holds, and the default."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from edgechain import wallet
from edgechain.cli.network_options import add_subcommand, open_client
from edgechain.cli.render import print_result
from edgechain.wallet import WalletChain

NAME = "wallet"
HELP = "show the chains your wallet owns, or choose the one commands act on by default"
EXAMPLES = "  edgechain wallet show\n  edgechain wallet set-default bob"


def add_subcommands(subparsers: Any) -> None:
    """Register ``wallet show`` and ``wallet set-default``."""
    add_subcommand(
        subparsers,
        "show",
        "list the network's chains: which the wallet owns, the default, each head",
        "edgechain wallet show --json",
        wallet_show,
    )
    chosen = add_subcommand(
        subparsers,
        "set-default",
        "make a chain the wallet owns the one commands act on without --chain",
        "edgechain wallet set-default bob",
        wallet_set_default,
    )
    chosen.add_argument("name", metavar="CHAIN", help="a chain's name, id or id prefix")


def wallet_show(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        chains = wallet.show(client.network)
    return print_result(args.json, [c.to_json() for c in chains], _show_lines(chains))


def _show_lines(chains: list[WalletChain]) -> Iterator[str]:
    for c in chains:
        mark = "*" if c.default else " "
        whose = "yours" if c.owned else f"owner {c.owner[:16]} (not yours)"
        head = c.head or "no blocks yet"
        yield f"{mark} {c.name:<12} {c.chain_id[:16]}  {whose}; {c.blocks} blocks, {head}"
    yield "(* the default chain: commands act on it without --chain)"


def wallet_set_default(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        wallet.set_default_chain(client.network, args.name)
        chain = client.network.chain(args.name)
    line = f"commands now act on chain {chain.name} without --chain"
    return print_result(args.json, {"default_chain": chain.name}, (line,))
