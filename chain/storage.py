"""SQLite storage: one database per network directory, WAL mode, one transaction per block.

A certified block, its certificate and the state writes it produces are committed in a single
transaction, so a crash (even ``kill -9``) leaves either the whole block or none of it. The schema
is in docs/chain.md. This module stores and loads; re-verification lives in verification.py.

Many processes may use one directory at once (docs/chain.md, "Concurrency"):

* a writer holds SQLite's write lock (``BEGIN IMMEDIATE``) from reading the head to committing the
  block (:meth:`Storage.write_transaction`), so writers are serialised across processes and
  a block is always built on the head it is committed over;
* a reader that needs blocks and state to agree reads them in one read transaction
  (:meth:`Storage.snapshot`): WAL gives it the database as of its first read, whatever is
  committed meanwhile.

Every SQLite failure is mapped to a one-line :class:`ChainError`: a busy database, or
:class:`StorageCorrupted` naming what is damaged (a malformed page, a file that is not a
database, a missing table, a column holding the wrong type).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgechain.chain.state import WriteSet
from edgechain.errors import ChainError, StorageCorrupted

SCHEMA_VERSION = "1"
_PAGE = 512  # block rows fetched per query when iterating
#: How long a writer waits for another process's write transaction (a block being certified).
BUSY_TIMEOUT = 60.0

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
CREATE TABLE IF NOT EXISTS messages (
    recipient BLOB NOT NULL,
    origin    BLOB NOT NULL,
    seq       INTEGER NOT NULL,
    height    INTEGER NOT NULL,
    UNIQUE (recipient, origin, seq)
);
CREATE TABLE IF NOT EXISTS blobs (
    blob_id BLOB PRIMARY KEY,
    size    INTEGER NOT NULL,
    data    BLOB NOT NULL
);
"""
#: Tables added since the first schema, created in databases made before them (by name).
_LATER_TABLES = {
    name: next(t for t in _SCHEMA.split(";") if f"EXISTS {name} (" in t) + ";"
    for name in ("messages", "blobs")
}

_BLOCK_COLUMNS = (
    ("chain_id", bytes),
    ("height", int),
    ("block_hash", bytes),
    ("block", bytes),
    ("owner_signature", bytes),
    ("certificate", bytes),
)
_CHAIN_COLUMNS = (("chain_id", bytes), ("name", str), ("owner", bytes))
_STATE_COLUMNS = (("app_id", bytes), ("key", str), ("value", bytes))
_BLOB_COLUMNS = (("blob_id", bytes), ("size", int), ("data", bytes))
_SQL_TYPES = {bytes: "BLOB", str: "TEXT", int: "INTEGER", float: "REAL", type(None): "NULL"}
_SELECT_BLOCK = (
    "SELECT chain_id, height, block_hash, block, owner_signature, certificate FROM blocks"
)


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


@dataclass(frozen=True)
class VerifiedHead:
    """A chain's head as last verified (chain/verification.py), kept in the meta table."""

    height: int
    block_hash: bytes

    def to_text(self) -> str:
        return f"{self.height}:{self.block_hash.hex()}"


def _verified_head_key(chain_id: bytes) -> str:
    return f"verified_head:{chain_id.hex()}"


def storage_error(path: Path, exc: sqlite3.Error) -> ChainError:
    """The one-line error for an SQLite failure on the database at ``path``."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return ChainError(
            f"the chain database {path} is busy: another process held its write lock for more "
            f"than {BUSY_TIMEOUT:g} s ({text})"
        )
    if isinstance(exc, sqlite3.OperationalError) and "unable to open" in text:
        return ChainError(f"cannot open the chain database {path} ({text})")
    if isinstance(exc, sqlite3.DatabaseError):
        return StorageCorrupted(f"the chain database {path} is damaged: {text}")
    return ChainError(f"the chain database {path} failed: {text}")


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise storage_error(path, exc) from exc


def _connect(path: Path, *, create: bool = False) -> sqlite3.Connection:
    # mode=rw: opening never creates an empty database where one was expected.
    uri = path.absolute().as_uri() + ("?mode=rwc" if create else "?mode=rw")
    # isolation_level=None: transactions are explicit (BEGIN ... COMMIT).
    db = sqlite3.connect(
        uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    # NORMAL in WAL mode survives a process crash (kill -9); only a power loss could roll back
    # the last transactions, never corrupt the database.
    db.execute("PRAGMA synchronous=NORMAL")
    return db


class _Reads:
    """The read queries, over one connection (plain, or inside a transaction)."""

    path: Path

    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        raise NotImplementedError

    def _typed(
        self, row: tuple[object, ...], columns: tuple[tuple[str, type], ...], table: str
    ) -> tuple[object, ...]:
        """``row`` if every value has its column's type, else :class:`StorageCorrupted`."""
        for value, (column, kind) in zip(row, columns, strict=True):
            if not isinstance(value, kind):
                where = ""
                if table == "blocks" and len(row) > 1 and isinstance(row[1], int):
                    where = f" at height {row[1]}"
                elif table == "state" and len(row) > 1 and isinstance(row[1], str):
                    where = f" of key {row[1]!r}"
                raise StorageCorrupted(
                    f"the chain database {self.path} is damaged: column {table}.{column}{where} "
                    f"holds {_SQL_TYPES.get(type(value), type(value).__name__)}, "
                    f"not {_SQL_TYPES[kind]}"
                )
        return row

    def _block(self, row: tuple[object, ...]) -> BlockRow:
        return BlockRow(*self._typed(row, _BLOCK_COLUMNS, "blocks"))  # type: ignore[arg-type]

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        if not rows:
            return None
        return self._typed(rows[0], (("value", str),), "meta")[0]  # type: ignore[return-value]

    def verified_head(self, chain_id: bytes) -> VerifiedHead | None:
        """The head of ``chain_id`` recorded as verified, None if none is."""
        text = self.get_meta(_verified_head_key(chain_id))
        if text is None:
            return None
        height, _, block_hash = text.partition(":")
        try:
            head = VerifiedHead(int(height), bytes.fromhex(block_hash))
        except ValueError:
            head = None
        if head is None or head.height < 0 or len(head.block_hash) != 32:
            raise StorageCorrupted(
                f"the chain database {self.path} is damaged: meta {_verified_head_key(chain_id)} "
                f"holds {text[:80]!r}, not HEIGHT:HASH"
            )
        return head

    def chains(self) -> list[ChainRecord]:
        rows = self._rows("SELECT chain_id, name, owner FROM chains ORDER BY rowid")
        return [ChainRecord(*self._typed(r, _CHAIN_COLUMNS, "chains")) for r in rows]  # type: ignore[arg-type]

    def next_height(self, chain_id: bytes) -> int:
        """One past the highest stored height of a chain (0 when empty); an index lookup."""
        rows = self._rows("SELECT MAX(height) FROM blocks WHERE chain_id = ?", (chain_id,))
        top = rows[0][0] if rows else None
        if top is None:
            return 0
        return int(self._typed((top,), (("height", int),), "blocks")[0]) + 1  # type: ignore[call-overload]

    def block_row(self, chain_id: bytes, height: int) -> BlockRow | None:
        rows = self._rows(f"{_SELECT_BLOCK} WHERE chain_id = ? AND height = ?", (chain_id, height))
        return self._block(rows[0]) if rows else None

    def block_rows(
        self, chain_id: bytes, start: int = 0, end: int | None = None
    ) -> Iterator[BlockRow]:
        """Blocks of a chain in height order, from ``start`` up to (excluding) ``end``.

        Fetched in pages: outside a snapshot, later pages see blocks committed meanwhile (blocks
        are only ever appended, so the pages still form one chain).
        """
        stop = -1 if end is None else end
        while True:
            rows = self._rows(
                f"{_SELECT_BLOCK} WHERE chain_id = ? AND height >= ? AND (? < 0 OR height < ?) "
                "ORDER BY height LIMIT ?",
                (chain_id, start, stop, stop, _PAGE),
            )
            blocks = [self._block(r) for r in rows]
            yield from blocks
            if len(blocks) < _PAGE:
                return
            start = blocks[-1].height + 1

    def blob(self, blob_id: bytes) -> bytes | None:
        """A stored blob's bytes (chain/blobs.py), None when it is not stored."""
        rows = self._rows("SELECT data FROM blobs WHERE blob_id = ?", (blob_id,))
        return self._typed(rows[0], (("data", bytes),), "blobs")[0] if rows else None  # type: ignore[return-value]

    def blob_rows(self) -> Iterator[tuple[bytes, int, bytes]]:
        """Every stored blob as (id, size column, bytes), in id order, a page at a time."""
        last = b""
        while True:
            rows = self._rows(
                "SELECT blob_id, size, data FROM blobs WHERE blob_id > ? ORDER BY blob_id LIMIT 16",
                (last,),
            )
            for row in rows:
                yield self._typed(row, _BLOB_COLUMNS, "blobs")  # type: ignore[misc]
            if len(rows) < 16:
                return
            last = rows[-1][0]  # type: ignore[assignment]

    def blob_ids(self) -> set[bytes]:
        return {r[0] for r in self._rows("SELECT blob_id FROM blobs")}  # type: ignore[misc]

    def blob_bytes(self) -> int:
        """The stored blobs' total size."""
        return int(self._rows("SELECT COALESCE(SUM(size), 0) FROM blobs")[0][0])  # type: ignore[call-overload]

    def has_chain(self, chain_id: bytes) -> bool:
        return bool(self._rows("SELECT 1 FROM chains WHERE chain_id = ?", (chain_id,)))

    def sent_messages(self, recipient: bytes) -> list[tuple[bytes, int, int]]:
        """The certified messages waiting for ``recipient``: (origin, seq, height), in order
        per origin (a block that takes messages removes them in its transaction)."""
        rows = self._rows(
            "SELECT origin, seq, height FROM messages WHERE recipient = ? ORDER BY origin, seq",
            (recipient,),
        )
        return [(bytes(o), int(q), int(h)) for o, q, h in rows]  # type: ignore[arg-type]

    def state_entries(self, chain_id: bytes) -> Iterator[tuple[bytes, str, bytes]]:
        """Every stored (app_id, key, value) of a chain."""
        rows = self._rows("SELECT app_id, key, value FROM state WHERE chain_id = ?", (chain_id,))
        for row in rows:
            yield self._typed(row, _STATE_COLUMNS, "state")  # type: ignore[misc]


class Snapshot(_Reads):
    """Reads inside one transaction: all of them see the database as of the first one."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self._db = db

    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with _mapped(self.path):
            return self._db.execute(sql, params).fetchall()


class WriteTransaction(Snapshot):
    """A snapshot holding the database's write lock: it reads the newest head and may commit."""

    def store_blobs(self, blobs: dict[bytes, bytes]) -> None:
        """Store the blobs a certified block publishes, in the block's transaction."""
        _store_blobs(self.path, self._db, blobs)

    def record_verified_head(self, chain_id: bytes, head: VerifiedHead) -> None:
        """Record ``head`` as ``chain_id``'s verified head (committed with the transaction)."""
        with _mapped(self.path):
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (_verified_head_key(chain_id), head.to_text()),
            )

    def commit_block(
        self,
        row: BlockRow,
        writes: WriteSet,
        sent: Sequence[tuple[bytes, int]] = (),
        taken: Sequence[tuple[bytes, int]] = (),
    ) -> None:
        """Add a certified block and its state writes (committed when the transaction ends).
        The ``messages`` table is the chains' inboxes: ``sent`` (recipient, seq) of each message
        the block sends are added, ``taken`` (origin, next seq) remove what it took from its own."""
        db = self._db
        with _mapped(self.path):
            db.executemany(
                "INSERT OR IGNORE INTO messages (recipient, origin, seq, height) "
                "VALUES (?, ?, ?, ?)",
                [(recipient, row.chain_id, seq, row.height) for recipient, seq in sent],
            )
            db.executemany(
                "DELETE FROM messages WHERE recipient = ? AND origin = ? AND seq < ?",
                [(row.chain_id, origin, next_seq) for origin, next_seq in taken],
            )
        upserts = [(row.chain_id, a, k, v) for (a, k), v in writes.items() if v is not None]
        deletes = [(row.chain_id, a, k) for (a, k), v in writes.items() if v is None]
        try:
            with _mapped(self.path):
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
                db.executemany(
                    "INSERT INTO state (chain_id, app_id, key, value) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(chain_id, app_id, key) DO UPDATE SET value = excluded.value",
                    upserts,
                )
                db.executemany(
                    "DELETE FROM state WHERE chain_id = ? AND app_id = ? AND key = ?", deletes
                )
        except StorageCorrupted as exc:
            # Under the write lock the head was read in this same transaction, so a clash can
            # only come from a damaged index.
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise StorageCorrupted(
                    f"the chain database {self.path} is damaged: height {row.height} is already "
                    "committed although the head said otherwise"
                ) from exc
            raise


def _store_blobs(path: Path, db: sqlite3.Connection, blobs: dict[bytes, bytes]) -> None:
    # Content-addressed: a blob stored before (an identical chunk) is kept once.
    with _mapped(path):
        db.executemany(
            "INSERT OR IGNORE INTO blobs (blob_id, size, data) VALUES (?, ?, ?)",
            [(k, len(v), v) for k, v in blobs.items()],
        )


class Storage(_Reads):
    """The network's SQLite database."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        # One connection for single reads, shared by the threads of a process (a service
        # answering queries in parallel): every use of it holds this lock.
        self._lock = threading.RLock()
        # Writers of this process queue here before queueing for SQLite's write lock.
        self._write_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._closed = False
        try:
            self._db = _connect(path, create=create)
            if create:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.executescript(_SCHEMA)
            else:
                for name, table in _LATER_TABLES.items():
                    if not self._db.execute(
                        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
                    ).fetchall():
                        self._db.execute(table)
        except sqlite3.Error as exc:
            raise storage_error(path, exc) from exc
        try:
            version = self.get_meta("schema_version")
            if version is None and create:
                self.set_meta("schema_version", SCHEMA_VERSION)
            elif version != SCHEMA_VERSION:
                raise ChainError(f"{path}: unsupported storage schema version {version}")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connections; a write in progress in another thread closes its own when it
        ends (closing never waits for a writer queued on another process's lock)."""
        with self._lock:
            self._closed = True
            self._db.close()
        if self._write_lock.acquire(blocking=False):
            try:
                self._close_writer()
            finally:
                self._write_lock.release()

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock, _mapped(self.path):
            return self._db.execute(sql, params).fetchall()

    def _execute(self, sql: str, params: tuple[object, ...] = ()) -> None:
        with self._lock, _mapped(self.path):
            self._db.execute(sql, params)

    # --- transactions ---------------------------------------------------------------------

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """A read transaction on its own connection: blocks and state from one moment."""
        with _mapped(self.path):
            db = _connect(self.path)
        try:
            with _mapped(self.path):
                db.execute("BEGIN")
            yield Snapshot(self.path, db)
        finally:
            db.close()  # ends the read transaction; nothing to commit

    @contextlib.contextmanager
    def write_transaction(self, *, wait: bool = True) -> Iterator[WriteTransaction]:
        """The database's write lock, held until the block is committed (or abandoned).

        Waits up to :data:`BUSY_TIMEOUT` seconds for writers of other processes (not at all
        unless ``wait``: a busy ChainError at once). Commits when the body returns, rolls back
        when it raises.
        """
        with self._write_lock:
            if self._closed:
                raise ChainError(f"the chain database {self.path} is closed")
            try:
                with _mapped(self.path):
                    if self._writer is None:
                        self._writer = _connect(self.path)
                    db = self._writer
                    if wait:
                        db.execute("BEGIN IMMEDIATE")
                    else:
                        db.execute("PRAGMA busy_timeout = 0")
                        try:
                            db.execute("BEGIN IMMEDIATE")
                        finally:
                            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
                try:
                    yield WriteTransaction(self.path, db)
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                    raise
                try:
                    with _mapped(self.path):
                        db.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                    raise
            finally:
                if self._closed:  # closed by another thread meanwhile
                    self._close_writer()

    def try_record_verified_heads(self, heads: dict[bytes, VerifiedHead]) -> bool:
        """Record verified heads unless another process holds the write lock right now (a
        reader never waits for a writer to save it work next time) or the database cannot be
        written; True if recorded. The reads before it were verified either way."""
        try:
            with self.write_transaction(wait=False) as txn:
                for chain_id, head in heads.items():
                    txn.record_verified_head(chain_id, head)
        except ChainError:  # busy, closed meanwhile, a read-only copy: the next open verifies
            return False
        return True

    # --- meta and chains ------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        with self.write_transaction() as txn, _mapped(self.path):
            txn._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def add_chain(self, record: ChainRecord) -> None:
        try:
            with self.write_transaction() as txn:
                txn._db.execute(
                    "INSERT INTO chains (chain_id, name, owner) VALUES (?, ?, ?)",
                    (record.chain_id, record.name, record.owner),
                )
        except sqlite3.IntegrityError as exc:
            raise ChainError(f"a chain named {record.name!r} already exists") from exc
        except sqlite3.Error as exc:
            raise storage_error(self.path, exc) from exc

    # --- blocks ---------------------------------------------------------------------------

    def commit_block(self, row: BlockRow, writes: WriteSet) -> None:
        """Store a certified block and its state writes in one transaction of their own."""
        with self.write_transaction() as txn:
            if txn.next_height(row.chain_id) != row.height:
                raise ChainError(f"height {row.height} is not the chain's next height")
            txn.commit_block(row, writes)

    # --- size -----------------------------------------------------------------------------

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
