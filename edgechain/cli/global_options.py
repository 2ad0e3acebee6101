"""The global options ``--dir``, ``--chain`` and ``--json``, declared once.

Each is accepted before the command (the top-level parser sets its default) and after it: a
command that takes it adds its own copy, which leaves the value alone unless it is given there
(SUPPRESS), so ``edgechain --dir D net status`` and ``edgechain net status --dir D`` agree.
Given before a command that does not take it, it is refused (:func:`refused`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GlobalOption:
    flag: str
    #: The attribute a command that takes the option sets.
    taken_by: str
    #: The top-level parser's help and default.
    help_before: str
    default: Any = None
    #: ``add_argument``'s other keywords, the same in both places.
    keywords: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    def add_before(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            self.flag, default=self.default, help=self.help_before, **self.keywords
        )

    def add_after(self, parser: argparse.ArgumentParser, help: str) -> None:  # noqa: A002
        parser.add_argument(self.flag, default=argparse.SUPPRESS, help=help, **self.keywords)
        parser.set_defaults(**{self.taken_by: True})

    def given(self, args: argparse.Namespace) -> bool:
        return getattr(args, self.dest) != self.default


DIR = GlobalOption(
    "--dir",
    "takes_dir",
    "network directory, for the commands that use one (also accepted after them)",
    keywords={"type": Path, "metavar": "D"},
)
CHAIN = GlobalOption(
    "--chain",
    "takes_dir",
    "the chain a network command acts on (name, id or id prefix; default: the wallet's default "
    "chain); also accepted after the command",
    keywords={"metavar": "CHAIN"},
)
JSON = GlobalOption(
    "--json",
    "takes_json",
    "JSON output, for the commands that have it (also accepted after them); a failure prints "
    '{"error": {"code", "class", "message"}}',
    default=False,
    keywords={"action": "store_true"},
)
GLOBAL_OPTIONS = (DIR, CHAIN, JSON)


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """The top-level parser's copies."""
    for option in GLOBAL_OPTIONS:
        option.add_before(parser)


def refused(args: argparse.Namespace) -> str | None:
    """The first global option given before a command that does not take it, if any."""
    for option in GLOBAL_OPTIONS:
        if option.given(args) and not getattr(args, option.taken_by, False):
            return option.flag
    return None
