"""Files stored as on-chain blobs: cutting a local file into chunks, publishing the chunks in
as many blocks as the resource policy needs, and the manifest (a :class:`FileRef` with
``chunks``, contract/operations.py). Client work (reading the user's files, proposing blocks),
so it lives beside the client, not in the deterministic contract layer.

A manifest lists, in file order, each chunk's blob id (chain/blobs.py) and size, beside the whole
file's BLAKE3 and size. Publishing is resumable: a chunk already published on the chain (a
certified ``blobs`` record) is never sent again, so a publish interrupted at any point (even by
``kill -9``) starts again after the last certified chunk, and identical chunks (within a file,
across files and models) are stored once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import blake3

from edgechain.chain.blobs import APPLICATION_NAME as BLOBS
from edgechain.chain.blobs import PublishDataBlob, blob_id
from edgechain.chain.network import Chain
from edgechain.chain.policy import ResourcePolicy
from edgechain.contract.operations import FileRef
from edgechain.errors import InputError
from edgechain.files import open_regular

#: A generous estimate of a block's own bytes when it publishes blobs (ids, sizes, signatures).
BLOCK_OVERHEAD = 64 * 1024

Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class Chunk:
    """One chunk of a local file: where it is and the blob it becomes."""

    path: Path
    offset: int
    size: int
    blob: bytes

    def read(self) -> bytes:
        try:
            with open_regular(self.path) as f:
                f.seek(self.offset)
                data = f.read(self.size)
        except OSError as exc:
            raise InputError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        if len(data) != self.size or blob_id(data) != self.blob:
            raise InputError(f"{self.path} changed while it was being published")
        return data


@dataclass(frozen=True)
class PlannedFile:
    """A file cut into chunks: its manifest and where each chunk's bytes are."""

    ref: FileRef
    chunks: tuple[Chunk, ...]


def plan_file(
    path: str | os.PathLike[str],
    chunk_size: int,
    urls: Sequence[str] = (),
    progress: Callable[[int, int | None], None] | None = None,
) -> PlannedFile:
    """Read ``path`` once: each chunk's blob id and the whole file's BLAKE3."""
    path = Path(path)
    whole = blake3.blake3()
    chunks = []
    offset = 0
    try:
        with open_regular(path) as f:
            total = os.fstat(f.fileno()).st_size
            while data := f.read(chunk_size):
                whole.update(data)
                chunks.append(Chunk(path, offset, len(data), blob_id(data)))
                offset += len(data)
                if progress is not None:
                    progress(offset, total)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    manifest = tuple((c.blob, c.size) for c in chunks)
    return PlannedFile(FileRef(whole.hexdigest(), offset, tuple(urls), manifest), tuple(chunks))


@dataclass(frozen=True)
class BlobPublication:
    """What :func:`publish_chunks` did."""

    chunks: int  # chunks in the files
    published: int  # blobs this call published (the rest were on chain already, or repeats)
    blocks: int  # blocks this call certified


def publish_chunks(
    chain: Chain,
    files: Sequence[PlannedFile],
    policy: ResourcePolicy,
    progress: Progress | None = None,
) -> BlobPublication:
    """Publish every chunk of ``files`` not yet published on ``chain``, as many per block as
    ``policy`` allows; each block is certified (and stored) before the next is proposed."""
    service = chain.application(BLOBS)
    all_chunks = [c for f in files for c in f.chunks]
    todo: dict[bytes, Chunk] = {}
    for chunk in all_chunks:
        if chunk.blob not in todo and service.published(chunk.blob) is None:
            todo[chunk.blob] = chunk
    per_block = policy.blobs_per_block(BLOCK_OVERHEAD)
    pending = list(todo.values())
    blocks = 0
    done = 0
    for start in range(0, len(pending), per_block):
        group = pending[start : start + per_block]
        blobs = {c.blob: c.read() for c in group}
        operations = [PublishDataBlob(c.blob, c.size).operation(chain.id) for c in group]
        chain.propose(operations, blobs=blobs)
        blocks += 1
        done += len(group)
        if progress is not None:
            progress("publishing blobs", done, len(pending))
    return BlobPublication(len(all_chunks), len(pending), blocks)
