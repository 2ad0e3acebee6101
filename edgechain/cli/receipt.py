"""``edgechain receipt verify``: replay a generation receipt against a network directory.

The certificate is checked against the committee (exit 4 if it fails), the weights are taken
from the cache or fetched by their certified hash, the generation is replayed on the chosen
engine and every token compared: exit 0 when all match, else exit 7 naming the field or the
first token that differs (service/receipt.py; the file format: docs/receipts.md).
"""

from __future__ import annotations

import argparse
from typing import Any

from edgechain.cli.network_options import (
    add_allow_host_option,
    add_engine_option,
    add_subcommand,
    open_engine_client,
)
from edgechain.cli.render import print_result

NAME = "receipt"
HELP = "verify a generation receipt by replaying it on a certified model"
EXAMPLES = (
    "  edgechain generate --model stories260K -i 'Once' -t 1.0 -n 40 --receipt r.json\n"
    "  edgechain receipt verify r.json --engine native"
)


def add_subcommands(subparsers: Any) -> None:
    """Register ``receipt verify``."""
    verify = add_subcommand(
        subparsers,
        "verify",
        "check a receipt's certificate and seed, replay it and compare every token",
        "edgechain generate --model stories260K -i Once -n 40 --receipt r.json\n"
        "  edgechain receipt verify r.json  # also from a copy of the network: --dir COPY",
        receipt_verify,
    )
    verify.add_argument("file", metavar="FILE", help="the receipt (from generate --receipt)")
    add_engine_option(verify, "replay on (default wasm)")
    add_allow_host_option(verify)


def receipt_verify(args: argparse.Namespace) -> int:
    from edgechain.service.receipt import Receipt, verify_receipt

    receipt = Receipt.load(args.file)
    with open_engine_client(args) as client:
        result = verify_receipt(receipt, client)
    value = {
        "verified": True,
        "receipt_hash": result.receipt_hash,
        "model": result.model,
        "version": result.version,
        "tokens": result.tokens,
        "engine": result.engine,
        "certificate_height": result.certificate_height,
        "signers": result.signers,
    }
    text = (
        f"verified: receipt {result.receipt_hash}\n"
        f"  model        {result.model} version {result.version}, certified at height "
        f"{result.certificate_height} by {', '.join(result.signers)}\n"
        f"  replay       {result.tokens} tokens on {result.engine}, every one matches "
        f"({result.seconds:.2f} s)"
    )
    return print_result(args.json, value, (text,))
