"""`edgechain chain show|verify` through the CLI."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from network_cli_helpers import edgechain, make_network

from edgechain.client import Client
from edgechain.contract.operations import FileRef

WEIGHTS = FileRef("1" * 64, 1024, ("http://127.0.0.1:8000/w.bin",))
TOKENIZER = FileRef("2" * 64, 512, ("http://127.0.0.1:8000/t.bin",))


@pytest.fixture
def net(tmp_path: Path) -> Path:
    """A network with two blocks: stories260K registered, then retired."""
    path = make_network(tmp_path / "net", faulty="v2=offline")
    with Client.open(path) as client:
        client.register_model("stories260K", weights=WEIGHTS, tokenizer=TOKENIZER)
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
    assert shown["height"] == 2 and shown["quorum"] == 3 and shown["validators"] == 4
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
