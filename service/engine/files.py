"""Reading the user's model files: one-line input errors, and a file's identity across a load.

A file that cannot be opened or read becomes one :class:`~edgechain.errors.InputError` line (the
subclass the caller names) instead of an OSError; a checkpoint read by an engine must still be the
version it was when opened (size, inode, mtime, ctime), or the load is an InvalidCheckpoint.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import BinaryIO

from edgechain.errors import InputError, InvalidCheckpoint, InvalidTokenizer
from edgechain.files import TOKENIZER_MAX_BYTES, input_errors, open_regular, read_regular

__all__ = [
    "TOKENIZER_MAX_BYTES",
    "input_errors",
    "open_input",
    "read_exactly",
    "read_tokenizer_file",
    "unchanged_checkpoint",
]

#: What identifies a file's version: (device, inode, size, mtime_ns, ctime_ns). ctime too:
#: restoring the mtime with utime() after an edit still moves the ctime.
FileIdentity = tuple[int, int, int, int, int]


def open_input(
    path: str | os.PathLike[str],
    what: str,
    error: type[InputError],
    max_bytes: int | None = None,
) -> io.FileIO:
    """``path`` opened unbuffered for reading if it is a regular file (of at most
    ``max_bytes``); ``error`` (one line naming ``what``) if not (never blocks on a FIFO)."""
    return open_regular(path, what, error, max_bytes)


#: A GGUF file's first bytes (it carries weights and tokenizer in one file).
GGUF_MAGIC = b"GGUF"


def is_gguf(f: io.FileIO) -> bool:
    """Whether the open file ``f`` starts with the GGUF magic (its position is unchanged)."""
    return os.pread(f.fileno(), len(GGUF_MAGIC), 0) == GGUF_MAGIC


def tokenizer_for(gguf: bool, tokenizer: str | os.PathLike[str] | None) -> bytes:
    """The tokenizer bytes to load with a model file: none for a GGUF file (it carries its
    own; naming one is an error), the tokenizer.bin's for a llama2.c checkpoint."""
    if gguf:
        if tokenizer is not None:
            raise InvalidTokenizer(
                f"a GGUF file carries its own tokenizer: do not pass one ({tokenizer})"
            )
        return b""
    if tokenizer is None:
        raise InvalidTokenizer("a llama2.c checkpoint needs its tokenizer.bin")
    return read_tokenizer_file(tokenizer)


def read_tokenizer_file(path: str | os.PathLike[str]) -> bytes:
    """A tokenizer's bytes (a regular file of at most :data:`TOKENIZER_MAX_BYTES`)."""
    return read_regular(path, "tokenizer", InvalidTokenizer, TOKENIZER_MAX_BYTES)


def read_exactly(f: BinaryIO | io.FileIO, size: int) -> bytes:
    """Up to ``size`` bytes from ``f`` (fewer only at the end of the file)."""
    chunks = []
    while size > 0:
        chunk = f.read(size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def file_identity(st: os.stat_result) -> FileIdentity:
    """The identity of a file version from its stat."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def check_unchanged(f: io.FileIO, before: FileIdentity, path: str | os.PathLike[str]) -> None:
    """InvalidCheckpoint if the open checkpoint ``f`` is no longer the version ``before``."""
    if file_identity(os.fstat(f.fileno())) != before:
        raise _changed(path)


def _changed(path: str | os.PathLike[str]) -> InvalidCheckpoint:
    return InvalidCheckpoint(f"checkpoint {path} changed while it was being loaded")


@contextlib.contextmanager
def unchanged_checkpoint(
    path: str | os.PathLike[str], *, by_path: bool = False
) -> Iterator[io.FileIO]:
    """The checkpoint ``path`` opened for the block, which loads it; when the block ends, an
    InvalidCheckpoint if the file changed meanwhile (callers that verified a file's hash rely
    on this). ``by_path``: the engine read the file by its path, not through this handle, so
    the path must still name the same version too."""
    with open_input(path, "checkpoint", InvalidCheckpoint) as f:
        before = file_identity(os.fstat(f.fileno()))
        yield f
        check_unchanged(f, before, path)
        if by_path:
            try:
                now: FileIdentity | None = file_identity(os.stat(path))
            except OSError:
                now = None
            if now != before:
                raise _changed(path)
