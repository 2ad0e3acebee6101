"""``edgechain serve``: the node service over HTTP (GraphQL per application, SSE token streams).

Serves the network in ``--dir`` on loopback until interrupted (Ctrl+C). ``--port 0`` picks a
free port; the first line on stdout says where it listens, then comes the access log (a line
per request) unless ``--quiet``.
"""

from __future__ import annotations

import argparse

from edgechain.cli.network_options import (
    add_allow_host_option,
    add_dir_option,
    add_engine_option,
    engine_options,
    fetch_policy,
    open_client,
)

NAME = "serve"
HELP = "serve the network's applications over HTTP (GraphQL, SSE token streams)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register serve's flags."""
    add_dir_option(parser)
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0 = any)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1); requests must name it or a loopback "
        "name (localhost, 127.0.0.1, [::1]) with the port as their Host and Origin",
    )
    add_engine_option(parser)
    add_allow_host_option(parser)
    parser.add_argument(
        "--quiet", action="store_true", help="no access log (one line per request on stdout)"
    )


def execute(args: argparse.Namespace) -> int:
    """Open the network and serve it; returns the exit code."""
    from edgechain.node.server import bind_listening_socket, serve
    from edgechain.service.engine import open_engine
    from edgechain.service.engine.base import text_to_utf8

    text_to_utf8(args.host, "--host")  # undecodable argv bytes: InvalidText, not a TypeError
    # Fail on a taken port before the (slower) opening and re-verification of the network.
    bind_listening_socket(args.host, args.port).close()
    # The wasm engine is opened on the first generate query, so a node without the guest still
    # serves the registry; an explicitly chosen native engine must exist now.
    options = engine_options(args)
    engine = open_engine("native", **options) if args.engine == "native" else None
    client = open_client(args, engine=engine, fetch_policy=fetch_policy(args))
    serve(client, args.host, args.port, access_log=not args.quiet)
    return 0
