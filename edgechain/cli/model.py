"""``edgechain model``: publish, list, show and retire models in the registry."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from edgechain.chain.certificate import Certificate
from edgechain.cli.network_options import (
    add_allow_host_option,
    add_subcommand,
    fetch_policy,
    open_client,
)
from edgechain.cli.progress import ProgressBar
from edgechain.cli.render import certificate_line, model_lines, print_result
from edgechain.client import Client, PublishedModel
from edgechain.contract.registry import CertifiedModel
from edgechain.errors import ModelNotFound

NAME = "model"
HELP = "publish, list, show and retire models in the chain's model registry, or follow another's"
EXAMPLES = (
    "  edgechain model publish stories260K \\\n"
    "      --weights stories260K.bin --tokenizer tok512.bin \\\n"
    "      --weights-url http://127.0.0.1:8000/stories260K.bin \\\n"
    "      --tokenizer-url http://127.0.0.1:8000/tok512.bin --version 2\n"
    "  edgechain model list\n"
    "  edgechain model show stories260K --json\n"
    "  edgechain model retire stories260K --version 1\n"
    "  edgechain model follow default --chain bob"
)


def add_subcommands(subparsers: Any) -> None:
    """Register ``model publish|list|show|retire``."""

    publish = add_subcommand(
        subparsers,
        "publish",
        "hash a model's weights and tokenizer, register them and wait for the certificate",
        "edgechain model publish stories260K --weights http://127.0.0.1:8000/stories260K.bin "
        "--tokenizer http://127.0.0.1:8000/tok512.bin --version 2",
        model_publish,
    )
    publish.add_argument("name", metavar="NAME", help="model name, e.g. stories260K")
    publish.add_argument(
        "--weights",
        required=True,
        metavar="PATH_OR_URL",
        help="llama2.c checkpoint or GGUF file: a local file, or an http(s) URL (downloaded "
        "to be hashed, and registered as where services fetch it)",
    )
    publish.add_argument(
        "--tokenizer",
        metavar="PATH_OR_URL",
        help="tokenizer.bin: file or URL (required with a llama2.c checkpoint; none with a "
        "GGUF file, which carries its tokenizer)",
    )
    publish.add_argument("--version", default="1", help="model version (default 1)")
    publish.add_argument(
        "--weights-url",
        action="append",
        default=[],
        metavar="URL",
        help="where services fetch the weights (repeatable; required with a local file)",
    )
    publish.add_argument(
        "--tokenizer-url",
        action="append",
        default=[],
        metavar="URL",
        help="where services fetch the tokenizer (repeatable; required with a local file)",
    )
    publish.add_argument(
        "--blobs",
        action="store_true",
        help="store the files on chain as blobs (local files; split within the network's "
        "resource policy; the URL options become optional; an interrupted publish resumes)",
    )
    publish.add_argument("--description", default=None, help="free text (<= 1024 characters)")
    publish.add_argument("--license", default=None, help="license name (<= 128 characters)")
    publish.add_argument(
        "--no-check-urls",
        dest="check_urls",
        action="store_false",
        help="certify the URLs without first fetching each one to check it serves the hashed "
        "bytes (for a host that is not up yet)",
    )
    add_allow_host_option(publish, "also allow downloading (and checking URLs) from HOST")

    list_ = add_subcommand(
        subparsers,
        "list",
        "list the registered models (active ones; --all adds retired ones)",
        "edgechain model list --all",
        model_list,
    )
    list_.add_argument("--all", action="store_true", help="include retired versions")

    show = add_subcommand(
        subparsers,
        "show",
        "show a model's certified entry: hashes, sizes, URLs, status and certificate",
        "edgechain model show stories260K --version 1",
        model_show,
    )
    show.add_argument("name", metavar="NAME", help="the model's name, as `model list` prints it")
    show.add_argument(
        "--version", default=None, help="a version (default: the latest active version)"
    )

    retire = add_subcommand(
        subparsers,
        "retire",
        "retire a model version: services refuse it from the next query on",
        "edgechain model retire stories260K --version 1",
        model_retire,
    )
    retire.add_argument("name", metavar="NAME", help="the model's name")
    retire.add_argument("--version", required=True, help="the version to retire")

    follow = add_subcommand(
        subparsers,
        "follow",
        "make this chain's registry follow another chain's: its models are certified here too "
        "once both chains have taken their inboxes",
        "edgechain model follow default --chain bob",
        model_follow,
    )
    follow.add_argument("source", metavar="CHAIN", help="the chain to follow (name, id, prefix)")


def model_publish(args: argparse.Namespace) -> int:
    progress = ProgressBar()
    with open_client(args, fetch_policy=fetch_policy(args)) as client:
        try:
            published = client.publish_model(
                args.name,
                weights=args.weights,
                tokenizer=args.tokenizer,
                version=args.version,
                weights_urls=args.weights_url,
                tokenizer_urls=args.tokenizer_url,
                description=args.description,
                license=args.license,
                progress=progress,
                blobs=args.blobs,
                check_urls=args.check_urls,
            )
        finally:
            progress.close()
        value = published.model.to_json()
        value["unchanged"] = published.unchanged
        value["checked_urls"] = [check.url for check in published.checked_urls]
        return print_result(args.json, value, _published_lines(client, args, published))


def _published_lines(
    client: Client, args: argparse.Namespace, published: PublishedModel
) -> Iterator[str]:
    if published.unchanged:
        yield (
            f"{args.name} version {args.version} is already certified with these bytes "
            f"(block {published.model.height}): nothing to publish"
        )
    else:
        yield f"published {args.name} version {args.version}"
        for check in published.checked_urls:
            yield (
                f"  checked      {check.url} serves the {check.what} "
                f"({check.size:,} bytes, BLAKE3 matches)"
            )
        if args.check_urls is False:
            yield "  not checked  its URLs (--no-check-urls)"
        if published.blobs is not None:
            b = published.blobs
            yield (
                f"  blobs        {b.chunks} chunks, {b.published} published now in "
                f"{b.blocks} blocks (the rest were on chain already)"
            )
    yield from _model_lines(client, published.model)


def model_list(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        models = client.models(include_retired=args.all)
    return print_result(args.json, [m.to_json() for m in models], _list_lines(models, args.all))


def _list_lines(models: list[CertifiedModel], include_retired: bool) -> Iterator[str]:
    if not models:
        yield (
            "no models registered" if include_retired else "no active models (--all shows retired)"
        )
        return
    yield f"{'NAME':<24} {'VERSION':<10} {'STATUS':<8} {'HEIGHT':>6}  WEIGHTS BLAKE3"
    for m in models:
        entry = m.entry
        status = "retired" if entry.retired else "active"
        yield (
            f"{entry.name:<24} {entry.version:<10} {status:<8} {m.height:>6}  "
            f"{entry.weights.blake3}"
        )


def model_show(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        model = _find(client, args.name, args.version)
        return print_result(args.json, model.to_json(), _model_lines(client, model))


def model_retire(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        certificate = client.retire_model(args.name, args.version)
        line = _certificate_line(client, certificate)
    value = {
        "name": args.name,
        "version": args.version,
        "certificate": certificate.to_json(),
        "signers": certificate.signers,
    }
    return print_result(
        args.json,
        value,
        (f"retired {args.name} version {args.version}", f"  certificate  {line}"),
    )


def model_follow(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        certificate = client.follow_registry(args.source)
        chain, source = client.chain.name, client.network.chain(args.source).name
        line = _certificate_line(client, certificate)
    value = {"chain": chain, "follows": source, "height": certificate.height}
    return print_result(
        args.json,
        value,
        (
            f"chain {chain}'s registry follows chain {source}'s",
            f"  certificate  {line}",
            f"next: `edgechain chain process-inbox --chain {source}`, then "
            f"`edgechain chain process-inbox --chain {chain}`",
        ),
    )


def _find(client: Client, name: str, version: str | None) -> CertifiedModel:
    """The latest active version, or the given version even when it is retired."""
    if version is None:
        return client.model(name)
    for model in client.models(include_retired=True):
        if (model.entry.name, model.entry.version) == (name, version):
            return model
    raise ModelNotFound(f"no model {name} version {version} in certified state")


def _certificate_line(client: Client, certificate: Certificate) -> str:
    return certificate_line(certificate, client.network.committee)


def _model_lines(client: Client, model: CertifiedModel) -> Iterator[str]:
    lines = model_lines(model, client.network.committee)
    weights_format = client.weights_format(model)
    lines.insert(
        1,
        "  weights as   "
        + (weights_format or "not known here yet (read from the header once fetched)"),
    )
    yield from lines
