"""The ``edgechain`` command line.

Subcommands live one per module in this package and are registered in :data:`COMMANDS`: to add
one, write a module with ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``execute(args) -> int``
and append its module name there. Errors a user can cause (``EdgechainError``) are printed as one
line ``error: <message>`` and the process exits with the error's ``exit_code``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from edgechain import __version__
from edgechain.errors import EdgechainError, UsageError

#: Module names of the subcommands, in the order ``--help`` lists them.
COMMANDS: list[str] = [
    "edgechain.cli.run",
    "edgechain.cli.synth_model",
    "edgechain.cli.quantize",
    "edgechain.cli.bench",
    "edgechain.cli.net",
    "edgechain.cli.model",
    "edgechain.cli.generate",
    "edgechain.cli.chain",
    "edgechain.cli.serve",
]


_EPILOG = """\
a first session (see `edgechain COMMAND --help` for each):
  edgechain net up --dir D                      a local network of 4 mock validators
  edgechain model publish NAME --weights F --weights-url URL --tokenizer T --tokenizer-url URL
  edgechain generate --model NAME -i "Once upon a time"
  edgechain chain show                          blocks, operations, who signed
  edgechain serve --port 8080                   GraphQL, query console, SSE token streams

--dir defaults to $EDGECHAIN_DIR, else ~/.local/share/edgechain/net.
exit codes: 0 ok, 1 internal error, 2 usage, 3 input file or text, 4 chain, 5 contract
rejected, 6 service (model, fetch, hash), 7 generation (prompt, context, trap, timeout)
"""


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one ``error: ...`` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(UsageError.exit_code)


def build_parser() -> CliParser:
    """The top-level parser with every registered subcommand."""
    parser = CliParser(
        prog="edgechain",
        description="A Linera-style contract/service simulator for ML at the edge.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgechain {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CliParser)
    subparsers.required = True
    for module_name in COMMANDS:
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.execute)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script passes it to sys.exit)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except EdgechainError as err:
        _flush_quietly()
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        _flush_quietly()
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`edgechain run ... | head`): not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _flush_quietly() -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
