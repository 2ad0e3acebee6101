"""Reading a model stored as on-chain blobs (docs/blobs.md) from the validators' blob storage.

A file's manifest (``FileRef.chunks``) names each chunk's blob id and size. Each chunk is read
from a validator that holds it (reachable, its blob storage intact), checked against its id and
size before anything else sees it, and written into one buffer; the whole file is then checked
against the manifest's BLAKE3. :class:`BlobFetcher` has the URL fetcher's ``fetch_any``
signature, so the content cache stores a blob-stored file exactly as a downloaded one, and the
engine loads it from there. A file that also names URLs is fetched from them when no reachable
validator holds one of its chunks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import blake3

from edgechain.chain.blobs import blob_id
from edgechain.contract.operations import FileRef
from edgechain.errors import BlobUnavailable, Cancelled, HashMismatch
from edgechain.service.cache import SupportsFetchAny


class BlobHolder(Protocol):
    """A validator, as far as reading blobs goes."""

    name: str

    def holds(self, blob: bytes) -> bool: ...


class BlobStorage(Protocol):
    """The network: its validators and the bytes of the blobs they store."""

    @property
    def validators(self) -> Sequence[BlobHolder]: ...

    def read_blob(self, blob: bytes) -> bytes | None: ...


class BlobFetcher:
    """Reads one manifest's chunks from the validators' blob storage, verifying as it goes."""

    def __init__(
        self, storage: BlobStorage, file: FileRef, fallback: SupportsFetchAny | None = None
    ) -> None:
        self._storage = storage
        self._file = file
        self._fallback = fallback

    def fetch_any(
        self,
        urls: Sequence[str],
        *,
        expected_blake3: str,
        expected_size: int | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> bytes:
        """The file's bytes, every chunk verified; from ``urls`` (with the fallback fetcher)
        only when a chunk is unavailable."""
        try:
            return self._read(expected_blake3, progress, cancel)
        except BlobUnavailable:
            if not urls or self._fallback is None:
                raise
        return self._fallback.fetch_any(
            urls,
            expected_blake3=expected_blake3,
            expected_size=expected_size,
            progress=progress,
            cancel=cancel,
        )

    def _read(
        self,
        expected_blake3: str,
        progress: Callable[[int, int | None], None] | None,
        cancel: threading.Event | None,
    ) -> bytes:
        file = self._file
        buffer = bytearray(file.size)
        whole = blake3.blake3()
        offset = 0
        for index, (blob, size) in enumerate(file.chunks):
            if cancel is not None and cancel.is_set():
                raise Cancelled("reading the model's blobs was cancelled")
            data = self._chunk(index, blob, size)
            buffer[offset : offset + size] = data
            whole.update(data)
            offset += size
            if progress is not None:
                progress(offset, file.size)
        if whole.hexdigest() != expected_blake3:
            raise HashMismatch(
                f"the chunks of {expected_blake3[:16]} hash to {whole.hexdigest()[:16]}: the "
                "manifest does not describe the file",
                expected=expected_blake3,
                actual=whole.hexdigest(),
            )
        return buffer  # type: ignore[return-value]  # one copy: the cache writes it as is

    def _chunk(self, index: int, blob: bytes, size: int) -> bytes:
        tried = []
        for validator in self._storage.validators:
            if not validator.holds(blob):
                continue
            data = self._storage.read_blob(blob)
            if data is not None and len(data) == size and blob_id(data) == blob:
                return data
            tried.append(validator.name)
        if tried:
            raise HashMismatch(
                f"chunk {index} (blob {blob.hex()[:16]}) read from {', '.join(tried)} does not "
                "match the manifest",
                expected=blob.hex(),
            )
        raise BlobUnavailable(
            f"chunk {index} (blob {blob.hex()[:16]}): no reachable validator holds it"
        )
