"""Helpers shared by the subcommands: the user's files, directories and numbers, cleanly refused."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgechain.errors import InputError, InvalidParameter, InvalidText
from edgechain.files import read_regular


def read_text_file(path: str | Path, what: str, max_bytes: int) -> str:
    """The UTF-8 text of the regular file ``path`` (at most ``max_bytes``); InputError naming
    ``what`` if it cannot be read, InvalidText naming the first bad byte if it is not UTF-8."""
    data = read_regular(path, what, InputError, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidText(
            f"{what} {path} is not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})"
        ) from None


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: a decimal integer from ``low`` to ``high`` (a usage error, exit 2,
    naming both bounds otherwise; SQLite and the engine take 64-bit integers at most)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def ensure_directory(path: Path, flag: str, *, create: bool = True) -> Path:
    """``path`` as a directory: InputError naming ``flag`` and why if it is something else or
    (with ``create``) cannot be created."""
    try:
        if path.exists() and not path.is_dir():
            raise InputError(f"{flag} {path} is not a directory")
        if create:
            path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create {flag} {path}: {err.strerror or err}") from None
    return path


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: the native engine's threads."""
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="threads splitting the native engine's matrix products (default "
        "$EDGECHAIN_THREADS, else the cores; the text is the same for any N)",
    )


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """``open_engine``'s options from ``--engine`` and ``--threads`` (InvalidParameter for
    ``--threads`` with the wasm guest, which runs one thread)."""
    threads = getattr(args, "threads", None)
    if threads is None:
        return {}
    if args.engine != "native":
        raise InvalidParameter("--threads applies to the native engine (--engine native)")
    return {"threads": threads}
