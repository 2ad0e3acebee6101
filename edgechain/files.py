"""The user's files, read and written safely: the one place every layer goes through.

Reading: a user's input (a prompt file, a receipt, a tokenizer, a checkpoint, a policy file,
network.json) must be a regular file. A FIFO would block the reader forever and a device
(``/dev/zero``) would fill memory, so the file is opened without blocking, checked with
``fstat`` and refused with one line unless it is a regular file; a size cap is checked before a
byte is read (and again while reading, for a file that grows meanwhile).

Writing: an output (a receipt, a quantized checkpoint, network.json) is written to a temporary
file in the destination's directory and renamed over the destination, and only over a regular
file or nothing: a device, a FIFO or a directory there is refused with one line (a rename would
silently turn ``/dev/full`` into a regular file and hide the write error).

Like :mod:`edgechain.errors`, this module names nothing else of edgechain, so chain/, contract/
and service/ may all use it (tests/test_layers.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from edgechain.errors import EdgechainError, InputError

MIB = 1024 * 1024
#: Size caps of the small inputs (the checkpoints have none: their header is checked against
#: their size instead). A prompt is bounded by the model's context long before 1 MiB.
PROMPT_FILE_MAX_BYTES = 1 * MIB
RECEIPT_MAX_BYTES = 16 * MIB  # a receipt holds a prompt, a text and token ids (docs/receipts.md)
TOKENIZER_MAX_BYTES = 64 * MIB  # llama2.c's 32,000-token tokenizer.bin is 424 KiB
CONFIG_MAX_BYTES = 1 * MIB  # network.json, a policy file

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words ("a FIFO", "a character device" ...)."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _named(path: str | os.PathLike[str], what: str | None) -> str:
    return f"{what} {path}" if what else f"{path}"


def input_error(
    err: OSError, path: str | os.PathLike[str], error: type[EdgechainError], what: str | None = None
) -> EdgechainError:
    """The one-line ``error`` for ``path`` that could not be read: "<what> not found: <path>"
    style when ``what`` names the file's role, "<path>: no such file" style otherwise."""
    reason = err.strerror or err
    if what is None:
        if isinstance(err, FileNotFoundError):
            return error(f"{path}: no such file")
        if isinstance(err, IsADirectoryError):
            return error(f"{path}: is a directory, not a file")
        return error(f"{path}: cannot read ({reason})")
    if isinstance(err, FileNotFoundError):
        return error(f"{what} not found: {path}")
    if isinstance(err, IsADirectoryError):
        return error(f"{what} is a directory, not a file: {path}")
    return error(f"cannot read {what} {path}: {reason}")


@contextlib.contextmanager
def input_errors(
    path: str | os.PathLike[str],
    error: type[EdgechainError] = InputError,
    what: str | None = None,
) -> Iterator[None]:
    """Turns an OSError raised in the block into :func:`input_error`'s one line."""
    try:
        yield
    except OSError as err:
        raise input_error(err, path, error, what) from None


def open_regular(
    path: str | os.PathLike[str],
    what: str | None = None,
    error: type[EdgechainError] = InputError,
    max_bytes: int | None = None,
) -> io.FileIO:
    """``path`` opened unbuffered for reading, if it is a regular file of at most ``max_bytes``;
    ``error`` (one line naming ``what`` and the path) otherwise. Never blocks on a FIFO."""
    with input_errors(path, error, what):
        # O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        with input_errors(path, error, what):
            info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise input_error(IsADirectoryError(), path, error, what)
        if not stat.S_ISREG(info.st_mode):
            raise error(
                f"{_named(path, what)}: is {file_kind(info.st_mode)}, not a regular file"
            )
        if max_bytes is not None and info.st_size > max_bytes:
            raise error(_too_large(path, what, info.st_size, max_bytes))
        with input_errors(path, error, what):
            os.set_blocking(fd, True)
            return io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def read_regular(
    path: str | os.PathLike[str],
    what: str | None = None,
    error: type[EdgechainError] = InputError,
    max_bytes: int | None = None,
) -> bytes:
    """The bytes of the regular file ``path`` (at most ``max_bytes``); ``error`` otherwise."""
    with open_regular(path, what, error, max_bytes) as f, input_errors(path, error, what):
        if max_bytes is None:
            return f.readall()
        data = f.read(max_bytes + 1) or b""
        while len(data) <= max_bytes and (more := f.read(max_bytes + 1 - len(data))):
            data += more
    if len(data) > max_bytes:  # it grew after the size check
        raise error(_too_large(path, what, len(data), max_bytes))
    return data


def _too_large(path: str | os.PathLike[str], what: str | None, size: int, cap: int) -> str:
    return f"{_named(path, what)}: over the {_bytes(cap)} limit ({size} bytes or more)"


def _bytes(n: int) -> str:
    return f"{n // MIB} MiB" if n % MIB == 0 else f"{n} bytes"


def write_atomically(
    path: str | os.PathLike[str],
    content: bytes | Callable[[BinaryIO], object],
    what: str,
    error: type[EdgechainError] = InputError,
) -> None:
    """Write ``content`` (bytes, or a function writing to a binary file) to ``path`` through a
    temporary file renamed over it: a reader sees the old file or the whole new one, never half.

    ``path`` must be a regular file or not exist (a symlink is followed and its target
    replaced); anything else is refused with one ``error`` line before a byte is written.
    """
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    mode = _replaceable_mode(target, path, what, error)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        created = 0o666 if mode is None else 0o600  # a new file gets the umask's permissions
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, created)
        with open(fd, "wb") as out:
            if isinstance(content, bytes):
                out.write(content)
            else:
                content(out)
            out.flush()
            if mode is not None:
                os.fchmod(out.fileno(), stat.S_IMODE(mode))  # the replaced file's permissions
        _replaceable_mode(target, path, what, error)  # still a regular file (or nothing)
        os.replace(temporary, target)
    except OSError as err:
        raise error(f"cannot write {what} {path}: {err.strerror or err}") from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def _replaceable_mode(
    target: Path, path: str | os.PathLike[str], what: str, error: type[EdgechainError]
) -> int | None:
    """The mode of the regular file at ``target`` (None if there is none); ``error`` if
    something else is there."""
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise error(f"cannot write {what} {path}: {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(
            f"cannot write {what} {path}: it is {file_kind(info.st_mode)}, not a regular file "
            "(an output replaces a regular file or creates one)"
        )
    return info.st_mode
