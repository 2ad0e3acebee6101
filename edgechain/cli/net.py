"""``edgechain net``: create, reopen and inspect a local network."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from edgechain.chain.network import DEFAULT_CHAIN, NETWORK_FILE, NetworkStatus
from edgechain.cli.common import ensure_directory
from edgechain.cli.network_options import (
    add_subcommand,
    network_dir,
    open_client,
)
from edgechain.cli.render import print_json
from edgechain.client import NETWORK_DIR_ENV, Client
from edgechain.errors import InputError

NAME = "net"
HELP = "create, reopen and inspect a local network of mock validators"
EXAMPLES = (
    "  edgechain net up --dir ./mynet --validators 4 --faulty v4=offline\n"
    "  edgechain net status --dir ./mynet --json"
)


def add_subcommands(subparsers: Any) -> None:
    """Register ``net up`` and ``net status``."""
    up = add_subcommand(
        subparsers,
        "up",
        "create a network in --dir (or reopen and re-verify the one already there)",
        "edgechain net up --dir ./net7 --validators 7 --faulty v2=offline,v5=wrong-state",
        net_up,
    )
    up.add_argument(
        "--validators",
        type=int,
        default=None,
        metavar="N",
        help="committee size for a new network (default 4; must match when reopening)",
    )
    up.add_argument(
        "--faulty",
        metavar="SPEC",
        default=None,
        help="faulty validators, saved in the network: comma-separated NAME=FAULT with FAULT "
        "one of offline, slow[:SECONDS], bad-signature, wrong-state, equivocate, "
        "wrong-output, missing-blobs "
        "(e.g. v2=offline,v4=slow:0.5); '' makes every validator honest again",
    )
    up.add_argument(
        "--policy",
        metavar="NAME_OR_FILE",
        default=None,
        help="resource policy of a new network: no-fees (default, unlimited), testnet "
        "(Linera's testnet limits) or a JSON file of limits (docs/blobs.md)",
    )
    up.add_argument(
        "--oracle-budget",
        type=float,
        metavar="S",
        default=None,
        help="seconds a block's oracle calls (story mints) may take together, saved in the "
        "network (default 60, or the policy's cap)",
    )
    up.add_argument(
        "--engines",
        metavar="SPEC",
        default=None,
        help="engine each validator re-executes oracle calls with, saved in the network, e.g. "
        "v1=native,v2=native (default: wasm and native in turn)",
    )

    add_subcommand(
        subparsers,
        "status",
        "show the committee, thresholds, faults, chains and registered models",
        "edgechain net status --dir ./mynet",
        net_status,
    )


def net_up(args: argparse.Namespace) -> int:
    # Created by Client.up once the other options are checked, so a refused `net up` leaves
    # nothing behind.
    path = ensure_directory(network_dir(args), "--dir", create=False)
    existed = (path / NETWORK_FILE).exists()
    try:
        client = Client.up(
            path,
            validators=args.validators,
            faulty=args.faulty,
            policy=args.policy,
            oracle_budget_s=args.oracle_budget,
            validator_engines=args.engines,
        )
    except OSError as err:  # a path under a file, under /proc, read-only, ...
        raise InputError(
            f"cannot {'open' if existed else 'create'} a network in --dir {path}: "
            f"{err.strerror or err}"
        ) from None
    with client:
        if args.faulty is not None:
            # Faults given when reopening apply to every later command, not just this one.
            client.network.set_faults(args.faulty, persist=True)
        if not args.json:
            blocks = sum(c.status().blocks for c in client.network.chains())
            print(
                f"reopened {path}: {blocks} stored blocks re-verified"
                if existed
                else f"created a network in {path}"
            )
        _show(client, args.json, created=not existed, exports=_exports(path))
        if not args.json:
            # As `linera net up` does: the line that points later commands at this network.
            print("\nto use this network without --dir, run:")
            for name, value in _exports(path).items():
                print(f"export {name}={shlex.quote(value)}")
    return 0


def _exports(path: Path) -> dict[str, str]:
    return {NETWORK_DIR_ENV: str(path.resolve())}


def net_status(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        _show(client, args.json)
    return 0


def _show(
    client: Client,
    as_json: bool,
    created: bool | None = None,
    exports: dict[str, str] | None = None,
) -> None:
    status = client.status()
    models = client.models()
    retired = sum(1 for m in models if m.entry.retired)
    if as_json:
        value = status.to_json()
        value["you"] = _you(status)
        value["models"] = {"active": len(models) - retired, "retired": retired}
        if created is not None:
            value["created"] = created
        if exports is not None:
            value["exports"] = exports
        print_json(value)
        return
    for line in _status_lines(status):
        print(line)
    print(f"models: {len(models) - retired} active, {retired} retired")


def policy_line(policy: dict[str, Any] | None) -> str:
    """``policy testnet: maximum_blob_size 1000000, ...`` (unlimited fields left out)."""
    policy = policy or {"name": "no-fees"}
    limits = [f"{k} {v}" for k, v in policy.items() if k != "name" and v is not None]
    return f"policy {policy['name']}: " + (", ".join(limits) if limits else "no limits")


def _status_lines(status: NetworkStatus) -> list[str]:
    n = len(status.validators)
    lines = [
        f"network {status.path}",
        f"validators: {n}; a certificate needs {status.quorum} signatures "
        f"(tolerates {status.tolerated_faults} faulty); vote timeout {status.vote_timeout:g} s",
    ]
    engines = status.validator_engines
    for v in status.validators:
        engine = f"  oracle on {engines[v.name]}" if v.name in engines else ""
        lines.append(f"  {v.name:<4} {v.public_key}  {v.fault or 'honest'}{engine}")
    lines.append(policy_line(status.policy))
    lines.append(f"oracle budget {status.oracle_budget_s:g} s per block")
    for c in status.chains:
        # HEIGHT:HASH, to record and check later with `chain verify --expect-head`.
        head = c.head or "(no blocks yet)"
        count = f"{c.blocks} block" + ("" if c.blocks == 1 else "s")
        lines.append(f"chain {c.name}: id {c.chain_id}, {count}, head {head}")
        lines.append(f"  owner {c.owner}")
    you = _you(status)
    if you is not None:
        lines.append(f"you: {you} (the default chain's owner: you sign its blocks and own what "
                     "you mint; `story list --owner` takes a prefix of it)")
    return lines


def _you(status: NetworkStatus) -> str | None:
    """The user's public key: the owner of the default chain, whose key this directory holds."""
    return next((c.owner for c in status.chains if c.name == DEFAULT_CHAIN), None)
