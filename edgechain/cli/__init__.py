"""The ``edgechain`` command line.

Subcommands live one per module in this package and are registered in :data:`COMMANDS`: to add
one, write a module with ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``execute(args) -> int``
and append its module name there. A group of sub-subcommands (``net up``, ``model show``) has
``EXAMPLES`` and ``add_subcommands(subparsers)`` instead (``network_options.add_subcommand``
registers each one with its handler).

Errors a user can cause (``EdgechainError``) are printed as one line ``error: <message>`` and
the process exits with the error's ``exit_code``; with ``--json``, ``{"error": {"code",
"class", "message"}}`` is printed on stdout as well.

Global options (``--dir``, ``--chain``, ``--json``; declared once in
:mod:`edgechain.cli.global_options`) are accepted before the subcommand as well as after it:
``edgechain --dir D net status`` is ``edgechain net status --dir D``. A command declares them
with ``network_options.add_dir_option`` / ``add_json_option`` (a network command's
``add_subcommand`` adds both); one that does not take them refuses them in either place.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shlex
import sys
from collections.abc import Sequence
from typing import NoReturn

from edgechain import __version__
from edgechain.cli.global_options import add_global_options, refused
from edgechain.errors import EdgechainError, QuorumNotReached, UsageError

#: Module names of the subcommands, in the order ``--help`` lists them.
COMMANDS: list[str] = [
    "edgechain.cli.run",
    "edgechain.cli.synth_model",
    "edgechain.cli.quantize",
    "edgechain.cli.convert",
    "edgechain.cli.bench",
    "edgechain.cli.net",
    "edgechain.cli.wallet",
    "edgechain.cli.model",
    "edgechain.cli.generate",
    "edgechain.cli.receipt",
    "edgechain.cli.story",
    "edgechain.cli.app",
    "edgechain.cli.chain",
    "edgechain.cli.serve",
]


_EPILOG = """\
a first session (see `edgechain COMMAND --help` for each):
  edgechain net up --dir D                      a local network of 4 mock validators
  edgechain model publish NAME --weights F --weights-url URL --tokenizer T --tokenizer-url URL
  edgechain generate --model NAME -i "Once upon a time"
  edgechain chain show                          blocks, operations, who signed
  edgechain serve --port 8080                   GraphQL and GraphiQL, SSE token streams

--dir and --json go before or after the command (`edgechain --dir D net status`).
--dir defaults to $EDGECHAIN_DIR, else ~/.local/share/edgechain/net.
exit codes: 0 ok, 1 internal error, 2 usage, 3 input file or text, 4 chain, 5 contract
rejected, 6 service (model, fetch, hash), 7 generation (prompt, context, trap, timeout)
"""


#: Set while ``main`` runs with ``--json`` among its arguments: usage errors are JSON too.
_json_errors = False


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one ``error: ...`` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        message = f"{message} (see `{self.prog} --help`)"
        if _json_errors:
            print_error_json(UsageError.exit_code, UsageError.__name__, message)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(UsageError.exit_code)


def print_error_json(code: int, kind: str, message: str) -> None:
    """``{"error": {"code", "class", "message"}}`` on stdout (``--json``'s failure record)."""
    _flush_quietly()
    json.dump({"error": {"code": code, "class": kind, "message": message}}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    _flush_quietly()


def _check_global_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a global option given before a command that does not take it."""
    flag = refused(args)
    if flag is not None:
        name = " ".join(
            p for p in (args.command, getattr(args, "subcommand", None)) if p is not None
        )
        parser.error(f"`edgechain {name}` takes no {flag} option")


def build_parser() -> CliParser:
    """The top-level parser with every registered subcommand."""
    parser = CliParser(
        prog="edgechain",
        description="A Linera-style contract/service simulator for ML at the edge.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgechain {__version__}")
    add_global_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CliParser)
    subparsers.required = True
    from edgechain.cli.network_options import add_group, run_subcommand

    for module_name in COMMANDS:
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        if hasattr(module, "add_subcommands"):
            module.add_subcommands(add_group(sub, module.EXAMPLES))
            sub.set_defaults(handler=run_subcommand)
        else:
            module.add_arguments(sub)
            sub.set_defaults(handler=module.execute)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script passes it to sys.exit)."""
    global _json_errors
    arguments = list(sys.argv[1:] if argv is None else argv)
    _json_errors = "--json" in arguments
    try:
        return _main(arguments)
    finally:
        _json_errors = False


def _main(arguments: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(arguments)
    _check_global_options(parser, args)
    try:
        return int(args.handler(args) or 0)
    except EdgechainError as err:
        message = str(err) + _what_to_do(err, args)
        if args.json:
            print_error_json(err.exit_code, type(err).__name__, message)
        _flush_quietly()
        print(f"error: {message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        if args.json:
            print_error_json(130, "Interrupted", "interrupted")
        _flush_quietly()
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`edgechain run ... | head`): not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _what_to_do(err: EdgechainError, args: argparse.Namespace) -> str:
    """The command that fixes ``err``, when the CLI knows one ('' otherwise)."""
    if isinstance(err, QuorumNotReached) and getattr(args, "faulty", None) is None:
        # (with --faulty the faults were this command's own: nothing saved to undo)
        where = f" --dir {shlex.quote(str(args.dir))}" if getattr(args, "dir", None) else ""
        return (
            "; to make every validator honest again: "
            f"edgechain net up{where} --faulty ''"
        )
    return ""


def _flush_quietly() -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
