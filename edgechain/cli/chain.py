"""``edgechain chain``: open chains, take their inboxes, read and re-verify certified blocks."""

from __future__ import annotations

import argparse
import datetime
import itertools
from collections.abc import Iterator
from typing import Any

from edgechain.chain.blobs import APPLICATION_NAME as BLOBS
from edgechain.chain.blobs import PublishDataBlob, published_blobs
from edgechain.chain.certificate import CertifiedBlock
from edgechain.chain.messages import IncomingBundle, Message
from edgechain.chain.network import ExpectedHead, VerifyReport
from edgechain.cli.common import bounded_int
from edgechain.cli.network_options import add_subcommand, open_client
from edgechain.cli.render import print_result
from edgechain.contract.registry import APPLICATION_NAME

NAME = "chain"
HELP = "open chains, take their inboxes, show their certified blocks, re-verify all of them"
EXAMPLES = (
    "  edgechain chain open carol\n"
    "  edgechain chain inbox --chain bob\n"
    "  edgechain chain process-inbox --chain bob\n"
    "  edgechain chain show\n  edgechain chain show 0 --json\n  edgechain chain verify"
)


def add_subcommands(subparsers: Any) -> None:
    """Register ``chain open``, ``inbox``, ``process-inbox``, ``show`` and ``verify``."""
    opened = add_subcommand(
        subparsers,
        "open",
        "open a new chain, owned by a new key the wallet keeps (or by --owner)",
        "edgechain chain open carol",
        chain_open,
    )
    opened.add_argument("name", metavar="NAME", help="the chain's name (letters, digits, _ -)")
    opened.add_argument(
        "--owner",
        metavar="KEY",
        default=None,
        help="someone else's public key (64 hex digits): the chain is theirs, this wallet "
        "cannot propose its blocks",
    )
    add_subcommand(
        subparsers,
        "inbox",
        "list the certified messages waiting for the chain's next block",
        "edgechain chain inbox --chain bob --json",
        chain_inbox,
    )
    add_subcommand(
        subparsers,
        "process-inbox",
        "certify a block that takes the chain's inbox (its owner only)",
        "edgechain chain process-inbox --chain bob",
        chain_process_inbox,
    )
    show = add_subcommand(
        subparsers,
        "show",
        "list certified blocks: hash, operations and the validators that signed each",
        "edgechain chain show 1 --json",
        chain_show,
    )
    show.add_argument(
        "height",
        nargs="?",
        type=bounded_int(0, 2**63 - 1),
        default=None,
        metavar="HEIGHT",
        help="one block only",
    )

    verify = add_subcommand(
        subparsers,
        "verify",
        "re-verify every stored block: hash links, certificates against the committee, state",
        "edgechain chain verify --json",
        chain_verify,
    )
    verify.add_argument(
        "--expect-head",
        metavar="HEIGHT:HASH",
        default=None,
        help="also check the chain still holds this head (as `net status` printed it): "
        "a chain cut back below it, or with another block at that height, fails (exit 4)",
    )


def chain_open(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        chain = client.open_chain(args.name, args.owner)
        record = {"chain": chain.name, "chain_id": chain.id.hex(), "owner": chain.owner.hex()}
        return print_result(
            args.json,
            record,
            (
                f"opened chain {chain.name} ({chain.id.hex()})",
                f"  owner {chain.owner.hex()}",
                f"  act on it with --chain {chain.name}",
            ),
        )


def chain_inbox(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        bundles = client.inbox()
        names = {c.id: c.name for c in client.network.chains()}
        value = [_bundle_json(b, names) for b in bundles]
        return print_result(args.json, value, _inbox_lines(client.chain.name, bundles, names))


def _inbox_lines(
    chain: str, bundles: list[IncomingBundle], names: dict[bytes, str]
) -> Iterator[str]:
    count = sum(len(b.messages) for b in bundles)
    yield f"chain {chain}: {count} message(s) waiting in {len(bundles)} bundle(s)"
    for bundle in bundles:
        origin = names.get(bundle.origin, bundle.origin.hex()[:16])
        yield f"  from {origin} block {bundle.height}: {len(bundle.messages)} message(s)"


def chain_process_inbox(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        taken = client.inbox()
        certificate = client.process_inbox()
        value = {
            "chain": client.chain.name,
            "bundles": len(taken) if certificate is not None else 0,
            "height": None if certificate is None else certificate.height,
            "signers": [] if certificate is None else certificate.signers,
        }
        line = (
            f"chain {client.chain.name}: the inbox is empty, no block added"
            if certificate is None
            else f"chain {client.chain.name}: block {certificate.height} took {len(taken)} "
            f"bundle(s), signed by {', '.join(certificate.signers)}"
        )
        return print_result(args.json, value, (line,))


def _bundle_json(bundle: IncomingBundle, names: dict[bytes, str]) -> dict[str, Any]:
    return {
        "origin": bundle.origin.hex(),
        "origin_chain": names.get(bundle.origin),
        "height": bundle.height,
        "block_hash": bundle.block_hash.hex(),
        "messages": [_message_json(m) for m in bundle.messages],
    }


def _message_json(message: Message) -> dict[str, Any]:
    return {
        "recipient": message.recipient.hex(),
        "seq": message.seq,
        "application_id": message.app_id.hex(),
        "tracked": message.tracked,
        "bouncing": message.bouncing,
        "authenticated_signer": None if message.signer is None else message.signer.hex(),
        "payload": message.payload,  # print_json writes its bytes as hex
    }


def chain_show(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        chain = client.chain
        names = {
            chain.app_id(APPLICATION_NAME): APPLICATION_NAME,
            chain.app_id(BLOBS): BLOBS,
        }
        # Up to the height verified on open, so the list matches the header even while
        # another process appends blocks.
        blocks = (
            list(client.blocks(0, chain.height))
            if args.height is None
            else [chain.block(args.height)]
        )
        quorum, n = client.network.committee.quorum, len(client.network.committee.members)
        value = {
            "chain": chain.name,
            "chain_id": chain.id.hex(),
            # One word each: a height is a block's position (the head's here); the count of
            # blocks is the length of the list when it is not narrowed.
            "head_height": chain.height - 1 if chain.height else None,
            "quorum": quorum,
            "validators": n,
            "blocks": [_block_json(b, names) for b in blocks],
        }
        heading = f"chain {chain.name} ({chain.id.hex()}): {chain.height} certified blocks"
        lines = (line for b in blocks for line in _block_lines(b, names, quorum, n))
        return print_result(args.json, value, itertools.chain((heading,), lines))


def chain_verify(args: argparse.Namespace) -> int:
    expected = None if args.expect_head is None else ExpectedHead.parse(args.expect_head)
    with open_client(args) as client:
        report = client.verify(expected)
    value = {
        "ok": True,
        "chains": report.chains,
        "blocks": report.blocks,
        "seconds": report.seconds,
        "blobs": report.blobs,
        "expected_head": None if expected is None else str(expected),
    }
    return print_result(args.json, value, _verify_lines(report, expected))


def _verify_lines(report: VerifyReport, expected: ExpectedHead | None) -> Iterator[str]:
    yield (
        f"ok: {report.blocks} blocks on {report.chains} chain(s) verified in "
        f"{report.seconds:.3f} s (hash links, certificates, state hashes)"
    )
    if report.blobs:
        yield f"ok: {report.blobs} stored blobs match their ids"
    if expected is not None:
        yield f"ok: the chain still holds the head {expected}"


def _block_json(certified: CertifiedBlock, names: dict[bytes, str]) -> dict[str, Any]:
    block = certified.block
    return {
        "height": block.height,
        "block_hash": certified.block_hash.hex(),
        "previous_hash": None if block.previous_hash is None else block.previous_hash.hex(),
        "timestamp_us": block.timestamp_us,
        "signer": block.signer.hex(),
        "state_hash": block.state_hash.hex(),
        "operations": [
            {
                "application": names.get(op.app_id, op.app_id.hex()),
                "application_id": op.app_id.hex(),
                "name": op.name,
                "payload": op.payload,
            }
            for op in block.operations
        ],
        "blobs": [
            {"blob": b.blob.hex(), "size": b.size} for b in published_blobs(block.operations)
        ],
        "incoming_bundles": [_bundle_json(b, {}) for b in block.incoming],
        "outgoing_messages": [_message_json(m) for m in block.outgoing],
        "signers": certified.certificate.signers,
        "certificate": certified.certificate.to_json(),
    }


def _block_lines(
    certified: CertifiedBlock, names: dict[bytes, str], quorum: int, validators: int
) -> list[str]:
    block = certified.block
    when = datetime.datetime.fromtimestamp(block.timestamp_us / 1e6, datetime.UTC)
    lines = [
        f"block {block.height}  {certified.block_hash.hex()}",
        f"  time       {when.isoformat(timespec='seconds')}",
        f"  signed by  {', '.join(certified.certificate.signers)} "
        f"(quorum {quorum} of {validators})",
    ]
    blobs = published_blobs(block.operations)
    if blobs:
        size = sum(b.size for b in blobs)
        lines.append(f"  blobs      {len(blobs)} published ({size} bytes)")
        lines.extend(f"    {b.blob.hex()}  {b.size} bytes" for b in blobs)
    for bundle in block.incoming:
        lines.append(
            f"  received   {len(bundle.messages)} message(s) from "
            f"{bundle.origin.hex()[:16]} block {bundle.height}"
        )
    for message in block.outgoing:
        kind = "bounce" if message.bouncing else "message"
        lines.append(f"  sent       {kind} {message.seq} to {message.recipient.hex()[:16]}")
    for op in block.operations:
        if op.name == PublishDataBlob.operation_name:
            continue
        app = names.get(op.app_id, op.app_id.hex()[:16])
        lines.append(f"  operation  {app}: {op.name} {_summary(op.payload)}".rstrip())
    return lines


def _summary(payload: Any) -> str:
    """The fields a reader looks for in a registry operation; the rest is in --json."""
    if not isinstance(payload, dict):
        return repr(payload)
    if "name" not in payload or "version" not in payload:
        return ""  # another application's operation: its name says what it is
    parts = [f"{payload.get('name')} version {payload.get('version')}"]
    for what in ("weights", "tokenizer"):
        file = payload.get(what)
        if isinstance(file, dict):
            parts.append(f"{what} {file.get('blake3')}")
    return ", ".join(parts)
