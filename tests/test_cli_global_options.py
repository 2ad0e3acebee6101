"""Global options and errors that say what to do.

``--dir`` and ``--json`` before or after the command; ``net up``'s export line; ``--json``
failures as ``{"error": {"code", "class", "message"}}`` on stdout with the exit code; an unknown
model names the registered ones; no quorum says how to make validators honest again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from network_cli_helpers import edgechain, make_network

from edgechain.client import Client
from edgechain.contract.operations import FileRef, RegisterModel
from edgechain.testing.models import ModelFiles

HASH = "ab" * 32


@pytest.fixture
def net(tmp_path: Path) -> Path:
    """A network whose registry holds stories260K (never fetched by these tests)."""
    path = make_network(tmp_path / "net")
    with Client.open(path) as client:
        ref = FileRef(HASH, 10, ("http://127.0.0.1:9/x",))
        client.register_model(RegisterModel("stories260K", "1", weights=ref, tokenizer=ref))
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["--dir", "{net}", "net", "status", "--json"],
        ["net", "status", "--dir", "{net}", "--json"],
        ["--json", "--dir", "{net}", "net", "status"],
        ["--dir", "{net}", "--json", "chain", "show"],
        ["--dir", "{net}", "model", "list", "--json"],
    ],
)
def test_dir_and_json_go_before_or_after_the_command(net: Path, args: list[str]) -> None:
    result = edgechain(*[a.format(net=net) for a in args])
    assert result.code == 0, result.err
    result.json()  # --json reached the command wherever it was given


def test_the_option_after_the_command_wins(net: Path, tmp_path: Path) -> None:
    result = edgechain("--dir", tmp_path / "elsewhere", "net", "status", "--dir", net, "--json")
    assert result.code == 0, result.err
    assert result.json()["path"] == str(net)


def test_a_global_option_a_command_does_not_take_is_refused(tmp_path: Path) -> None:
    edgechain("--dir", tmp_path, "run", "m.bin", "-z", "t.bin").assert_user_error(
        2, "`edgechain run` takes no --dir option"
    )
    out = tmp_path / "never.bin"
    result = edgechain("--json", "synth-model", "--shape", "15M", out)
    result.assert_user_error(2, "`edgechain synth-model` takes no --json option")
    assert not out.exists()  # refused before running


def test_net_up_prints_the_export_line_to_paste(tmp_path: Path) -> None:
    path = tmp_path / "fresh"
    result = edgechain("--dir", path, "net", "up")
    assert result.code == 0, result.err
    assert result.out.rstrip().endswith(f"export EDGECHAIN_DIR={path.resolve()}")
    as_json = edgechain("net", "up", "--dir", path, "--json").json()
    assert as_json["exports"] == {"EDGECHAIN_DIR": str(path.resolve())}
    # The exported directory is the network: a command without --dir finds it.
    status = edgechain("net", "status", "--json", env={"EDGECHAIN_DIR": str(path.resolve())})
    assert status.code == 0 and status.json()["path"] == str(path.resolve())


# --- --json failures ---------------------------------------------------------------------------


def _error_record(out: str) -> dict[str, object]:
    record = json.loads(out)
    assert set(record) == {"error"}
    assert set(record["error"]) == {"code", "class", "message"}
    return record["error"]


def test_a_json_failure_is_a_record_on_stdout_and_the_exit_code(tmp_path: Path) -> None:
    result = edgechain("net", "status", "--dir", tmp_path / "none", "--json")
    result.assert_user_error(4, "no edgechain network")
    error = _error_record(result.out)
    assert error["code"] == 4 and error["class"] == "NetworkNotFound"
    assert error["message"] in result.err


def test_a_json_usage_error_is_a_record_too(net: Path) -> None:
    result = edgechain("--json", "generate", "--model", "m", "-t", "warm", "--dir", net)
    result.assert_user_error(2, "temperature must be a number")
    error = _error_record(result.out)
    assert (error["code"], error["class"]) == (2, "UsageError")


def test_without_json_stdout_stays_empty_on_failure(tmp_path: Path) -> None:
    result = edgechain("net", "status", "--dir", tmp_path / "none")
    result.assert_user_error(4)
    assert result.out == ""


# --- errors that say what to do ----------------------------------------------------------------


def test_an_unknown_model_names_the_close_match_and_the_registered_ones(net: Path) -> None:
    result = edgechain("generate", "--model", "stories26K", "--dir", net, "--json")
    result.assert_user_error(6, "no model named stories26K", "did you mean stories260K?")
    assert "(registered: stories260K)" in result.err
    assert _error_record(result.out)["class"] == "ModelNotFound"
    far = edgechain("generate", "--model", "llama", "--dir", net)
    far.assert_user_error(6, "(registered: stories260K)")
    assert "did you mean" not in far.err


def test_an_unknown_version_names_the_registered_versions(net: Path) -> None:
    result = edgechain("generate", "--model", "stories260K", "--version", "9", "--dir", net)
    result.assert_user_error(6, "version 9", "versions of stories260K: 1")


def test_an_empty_registry_says_how_to_publish(tmp_path: Path) -> None:
    path = make_network(tmp_path / "empty")
    edgechain("generate", "--model", "x", "--dir", path).assert_user_error(
        6, "none is registered yet", "edgechain model publish"
    )


def test_no_quorum_says_how_to_make_validators_honest_again(
    tmp_path: Path, stories260k: ModelFiles
) -> None:
    path = make_network(tmp_path / "faulty", faulty="v1=offline,v2=offline")
    # Real files: publish parses them before it proposes, so the proposal meets no quorum.
    result = edgechain(
        "model", "publish", "m",
        "--weights", stories260k.weights, "--weights-url", "http://127.0.0.1:9/w",
        "--tokenizer", stories260k.tokenizer, "--tokenizer-url", "http://127.0.0.1:9/t",
        "--no-check-urls", "--dir", path,
    )  # fmt: skip
    result.assert_user_error(4, "no quorum", f"edgechain net up --dir {path} --faulty ''")
    # ... and the advice works.
    assert edgechain("net", "up", "--dir", path, "--faulty", "").code == 0
    status = edgechain("net", "status", "--dir", path, "--json").json()
    assert all(v["fault"] is None for v in status["validators"])
