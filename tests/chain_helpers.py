"""Shared helpers for the chain and contract tests."""

from __future__ import annotations

from pathlib import Path

from edgechain.client import hash_file
from edgechain.contract import FileRef, RegisterModel

WEIGHTS_HASH = "1" * 64
TOKENIZER_HASH = "2" * 64
URL = "http://127.0.0.1:8000/stories260K.bin"
FAST_TIMEOUT = 0.2  # seconds per vote: long enough for an honest vote on a busy 2-core machine


def file_ref(blake3: str = WEIGHTS_HASH, size: int = 1024, url: str = URL) -> FileRef:
    return FileRef(blake3, size, (url,))


def local_file_ref(path: Path, url: str) -> FileRef:
    """The FileRef of a local file, built as ``Client.publish_model`` builds it."""
    hashed = hash_file(path)
    return FileRef(hashed.blake3, hashed.size, (url,))


def register(name: str = "stories260K", version: str = "1", **changes) -> RegisterModel:
    fields = {
        "name": name,
        "version": version,
        "weights": file_ref(),
        "tokenizer": file_ref(TOKENIZER_HASH, 512),
    }
    fields.update(changes)
    return RegisterModel(**fields)
