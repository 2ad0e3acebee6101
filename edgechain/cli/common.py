"""Helpers shared by the subcommands: reading the user's files with clean errors."""

from __future__ import annotations

from pathlib import Path

from edgechain.errors import InputError, InvalidText


def read_file(path: str | Path, what: str, error: type[InputError] = InputError) -> bytes:
    """The bytes of ``path``; ``error`` (one line naming ``what`` and the path) if unreadable."""
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} not found: {p}") from None
    except IsADirectoryError:
        raise error(f"{what} is a directory, not a file: {p}") from None
    except OSError as err:
        raise error(f"cannot read {what} {p}: {err.strerror or err}") from None


def read_text_file(path: str | Path, what: str) -> str:
    """The UTF-8 text of ``path``; InvalidText naming the first bad byte if it is not UTF-8."""
    data = read_file(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidText(
            f"{what} {path} is not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})"
        ) from None
