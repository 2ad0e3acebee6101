"""What the network commands (net, model, generate, chain) share: ``--dir``, ``--json``,
opening the :class:`~edgechain.client.Client`, sub-subcommands with examples, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgechain.chain.certificate import Certificate
from edgechain.client import NETWORK_DIR_ENV, Client, default_network_dir
from edgechain.contract.operations import FileRef
from edgechain.contract.registry import CertifiedModel

Handler = Callable[[argparse.Namespace], int]


def add_subcommand(
    subparsers: Any,
    name: str,
    help: str,  # noqa: A002 (argparse's own name)
    example: str,
    handler: Handler,
) -> argparse.ArgumentParser:
    """A sub-subcommand whose ``--help`` says what it does and shows ``example``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(subcommand_handler=handler)
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


# --dir and --json are global options (edgechain/cli/__init__.py): the top-level parser sets
# their defaults, and a command's own copy leaves the value alone unless it is given after the
# command (SUPPRESS), so `edgechain --dir D net status` and `edgechain net status --dir D` agree.


def add_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--dir D`` (also accepted before the command)."""
    parser.add_argument(
        "--dir",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="D",
        help=f"network directory (default ${NETWORK_DIR_ENV}, else {default_network_dir()}); "
        "also accepted before the command",
    )
    parser.set_defaults(takes_dir=True)


def add_json_option(
    parser: argparse.ArgumentParser, help: str = "print JSON instead of text"  # noqa: A002
) -> None:
    """``--json`` (also accepted before the command); a failure prints
    ``{"error": {"code", "class", "message"}}`` on stdout."""
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=help)
    parser.set_defaults(takes_json=True)


def network_dir(args: argparse.Namespace) -> Path:
    """The directory given with ``--dir``, else the default one."""
    given = getattr(args, "dir", None)
    return given if given is not None else default_network_dir()


def open_client(args: argparse.Namespace, **options: Any) -> Client:
    """The network in ``--dir`` (NetworkNotFound, exit 4, when there is none)."""
    return Client.open(network_dir(args), **options)


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (bytes as hex)."""
    json.dump(value, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


# --- how models and certificates are shown -------------------------------------------------


def file_json(file: FileRef) -> dict[str, Any]:
    value: dict[str, Any] = {"blake3": file.blake3, "size": file.size, "urls": list(file.urls)}
    if file.chunks:
        value["chunks"] = [{"blob": blob.hex(), "size": size} for blob, size in file.chunks]
    return value


def model_json(model: CertifiedModel) -> dict[str, Any]:
    """A certified registry entry with the certificate that made it current."""
    entry = model.entry
    return {
        "name": entry.name,
        "version": entry.version,
        "format": entry.format,
        "description": entry.description,
        "license": entry.license,
        "weights": file_json(entry.weights),
        "tokenizer": file_json(entry.tokenizer),
        "registered_height": entry.registered_height,
        "registered_by": entry.registered_by.hex(),
        "retired_height": entry.retired_height,
        "status": "retired" if entry.retired else "active",
        "chain_id": model.chain_id.hex(),
        "application_id": model.app_id.hex(),
        "certificate_height": model.height,
        "block_hash": model.block_hash.hex(),
        "signers": model.certificate.signers,
    }


def certificate_line(certificate: Certificate, quorum: int, validators: int) -> str:
    """``height 3, block 5f…, signed by v1, v2, v3 (quorum 3 of 4)``."""
    return (
        f"height {certificate.height}, block {certificate.block_hash.hex()}, signed by "
        f"{', '.join(certificate.signers)} (quorum {quorum} of {validators})"
    )


def model_lines(model: CertifiedModel, quorum: int, validators: int) -> list[str]:
    """A certified entry as indented text lines (hashes in full: users compare them)."""
    entry = model.entry
    lines = [f"{entry.name} version {entry.version} ({entry.format})"]
    if entry.description:
        lines.append(f"  description  {entry.description}")
    if entry.license:
        lines.append(f"  license      {entry.license}")
    for what, file in (("weights", entry.weights), ("tokenizer", entry.tokenizer)):
        lines.append(f"  {what:<12} blake3 {file.blake3}  {file.size:,} bytes")
        lines.extend(f"  {'':<12} {url}" for url in file.urls)
    status = f"retired at height {entry.retired_height}" if entry.retired else "active"
    lines.append(f"  status       {status} (registered at height {entry.registered_height})")
    lines.append(f"  certificate  {certificate_line(model.certificate, quorum, validators)}")
    return lines
