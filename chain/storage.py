"""SQLite storage: one database per network directory, WAL mode, one transaction per block.

A certified block, its certificate and the state writes it produces are committed in a single
transaction, so a crash (even ``kill -9``) leaves either the whole block or none of it. The schema
is in docs/chain.md. This module stores and loads; re-verification lives in verification.py.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgechain.chain.state import WriteSet
from edgechain.errors import ChainError, StorageCorrupted

SCHEMA_VERSION = "1"
_PAGE = 512  # block rows fetched per query when iterating

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chains (
    chain_id      BLOB PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    owner         BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS blocks (
    chain_id        BLOB NOT NULL,
    height          INTEGER NOT NULL,
    block_hash      BLOB NOT NULL,
    block           BLOB NOT NULL,
    owner_signature BLOB NOT NULL,
    certificate     BLOB NOT NULL,
    UNIQUE (chain_id, height)
);
CREATE TABLE IF NOT EXISTS state (
    chain_id BLOB NOT NULL,
    app_id   BLOB NOT NULL,
    key      TEXT NOT NULL,
    value    BLOB NOT NULL,
    UNIQUE (chain_id, app_id, key)
);
"""


@dataclass(frozen=True)
class ChainRecord:
    """A row of the chains table."""

    chain_id: bytes
    name: str
    owner: bytes


@dataclass(frozen=True)
class BlockRow:
    """A row of the blocks table, undecoded."""

    chain_id: bytes
    height: int
    block_hash: bytes
    block: bytes
    owner_signature: bytes
    certificate: bytes


class Storage:
    """The network's SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # One connection shared by the threads of a process (a service answering queries in
        # parallel): every use of it holds this lock.
        self._lock = threading.RLock()
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash (kill -9); only a power loss could
            # roll back the last transactions, never corrupt the database.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StorageCorrupted(f"cannot open the chain database {path}: {exc}") from exc
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise ChainError(f"{path}: unsupported storage schema version {version}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _fetchone(self, sql: str, params: tuple[object, ...] = ()) -> tuple[object, ...] | None:
        with self._lock:
            return self._db.execute(sql, params).fetchone()

    def _fetchall(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _execute(self, sql: str, params: tuple[object, ...] = ()) -> None:
        with self._lock:
            self._db.execute(sql, params)

    # --- meta and chains ------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def add_chain(self, record: ChainRecord) -> None:
        try:
            self._execute(
                "INSERT INTO chains (chain_id, name, owner) VALUES (?, ?, ?)",
                (record.chain_id, record.name, record.owner),
            )
        except sqlite3.IntegrityError as exc:
            raise ChainError(f"a chain named {record.name!r} already exists") from exc

    def chains(self) -> list[ChainRecord]:
        rows = self._fetchall("SELECT chain_id, name, owner FROM chains ORDER BY rowid")
        return [ChainRecord(*row) for row in rows]

    # --- blocks ---------------------------------------------------------------------------

    def commit_block(self, row: BlockRow, writes: WriteSet) -> None:
        """Store a certified block and its state writes in one transaction."""
        with self._lock:
            self._commit_block(row, writes)

    def _commit_block(self, row: BlockRow, writes: WriteSet) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO blocks (chain_id, height, block_hash, block, owner_signature, "
                "certificate) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    row.chain_id,
                    row.height,
                    row.block_hash,
                    row.block,
                    row.owner_signature,
                    row.certificate,
                ),
            )
            upserts = [(row.chain_id, a, k, v) for (a, k), v in writes.items() if v is not None]
            deletes = [(row.chain_id, a, k) for (a, k), v in writes.items() if v is None]
            db.executemany(
                "INSERT INTO state (chain_id, app_id, key, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(chain_id, app_id, key) DO UPDATE SET value = excluded.value",
                upserts,
            )
            db.executemany(
                "DELETE FROM state WHERE chain_id = ? AND app_id = ? AND key = ?", deletes
            )
        except sqlite3.IntegrityError as exc:
            db.execute("ROLLBACK")
            raise ChainError(f"height {row.height} is already committed") from exc
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def next_height(self, chain_id: bytes) -> int:
        """One past the highest stored height of a chain (0 when empty); an index lookup."""
        row = self._fetchone("SELECT MAX(height) FROM blocks WHERE chain_id = ?", (chain_id,))
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def block_count(self, chain_id: bytes) -> int:
        row = self._fetchone("SELECT COUNT(*) FROM blocks WHERE chain_id = ?", (chain_id,))
        return int(row[0])

    def block_row(self, chain_id: bytes, height: int) -> BlockRow | None:
        row = self._fetchone(
            "SELECT chain_id, height, block_hash, block, owner_signature, certificate "
            "FROM blocks WHERE chain_id = ? AND height = ?",
            (chain_id, height),
        )
        return None if row is None else BlockRow(*row)

    def block_rows(
        self, chain_id: bytes, start: int = 0, end: int | None = None
    ) -> Iterator[BlockRow]:
        """Blocks of a chain in height order, from ``start`` up to (excluding) ``end``."""
        stop = -1 if end is None else end
        # Pages of rows, each fetched under the lock: no cursor stays open between yields.
        while True:
            rows = self._fetchall(
                "SELECT chain_id, height, block_hash, block, owner_signature, certificate "
                "FROM blocks WHERE chain_id = ? AND height >= ? AND (? < 0 OR height < ?) "
                "ORDER BY height LIMIT ?",
                (chain_id, start, stop, stop, _PAGE),
            )
            for row in rows:
                yield BlockRow(*row)
            if len(rows) < _PAGE:
                return
            start = rows[-1][1] + 1

    def state_entries(self, chain_id: bytes) -> Iterator[tuple[bytes, str, bytes]]:
        """Every stored (app_id, key, value) of a chain."""
        yield from self._fetchall(
            "SELECT app_id, key, value FROM state WHERE chain_id = ?", (chain_id,)
        )

    def size_bytes(self) -> int:
        """The database's size on disk, WAL included."""
        total = 0
        for suffix in ("", "-wal"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                total += p.stat().st_size
        return total

    def checkpoint(self) -> None:
        """Fold the WAL into the main file (for size measurements and clean shutdowns)."""
        self._execute("PRAGMA wal_checkpoint(TRUNCATE)")
