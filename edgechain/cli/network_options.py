"""The options the commands share and what they open: ``--dir``, ``--json``, ``--engine``,
``--allow-host``, sub-subcommands with examples, the :class:`~edgechain.client.Client`.

How results are printed is in :mod:`edgechain.cli.render`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgechain.chain.network import Network
from edgechain.cli.common import add_threads_option, engine_options
from edgechain.cli.global_options import CHAIN, DIR, JSON
from edgechain.client import NETWORK_DIR_ENV, Client, default_network_dir
from edgechain.service.engine import ENGINE_KINDS
from edgechain.service.fetch import FetchPolicy

Handler = Callable[[argparse.Namespace], int]


def add_subcommand(
    subparsers: Any,
    name: str,
    help: str,  # noqa: A002 (argparse's own name)
    example: str,
    handler: Handler,
) -> argparse.ArgumentParser:
    """A sub-subcommand of a network command (``net up``, ``model show``...): its ``--help``
    says what it does and shows ``example``; it takes ``--dir`` and ``--json``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(subcommand_handler=handler)
    add_dir_option(parser)
    add_json_option(parser)
    return parser


def add_group(parser: argparse.ArgumentParser, examples: str) -> Any:
    """Make ``parser`` a group of sub-subcommands (``edgechain net up``); returns subparsers."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = f"examples:\n{examples}"
    subparsers = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    subparsers.required = True
    return subparsers


def run_subcommand(args: argparse.Namespace) -> int:
    """The ``execute`` of a group: run the chosen sub-subcommand."""
    handler: Handler = args.subcommand_handler
    return int(handler(args) or 0)


def add_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--dir D`` and ``--chain CHAIN`` (global options: also accepted before the command)."""
    DIR.add_after(
        parser,
        f"network directory (default ${NETWORK_DIR_ENV}, else {default_network_dir()}); "
        "also accepted before the command",
    )
    CHAIN.add_after(
        parser,
        "the chain to act on (name, id or id prefix; default: the wallet's default chain)",
    )


def add_json_option(
    parser: argparse.ArgumentParser, help: str = "print JSON instead of text"  # noqa: A002
) -> None:
    """``--json`` (a global option: also accepted before the command); a failure prints
    ``{"error": {"code", "class", "message"}}`` on stdout."""
    JSON.add_after(parser, help)


def add_engine_option(
    parser: argparse.ArgumentParser, help: str = "backend (default wasm)"  # noqa: A002
) -> None:
    """``--engine wasm|native`` (default wasm) and ``--threads N`` (native only)."""
    parser.add_argument("--engine", choices=ENGINE_KINDS, default="wasm", help=help)
    add_threads_option(parser)


def add_allow_host_option(
    parser: argparse.ArgumentParser, allows: str = "also let the service fetch from HOST"
) -> None:
    """``--allow-host HOST`` (repeatable): a host to fetch from besides loopback."""
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help=f"{allows} (only loopback is allowed by default)",
    )


def fetch_policy(args: argparse.Namespace) -> FetchPolicy:
    """The default fetch policy, with ``--allow-host``'s hosts."""
    return FetchPolicy().with_hosts(*args.allow_host)


def network_dir(args: argparse.Namespace) -> Path:
    """The directory given with ``--dir``, else the default one."""
    given = getattr(args, "dir", None)
    return given if given is not None else default_network_dir()


def open_client(args: argparse.Namespace, **options: Any) -> Client:
    """The network in ``--dir`` (NetworkNotFound, exit 4, when there is none), acting on
    ``--chain``."""
    return Client.open(network_dir(args), chain=getattr(args, "chain", None), **options)


def open_engine_client(args: argparse.Namespace, faulty: str | None = None) -> Client:
    """The network in ``--dir`` with the ``--engine`` backend and ``--allow-host``'s policy.

    The network is opened first, so a missing network is reported before a missing engine.
    """
    from edgechain.service.engine import open_engine

    network = Network.open(network_dir(args), faulty=faulty, lazy=True)
    try:
        engine = open_engine(args.engine, **engine_options(args))
    except BaseException:
        network.close()
        raise
    try:
        return Client(
            network,
            engine=engine,
            fetch_policy=fetch_policy(args),
            chain=getattr(args, "chain", None),
        )
    except BaseException:
        network.close()
        raise
