"""Shared helpers for the chain and contract tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edgechain.chain import Network
from edgechain.client import hash_file
from edgechain.contract import FileRef, RegisterModel, RetireModel

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


def create_four_block_network(tmp_path: Path) -> Path:
    """A network whose default chain holds 4 blocks (heights 0..3): stories260K versions 1 and
    2, "other", then version 1 retired."""
    path = tmp_path / "net"
    with Network.create(path, validators=4) as net:
        chain = net.default_chain()
        app = chain.application("model-registry")
        chain.execute(app.id, register(version="1"))
        chain.execute(app.id, register(version="2"))
        chain.execute(app.id, register(name="other"))
        chain.execute(app.id, RetireModel("stories260K", "1"))
    return path


def run_sql(path: Path, statement: str, params: tuple[object, ...] = ()) -> list[tuple]:
    """Runs one statement on the network's chain.db behind its back (tampering); its rows."""
    db = sqlite3.connect(path / "chain.db")
    with db:
        rows = db.execute(statement, params).fetchall()
    db.close()
    return rows


def flip_block_byte(path: Path, column: str, height: int, offset: int = -5) -> None:
    """Flips one bit of the stored block's ``column`` at ``offset``."""
    [(blob,)] = run_sql(path, f"SELECT {column} FROM blocks WHERE height = ?", (height,))
    changed = bytearray(blob)
    changed[offset] ^= 0x01
    run_sql(path, f"UPDATE blocks SET {column} = ? WHERE height = ?", (bytes(changed), height))
