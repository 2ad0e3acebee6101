"""`edgechain chain show|verify` through the CLI."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from network_cli_helpers import edgechain, make_network

from edgechain.chain.encoding import decode, encode
from edgechain.client import Client
from edgechain.contract.operations import FileRef, RegisterModel

WEIGHTS = FileRef("1" * 64, 1024, ("http://127.0.0.1:8000/w.bin",))
TOKENIZER = FileRef("2" * 64, 512, ("http://127.0.0.1:8000/t.bin",))


@pytest.fixture
def net(tmp_path: Path) -> Path:
    """A network with two blocks: stories260K registered, then retired."""
    path = make_network(tmp_path / "net", faulty="v2=offline")
    with Client.open(path) as client:
        client.register_model(RegisterModel("stories260K", "1", WEIGHTS, TOKENIZER))
        client.retire_model("stories260K", "1")
    return path


def test_show_lists_blocks_operations_and_signers(net: Path) -> None:
    result = edgechain("chain", "show", "--dir", net)
    assert result.code == 0, result.err
    assert ": 2 certified blocks" in result.out
    assert "block 0  " in result.out and "block 1  " in result.out
    assert result.out.count("signed by  v1, v3, v4 (quorum 3 of 4)") == 2
    assert "model-registry: RegisterModel stories260K version 1, weights 1111" in result.out
    assert "model-registry: RetireModel stories260K version 1" in result.out


def test_show_json_links_the_blocks(net: Path) -> None:
    result = edgechain("chain", "show", "--dir", net, "--json")
    assert result.code == 0, result.err
    shown = result.json()
    assert shown["head_height"] == 1 and shown["quorum"] == 3 and shown["validators"] == 4
    first, second = shown["blocks"]
    assert first["previous_hash"] is None
    assert second["previous_hash"] == first["block_hash"]
    assert [op["name"] for op in first["operations"] + second["operations"]] == [
        "RegisterModel",
        "RetireModel",
    ]
    register = first["operations"][0]
    assert register["application"] == "model-registry"
    assert register["payload"]["weights"]["blake3"] == "1" * 64
    assert first["signers"] == ["v1", "v3", "v4"]
    assert first["certificate"]["block_hash"] == first["block_hash"]


def test_show_one_height(net: Path) -> None:
    result = edgechain("chain", "show", "1", "--dir", net, "--json")
    assert result.code == 0, result.err
    assert [b["height"] for b in result.json()["blocks"]] == [1]
    edgechain("chain", "show", "7", "--dir", net).assert_user_error(2, "no block at height 7")
    edgechain("chain", "show", "x", "--dir", net).assert_user_error(2, "invalid int value")


def test_show_an_empty_chain(tmp_path: Path) -> None:
    net = make_network(tmp_path / "net")
    result = edgechain("chain", "show", "--dir", net)
    assert result.code == 0 and ": 0 certified blocks" in result.out
    assert edgechain("chain", "show", "--dir", net, "--json").json()["blocks"] == []


def test_verify_reports_what_it_checked(net: Path) -> None:
    text = edgechain("chain", "verify", "--dir", net)
    assert text.code == 0, text.err
    assert text.out.startswith("ok: 2 blocks on 1 chain(s) verified")
    report = edgechain("chain", "verify", "--dir", net, "--json").json()
    assert report["ok"] is True and report["blocks"] == 2 and report["chains"] == 1


def test_verify_detects_a_tampered_certificate(net: Path) -> None:
    with sqlite3.connect(net / "chain.db") as db:
        (certificate,) = db.execute("SELECT certificate FROM blocks WHERE height = 0").fetchone()
        forged = bytearray(certificate)
        forged[-5] ^= 0x01  # inside the last signature
        db.execute("UPDATE blocks SET certificate = ? WHERE height = 0", (bytes(forged),))
    for command in (("chain", "verify"), ("chain", "show")):
        edgechain(*command, "--dir", net).assert_user_error(4, "height 0")


def test_chain_commands_need_a_network(tmp_path: Path) -> None:
    for command in (("chain", "show"), ("chain", "verify", "--json")):
        edgechain(*command, "--dir", tmp_path / "nowhere").assert_user_error(
            4, "no edgechain network"
        )


# --- rollback: a head the user recorded --------------------------------------------------------


def _head(net: Path) -> str:
    status = edgechain("net", "status", "--dir", net, "--json")
    assert status.code == 0, status.err
    return status.json()["chains"][0]["head"]


def test_net_status_prints_the_head_as_height_and_hash(net: Path) -> None:
    head = _head(net)
    height, block_hash = head.split(":")
    assert height == "1" and len(block_hash) == 64
    text = edgechain("net", "status", "--dir", net)
    assert f"2 blocks, head {head}" in text.out


def test_expect_head_passes_at_and_beyond_the_recorded_head(net: Path) -> None:
    head = _head(net)
    ok = edgechain("chain", "verify", "--dir", net, "--expect-head", head)
    assert ok.code == 0, ok.err
    assert f"still holds the head {head}" in ok.out
    with Client.open(net) as client:
        client.register_model(RegisterModel("later", "1", WEIGHTS, TOKENIZER))
    short = head.split(":")[0] + ":" + head.split(":")[1][:12].upper()
    beyond = edgechain("chain", "verify", "--dir", net, "--expect-head", short, "--json")
    assert beyond.code == 0, beyond.err
    assert beyond.json()["blocks"] == 3


@pytest.fixture
def backup(net: Path, tmp_path: Path) -> Path:
    """A copy of ``net`` taken when it held only its first block (a restored old backup)."""
    copy = tmp_path / "backup"
    with Client.open(net) as client:
        client.network.storage.checkpoint()  # everything in chain.db, nothing in the WAL
    shutil.copytree(net, copy)
    with sqlite3.connect(copy / "chain.db") as db:
        db.execute("DELETE FROM blocks WHERE height >= 1")
        # The state as of block 0: the model registered, not yet retired.
        (value,) = db.execute("SELECT value FROM state").fetchone()
        entry = decode(value)
        assert entry["retired_height"] == 1
        db.execute("UPDATE state SET value = ?", (encode({**entry, "retired_height": None}),))
    assert edgechain("chain", "verify", "--dir", copy).code == 0
    return copy


def test_expect_head_detects_a_chain_cut_back(net: Path, backup: Path) -> None:
    head = _head(net)
    edgechain("chain", "verify", "--dir", backup, "--expect-head", head).assert_user_error(
        4, "cut back", "1 blocks", head
    )


def test_expect_head_detects_another_block_at_that_height(net: Path, backup: Path) -> None:
    head = _head(net)
    with Client.open(backup) as client:
        client.register_model(RegisterModel("other", "1", WEIGHTS, TOKENIZER))
    plain = edgechain("chain", "verify", "--dir", backup)
    assert plain.code == 0, plain.err  # a valid chain: only the recorded head tells
    edgechain("chain", "verify", "--dir", backup, "--expect-head", head).assert_user_error(
        4, "rewritten", "height 1"
    )


@pytest.mark.parametrize(
    "bad", ["1", "x:abcdefab", "1:xyz", "1:abc", "-1:abcdefab", "1:" + "a" * 65, "١:abcdefab"]
)
def test_expect_head_must_be_height_and_hash(net: Path, bad: str) -> None:
    edgechain("chain", "verify", "--dir", net, f"--expect-head={bad}").assert_user_error(
        2, "HEIGHT:HASH"
    )


# --- damaged storage: exit 4, one line naming what is damaged ----------------------------------

READERS = (("chain", "verify"), ("chain", "show"), ("net", "status"), ("model", "list"))


def _damage_pages(db_path: Path) -> None:
    """Overwrite the b-tree page headers after the first two pages (schema pages intact)."""
    data = bytearray(db_path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) > 3 * page
    for offset in range(2 * page, len(data), page):
        data[offset : offset + 12] = b"\xff" * 12
    db_path.write_bytes(bytes(data))


@pytest.fixture
def settled(net: Path) -> Path:
    """``net`` with everything folded into chain.db (no WAL left to hide a damaged page)."""
    with Client.open(net) as client:
        for n in range(30):  # enough rows for several pages
            client.register_model(
                RegisterModel(f"m{n}", "1", WEIGHTS, TOKENIZER, description="x" * 1000)
            )
        client.network.storage.checkpoint()
    return net


def test_a_corrupt_database_page_is_a_chain_error(settled: Path) -> None:
    _damage_pages(settled / "chain.db")
    for command in READERS:
        edgechain(*command, "--dir", settled).assert_user_error(
            4, "chain.db is damaged", "malformed"
        )


@pytest.mark.parametrize(
    ("statement", "fragments"),
    [
        ("UPDATE blocks SET block = 'text' WHERE height = 1", ("blocks.block at height 1", "TEXT")),
        ("UPDATE blocks SET height = 'x' WHERE height = 0", ("blocks.height", "not INTEGER")),
        ("UPDATE state SET value = 'text'", ("state.value", "holds TEXT, not BLOB")),
        ("UPDATE chains SET name = x'00'", ("chains.name", "holds BLOB, not TEXT")),
        ("UPDATE meta SET value = x'31' WHERE key = 'schema_version'", ("meta.value", "BLOB")),
        ("DROP TABLE state", ("no such table: state",)),
    ],
)
def test_a_wrong_column_type_is_a_chain_error(net: Path, statement: str, fragments) -> None:
    with sqlite3.connect(net / "chain.db") as db:
        db.execute(statement)
    for command in READERS:
        edgechain(*command, "--dir", net).assert_user_error(4, "chain.db is damaged", *fragments)


def test_a_file_that_is_not_a_database_is_a_chain_error(net: Path) -> None:
    for suffix in ("-wal", "-shm"):
        (net / f"chain.db{suffix}").unlink(missing_ok=True)
    (net / "chain.db").write_bytes(b"not a database, just text\n" * 100)
    for command in READERS:
        edgechain(*command, "--dir", net).assert_user_error(
            4, "chain.db is damaged", "not a database"
        )


def test_damaged_files_around_the_database_are_one_line_errors(net: Path) -> None:
    (net / "chain.db-wal").unlink(missing_ok=True)
    (net / "chain.db-wal").mkdir()
    verify = edgechain("chain", "verify", "--dir", net)
    verify.assert_user_error(4, "cannot open the chain database")
    (net / "chain.db-wal").rmdir()
    key = net / "keys" / "chains" / "default.key"
    key.unlink()
    key.mkdir()
    edgechain("model", "retire", "stories260K", "--version", "1", "--dir", net).assert_user_error(
        3, "cannot read key file"
    )
    (net / "network.json").write_text('{"format": "edgechain-network/1", "committee": 5}')
    edgechain("chain", "verify", "--dir", net).assert_user_error(4, "network.json is malformed")


def test_show_a_height_beyond_any_integer(net: Path) -> None:
    edgechain("chain", "show", "99999999999999999999", "--dir", net).assert_user_error(
        2, "99999999999999999999 is outside 0..9223372036854775807"
    )
