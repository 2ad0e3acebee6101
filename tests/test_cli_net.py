"""`edgechain net up|status` through the CLI: creating, reopening, faults, bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from network_cli_helpers import edgechain, make_network

from edgechain.client import Client
from edgechain.contract.operations import FileRef, RegisterModel

FILE = FileRef("1" * 64, 10, ("http://127.0.0.1:1/m.bin",))


def test_net_up_creates_a_network_and_reports_thresholds(tmp_path: Path) -> None:
    result = edgechain("net", "up", "--dir", tmp_path / "net")
    assert result.code == 0, result.err
    assert result.out.startswith(f"created a network in {tmp_path / 'net'}\n")
    assert (tmp_path / "net" / "network.json").is_file()
    assert "validators: 4; a certificate needs 3 signatures (tolerates 1 faulty)" in result.out
    assert "chain default:" in result.out and "0 blocks, head (no blocks yet)" in result.out
    assert "height" not in result.out  # one word for the count, another for a position
    assert "models: 0 active, 0 retired" in result.out


def test_net_up_json_has_the_committee_and_faults(tmp_path: Path) -> None:
    result = edgechain(
        "net",
        "up",
        "--dir",
        tmp_path,
        "--validators",
        "7",
        "--faulty",
        "v2=offline,v5=slow:0.1",
        "--json",
    )
    assert result.code == 0, result.err
    status = result.json()
    assert [v["name"] for v in status["validators"]] == [f"v{i}" for i in range(1, 8)]
    assert {v["name"]: v["fault"] for v in status["validators"] if v["fault"]} == {
        "v2": "offline",
        "v5": "slow:0.1",
    }
    assert status["quorum"] == 5 and status["tolerated_faults"] == 2
    assert status["chains"][0]["blocks"] == 0
    assert status["chains"][0]["head_height"] is None and status["chains"][0]["head"] is None
    assert status["models"] == {"active": 0, "retired": 0}


def test_net_up_reopens_and_reverifies_an_existing_network(tmp_path: Path) -> None:
    assert edgechain("net", "up", "--dir", tmp_path).code == 0
    first = edgechain("net", "status", "--dir", tmp_path, "--json").json()
    again = edgechain("net", "up", "--dir", tmp_path, "--json")
    assert again.code == 0, again.err
    assert again.json()["chains"] == first["chains"] and again.json()["created"] is False
    assert again.json()["validators"] == first["validators"]


def test_net_up_says_how_many_blocks_it_reverified(tmp_path: Path) -> None:
    with Client.up(make_network(tmp_path)) as client:
        client.register_model(RegisterModel("m", "1", weights=FILE, tokenizer=FILE))
        client.retire_model("m", "1")
    result = edgechain("net", "up", "--dir", tmp_path)
    assert result.code == 0, result.err
    assert result.out.startswith(f"reopened {tmp_path}: 2 stored blocks re-verified\n")
    assert "models: 0 active, 1 retired" in result.out


def test_the_edgechain_script_is_installed() -> None:
    script = Path(sys.executable).with_name("edgechain")
    found = script if script.is_file() else shutil.which("edgechain")
    assert found is not None, "the edgechain console script is not installed (pip install -e .)"
    done = subprocess.run([str(found), "net", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "edgechain net up" in done.stdout


def test_net_up_refuses_another_committee_size_when_reopening(tmp_path: Path) -> None:
    make_network(tmp_path)
    edgechain("net", "up", "--dir", tmp_path, "--validators", "7").assert_user_error(
        2, "has 4 validators"
    )


def test_net_up_detects_a_tampered_directory(tmp_path: Path) -> None:
    make_network(tmp_path)
    (tmp_path / "network.json").write_text("{not json")
    edgechain("net", "up", "--dir", tmp_path).assert_user_error(4, "malformed")


def test_faults_given_when_reopening_are_saved_and_can_be_cleared(tmp_path: Path) -> None:
    make_network(tmp_path)
    assert edgechain("net", "up", "--dir", tmp_path, "--faulty", "v3=wrong-state").code == 0
    status = edgechain("net", "status", "--dir", tmp_path, "--json").json()
    assert [v["fault"] for v in status["validators"]] == [None, None, "wrong-state", None]
    assert edgechain("net", "up", "--dir", tmp_path, "--faulty", "").code == 0
    status = edgechain("net", "status", "--dir", tmp_path, "--json").json()
    assert all(v["fault"] is None for v in status["validators"])


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("v9=offline", "unknown validator 'v9'"),
        ("v1=bogus", "unknown fault 'bogus'"),
        ("v1=slow:soon", "not a number of seconds"),
        ("v1=offline:3", "takes no argument"),
    ],
)
def test_bad_fault_specs_are_usage_errors(tmp_path: Path, spec: str, fragment: str) -> None:
    result = edgechain("net", "up", "--dir", tmp_path / "net", "--faulty", spec)
    result.assert_user_error(2, fragment)
    assert not (tmp_path / "net").exists()  # nothing left behind


def test_bad_committee_size_is_a_usage_error(tmp_path: Path) -> None:
    edgechain("net", "up", "--dir", tmp_path, "--validators", "0").assert_user_error(
        2, "between 1 and 100"
    )
    edgechain("net", "up", "--dir", tmp_path, "--validators", "four").assert_user_error(
        2, "invalid int value"
    )


def test_net_status_of_a_missing_directory_is_a_chain_error(tmp_path: Path) -> None:
    for command in (("net", "status"), ("net", "status", "--json")):
        edgechain(*command, "--dir", tmp_path / "nowhere").assert_user_error(
            4, "no edgechain network in"
        )


def test_the_default_directory_comes_from_edgechain_dir(tmp_path: Path) -> None:
    env = {"EDGECHAIN_DIR": str(tmp_path / "envnet")}
    assert edgechain("net", "up", env=env).code == 0
    status = edgechain("net", "status", "--json", env=env)
    assert status.code == 0, status.err
    assert status.json()["path"] == str(tmp_path / "envnet")


COMMAND_GROUPS = {("net",), ("model",), ("chain",)}


def test_help_teaches_each_command_with_an_example() -> None:
    top = edgechain("--help")
    assert top.code == 0
    for command in ("net", "model", "generate", "chain"):
        assert command in top.out
    for command in (
        ("net",),
        ("net", "up"),
        ("net", "status"),
        ("model",),
        ("model", "publish"),
        ("model", "list"),
        ("model", "show"),
        ("model", "retire"),
        ("generate",),
        ("chain",),
        ("chain", "show"),
        ("chain", "verify"),
    ):
        result = edgechain(*command, "--help")
        assert result.code == 0, result.err
        assert (
            "example" in result.out and f"edgechain {command[0]}" in result.out.split("example")[-1]
        ), command
        if command not in COMMAND_GROUPS:  # a group's help lists its commands, not their flags
            assert "--dir" in result.out, command


def test_a_missing_subcommand_or_unknown_flag_is_a_usage_error(tmp_path: Path) -> None:
    edgechain("net").assert_user_error(2, "required")
    edgechain("net", "up", "--dir", tmp_path, "--bogus").assert_user_error(2, "--bogus")
