"""``edgechain app``: applications you write with edgechain.sdk: new, publish, create, list,
show, call, query (Linera's ``project new``, ``publish-module``, ``create-application``,
``publish-and-create``; docs/sdk.md)."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgechain.chain.modules import CreatedApplication, module_id
from edgechain.cli.network_options import add_subcommand, open_client
from edgechain.cli.render import certificate_line, print_result
from edgechain.client import Client
from edgechain.errors import InvalidQuery, UsageError
from edgechain.sdk.project import new_project
from edgechain.user_applications import PublishedModule, file_list, module_files, parse_json

NAME = "app"
HELP = "applications you write (edgechain.sdk): new, publish, create, list, show, call, query"
EXAMPLES = (
    "  edgechain app new counter\n"
    "  edgechain app create counter --argument 1\n"
    "  edgechain app call counter '{\"Increment\": {\"value\": 2}}'\n"
    "  edgechain app query counter '{ value steps }'\n"
    "  edgechain app list"
)


def add_subcommands(subparsers: Any) -> None:
    """Register ``app new|publish|create|list|show|call|query``."""
    new = add_subcommand(
        subparsers,
        "new",
        "write a new application project (ABI, state, contract, service and a test)",
        "edgechain app new tally",
        app_new,
    )
    new.add_argument("name", metavar="NAME", help="the project's name (a Python identifier)")
    new.add_argument(
        "--path", metavar="DIR", default=".", help="where to write it (default: here)"
    )

    publish = add_subcommand(
        subparsers,
        "publish",
        "check a project loads as validators will load it, then publish it as a module",
        "edgechain app new board && edgechain app publish board",
        app_publish,
    )
    publish.add_argument("path", metavar="PATH", help="the project's package directory")

    create = add_subcommand(
        subparsers,
        "create",
        "create an application from a module id, or from a project (published first if needed)",
        "edgechain app new meter && edgechain app create meter --parameters "
        "'{\"max_step\": 5}' --argument 0",
        app_create,
    )
    create.add_argument(
        "module", metavar="MODULE_OR_PATH", help="a module id (hex) or a project directory"
    )
    create.add_argument(
        "--parameters", metavar="JSON", default=None, help="the application's parameters"
    )
    create.add_argument(
        "--argument", metavar="JSON", default=None, help="the instantiation argument"
    )

    add_subcommand(
        subparsers, "list", "list the applications created on the chain",
        "edgechain app list --json", app_list,
    )  # fmt: skip

    show = add_subcommand(
        subparsers,
        "show",
        "show an application: its module, parameters and files",
        "edgechain app new gauge && edgechain app create gauge --argument 0 && "
        "edgechain app show gauge",
        app_show,
    )
    _add_app_argument(show)

    call = add_subcommand(
        subparsers,
        "call",
        "propose an operation to an application; prints its response",
        "edgechain app new clicks && edgechain app create clicks --argument 0 && "
        "edgechain app call clicks '{\"Increment\": {\"value\": 1}}'",
        app_call,
    )
    _add_app_argument(call)
    call.add_argument("operation", metavar="JSON", help='the operation: {"Name": {fields}}')

    query = add_subcommand(
        subparsers,
        "query",
        "send a GraphQL request to an application's service (mutations schedule operations)",
        "edgechain app new score && edgechain app create score --argument 3 && "
        "edgechain app query score '{ value }'",
        app_query,
    )
    _add_app_argument(query)
    query.add_argument("graphql", metavar="GRAPHQL", help="the GraphQL query or mutation")
    query.add_argument("--variables", metavar="JSON", default=None, help="its variables")


def _add_app_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "app",
        metavar="APP",
        help="an application id, a unique prefix of one, or a project directory (its module's "
        "latest application)",
    )


def _resolve(client: Client, text: str, elsewhere: bool = False) -> CreatedApplication:
    """APP: a project directory names the latest application of its module (``elsewhere``: on
    this chain, else created on another)."""
    if Path(text).is_dir():
        module = module_id(file_list(module_files(text)))
        created = [a for a in client.applications() if a.module == module]
        if not created and elsewhere:
            created = [
                a
                for chain in client.network.chains()
                for a in client.applications(chain=chain.name)
                if a.module == module and a.height >= 0
            ]
        if not created:
            raise UsageError(
                f"no application of the project {text} yet: `edgechain app create {text}`"
            )
        return created[-1]
    return client.application(text)


@contextlib.contextmanager
def _open_app(args: argparse.Namespace) -> Iterator[tuple[Client, CreatedApplication]]:
    """The client and the application ``args.app`` names (show, call and query)."""
    with open_client(args) as client:
        yield client, _resolve(client, args.app)


def _origin(app: CreatedApplication) -> str:
    # Applications learnt from another chain (a message, UseApplication) record height -1.
    return f"created at {app.height}" if app.height >= 0 else "created on another chain"


def app_new(args: argparse.Namespace) -> int:
    root = new_project(args.name, args.path)
    return print_result(
        args.json,
        {"path": str(root)},
        (
            f"wrote {root}/ (__init__.py: the ABI; state.py, contract.py, service.py; tests/)",
            f"next: edgechain app create {root} --argument 0   (or: pytest {root}/tests)",
        ),
    )


def app_publish(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        published = client.publish_module(args.path)
    value = {
        "module_id": published.module_id.hex(),
        "files": [path for path, _, _ in published.files],
        "blocks": published.blocks,
        "unchanged": published.unchanged,
    }
    return print_result(args.json, value, _published_lines(published))


def _published_lines(published: PublishedModule) -> Iterator[str]:
    state = (
        "already published" if published.unchanged else f"published in {published.blocks} blocks"
    )
    yield f"module {published.module_id.hex()} ({state})"
    for path, blob, size in published.files:
        yield f"  {path:<24} blob {blob.hex()[:16]}  {size:,} bytes"


def app_create(args: argparse.Namespace) -> int:
    parameters = parse_json(args.parameters, "--parameters")
    argument = parse_json(args.argument, "--argument")
    with open_client(args) as client:
        module: bytes | str = args.module
        if Path(args.module).is_dir():
            module = client.publish_module(args.module).module_id
        created = client.create_application(module, parameters, argument)
        line = certificate_line(created.certificate, client.network.committee)
    value = {
        "application_id": created.application_id.hex(),
        "module_id": created.module_id.hex(),
        "certificate": created.certificate.to_json(),
    }
    return print_result(
        args.json,
        value,
        (
            f"application {created.application_id.hex()}",
            f"  module       {created.module_id.hex()}",
            f"  certificate  {line}",
        ),
    )


def _app_json(app: CreatedApplication) -> dict[str, Any]:
    return {
        "application_id": app.app_id.hex(),
        "module_id": app.module.hex(),
        "parameters": app.parameters,
        "created_height": app.height,
    }


def app_list(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        apps = client.applications()
    return print_result(args.json, [_app_json(a) for a in apps], _list_lines(apps))


def _list_lines(apps: list[CreatedApplication]) -> Iterator[str]:
    if not apps:
        yield "no applications created yet (`edgechain app new NAME`, then `app create NAME`)"
    for app in apps:
        yield f"{app.app_id.hex()}  module {app.module.hex()[:16]}  {_origin(app)}"


def app_show(args: argparse.Namespace) -> int:
    with _open_app(args) as (client, app):
        files = client.chain.application("applications").module_files(app.module) or []
    value = {**_app_json(app), "files": [path for path, _, _ in files]}
    return print_result(args.json, value, _show_lines(app, files))


def _show_lines(app: CreatedApplication, files: list[tuple[str, bytes, int]]) -> Iterator[str]:
    yield f"application {app.app_id.hex()}"
    yield f"  module       {app.module.hex()}"
    yield f"  origin       {_origin(app)}"
    yield f"  parameters   {json.dumps(app.parameters)}"
    for path, blob, size in files:
        yield f"  file         {path:<20} blob {blob.hex()[:16]}  {size:,} bytes"


def app_call(args: argparse.Namespace) -> int:
    operation = parse_json(args.operation, "the operation")
    with open_client(args) as client:
        # An id may name an application created on another chain: the call brings it here.
        is_project = Path(args.app).is_dir()
        target = _resolve(client, args.app, elsewhere=True).app_id if is_project else args.app
        response, certificate = client.call_application(target, operation)
        line = certificate_line(certificate, client.network.committee)
    value = {"response": response, "certificate": certificate.to_json()}
    return print_result(args.json, value, (json.dumps(response), f"  certificate  {line}"))


def app_query(args: argparse.Namespace) -> int:
    variables = parse_json(args.variables, "--variables")
    with _open_app(args) as (client, app):
        request = {"query": args.graphql, "variables": variables}
        body = client.query_application(app.app_id, request)
    if "errors" in body:
        raise InvalidQuery("; ".join(error["message"] for error in body["errors"]))
    print(json.dumps(body, indent=None if args.json else 2))
    return 0
