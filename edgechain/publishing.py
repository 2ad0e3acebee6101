"""Publishing a model's files: hashing local files, downloading URLs, the file references a
``RegisterModel`` carries, and storing files as blobs (edgechain/blob_publishing.py).

Every file is parsed with the engine's rules before anything is proposed (the checkpoint's
header against its size, the tokenizer to its end, with the model's vocabulary size;
service/engine/model_files.py), and read once to be hashed: a URL while it downloads (the
parser reads the temporary file it streams through), a local file once for its BLAKE3 (with
``--blobs``, once for its chunks' ids and its BLAKE3 together).
"""

from __future__ import annotations

import os
import tempfile
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO, TypeVar

import blake3

from edgechain.blob_publishing import BlobPublication, plan_file, publish_chunks
from edgechain.chain.network import Chain
from edgechain.chain.policy import ResourcePolicy
from edgechain.contract.operations import FileRef, check_utf8
from edgechain.errors import InputError, UsageError
from edgechain.files import input_errors, open_regular
from edgechain.service.engine.gguf_header import GgufInfo
from edgechain.service.engine.model_files import (
    CheckpointHeader,
    Source,
    read_model_header,
    read_tokenizer,
)
from edgechain.service.fetch import Fetcher, FetchPolicy

__all__ = [
    "FileServer",
    "HashedFile",
    "LabelledProgress",
    "Progress",
    "blob_file_refs",
    "check_publish_text",
    "download_file",
    "hash_file",
    "is_url",
    "url_file_refs",
]

#: Called as ``progress(done_bytes, total_bytes)`` while a file is hashed.
Progress = Callable[[int, int], None]
#: Called as ``progress(label, done, total)`` ("hashing weights", "downloading tokenizer", ...).
LabelledProgress = Callable[[str, int, int | None], None]

_CHUNK = 1 << 20
_WHAT = ("weights", "tokenizer")

_Parsed = TypeVar("_Parsed")


@dataclass(frozen=True)
class HashedFile:
    """A file's BLAKE3 hash (hex) and size (``data``: its bytes, when a caller keeps them)."""

    blake3: str
    size: int
    data: bytes | None = None


class FileServer(typing.Protocol):
    """What serves a published model's files (e.g. a loopback WeightServer)."""

    def url(self, name: str) -> str: ...


def hash_file(path: str | os.PathLike[str], progress: Progress | None = None) -> HashedFile:
    """BLAKE3 of a local file, streamed in 1 MiB chunks. Raises InputError if unreadable."""
    path = Path(path)
    with open_regular(path) as f, input_errors(path):
        total = os.fstat(f.fileno()).st_size
        hasher = blake3.blake3()
        done = 0
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    if done == 0:
        raise InputError(f"{path}: the file is empty")
    return HashedFile(hasher.hexdigest(), done)


def download_file(
    url: str,
    policy: FetchPolicy | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    *,
    inspect: Callable[[BinaryIO], object] | None = None,
) -> HashedFile:
    """BLAKE3 and size of what ``url`` serves, under ``policy`` (host allow-list, size cap,
    stall rule). The body streams through a temporary file (deleted afterwards), hashed as it
    arrives, so memory stays bounded whatever the size; ``inspect(spool)`` (publish's parser)
    reads it before it is deleted. Raises FetchError."""
    with Fetcher(policy) as fetcher, tempfile.TemporaryFile(prefix="edgechain-") as spool:
        size, digest = fetcher.download_to(url, spool, progress=progress)
        if size == 0:
            raise InputError(f"{url}: the file is empty")
        if inspect is not None:
            inspect(spool)
    return HashedFile(digest, size)


def _labelled(
    progress: LabelledProgress | None, label: str
) -> Callable[[int, int | None], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(label, done, total)


def is_url(value: str) -> bool:
    """Whether a publish source is a URL (else a local path)."""
    return value.startswith(("http://", "https://"))


def check_publish_text(
    name: str,
    version: str,
    description: str | None,
    license: str | None,
    sources: tuple[str | os.PathLike[str], str | os.PathLike[str] | None],
    urls: tuple[Sequence[str], Sequence[str]],
) -> None:
    """Refuse what the operation would refuse once built (InvalidText), and empty sources,
    before anything is read, hashed or downloaded."""
    for what, value in (
        ("model name", name),
        ("model version", version),
        ("description", description),
        ("license", license),
    ):
        check_utf8(what, value)
    for what, source, more in zip(_WHAT, sources, urls, strict=True):
        if source is None:  # a GGUF file's tokenizer is inside it (checked once it is read)
            continue
        text = os.fspath(source)
        if not text:
            raise UsageError(f"{what}: give a file or an http(s) URL, not an empty string")
        if is_url(text):
            check_utf8(what, text)
        check_utf8(f"{what} URL", list(more))


#: RegisterModel's ``format`` for each kind of weights file.
LLAMA2C_FORMAT = "llama2c"
GGUF_FORMAT = "gguf"


def _tokenizer_source(
    parsed: CheckpointHeader | GgufInfo,
    sources: tuple[str | os.PathLike[str], str | os.PathLike[str] | None],
    urls: tuple[Sequence[str], Sequence[str]],
) -> str | os.PathLike[str] | None:
    """The tokenizer to publish beside the weights: none for a GGUF file (its tokenizer is
    inside: naming one is a UsageError), the given tokenizer.bin for a llama2.c checkpoint."""
    if isinstance(parsed, GgufInfo):
        if sources[1] is not None or urls[1]:
            raise UsageError(
                "tokenizer: a GGUF file carries its own tokenizer; publish it without one"
            )
        return None
    if sources[1] is None:
        raise UsageError("tokenizer: a llama2.c checkpoint needs its tokenizer.bin (--tokenizer)")
    return sources[1]


def url_file_refs(
    sources: tuple[str | os.PathLike[str], str | os.PathLike[str] | None],
    urls: tuple[Sequence[str], Sequence[str]],
    fetch_policy: FetchPolicy,
    progress: LabelledProgress | None,
) -> tuple[FileRef, FileRef, str]:
    """The weights' and tokenizer's FileRefs for a publish by URL, once both files parse, and
    the registration's format. A GGUF file is its own tokenizer: both refs are the file's."""
    weights_ref, header = _file_ref(
        "weights", sources[0], urls[0], fetch_policy, progress, read_model_header
    )
    tokenizer_source = _tokenizer_source(header, sources, urls)
    if tokenizer_source is None:
        return weights_ref, weights_ref, GGUF_FORMAT
    tokenizer_ref, _ = _file_ref(
        "tokenizer",
        tokenizer_source,
        urls[1],
        fetch_policy,
        progress,
        partial(read_tokenizer, model_vocab=header.vocab_size),
    )
    return weights_ref, tokenizer_ref, LLAMA2C_FORMAT


def blob_file_refs(
    chain: Chain,
    policy: ResourcePolicy,
    sources: tuple[str | os.PathLike[str], str | os.PathLike[str] | None],
    urls: tuple[Sequence[str], Sequence[str]],
    progress: LabelledProgress | None,
) -> tuple[FileRef, FileRef, BlobPublication, str]:
    """Store the local files as blobs on ``chain`` (resuming after the last certified chunk),
    once they parse; their FileRefs (manifests), what was published and the registration's
    format. A GGUF file is stored once and is its own tokenizer."""
    for what, source in zip(_WHAT, sources, strict=True):
        if source is None:
            continue
        if is_url(os.fspath(source)):
            raise UsageError(f"{what}: --blobs publishes local files, not a URL")
        _check_readable(source)  # the same one-line errors as a URL publish (missing, empty ...)
    header = read_model_header(os.fspath(sources[0]), os.fspath(sources[0]))
    tokenizer = _tokenizer_source(header, sources, urls)
    if tokenizer is not None:
        read_tokenizer(os.fspath(tokenizer), os.fspath(tokenizer), model_vocab=header.vocab_size)
    files = [(w, s, u) for w, s, u in zip(_WHAT, sources, urls, strict=True) if s is not None]
    planned = [
        plan_file(source, policy.chunk_size, more, _labelled(progress, f"hashing {what}"))
        for what, source, more in files
    ]
    publication = publish_chunks(chain, planned, policy, progress)
    if tokenizer is None:
        return planned[0].ref, planned[0].ref, publication, GGUF_FORMAT
    return planned[0].ref, planned[1].ref, publication, LLAMA2C_FORMAT


def _check_readable(path: str | os.PathLike[str]) -> None:
    """InputError (as :func:`hash_file` words it) unless ``path`` is a readable, non-empty
    file; reads one byte, so the file is hashed once, by the publish itself."""
    path = Path(path)
    with open_regular(path) as f, input_errors(path):
        empty = not f.read(1)
    if empty:
        raise InputError(f"{path}: the file is empty")


def _file_ref(
    what: str,
    source: str | os.PathLike[str],
    urls: Sequence[str],
    fetch_policy: FetchPolicy,
    progress: LabelledProgress | None,
    parse: Callable[[Source, str], _Parsed],
) -> tuple[FileRef, _Parsed]:
    """The file's FileRef, and what ``parse(content, label)`` made of it (before hashing a
    local file; a download is parsed from its temporary file once it is complete)."""
    source_str = os.fspath(source)
    if is_url(source_str):
        on_download = _labelled(progress, f"downloading {what}")
        parsed_box: list[_Parsed] = []
        hashed = download_file(
            source_str,
            fetch_policy,
            on_download,
            inspect=lambda spool: parsed_box.append(parse(spool, source_str)),
        )
        parsed = parsed_box[0]
        all_urls = [source_str, *[u for u in urls if u != source_str]]
    else:
        parsed = parse(source_str, source_str)
        hashed = hash_file(source_str, _labelled(progress, f"hashing {what}"))
        all_urls = list(urls)
        if not all_urls:
            raise UsageError(
                f"{what}: {source_str} is a local file; give --{what}-url (the URL services "
                "will fetch it from)"
            )
    return FileRef(hashed.blake3, hashed.size, tuple(all_urls)), parsed
