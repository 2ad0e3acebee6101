"""Hostile but fair input at the file and settings front doors (issue 26): special files as inputs
and outputs, oversized inputs, an oracle budget past what timers take, a wrongly typed
network.json. Each is one ``error:`` line with its exit code, nothing blocks, nothing is replaced.

Commands run as subprocesses with a timeout: a command that blocks on a FIFO fails the test
(the subprocess is killed) instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from network_cli_helpers import edgechain, make_network, run_edgechain

from edgechain.errors import InputError, InvalidReceipt
from edgechain.service.receipt import Receipt
from edgechain.testing.models import ModelFiles


def _run(*args: object) -> tuple[int, str]:
    done = run_edgechain(tuple(map(str, args)), text=True, timeout=60)
    return done.returncode, done.stderr


def _assert_one_line(code: int, err: str, wanted: int, *fragments: str) -> None:
    assert code == wanted, err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "f"
    os.mkfifo(path)
    return path


# --- special files as inputs ------------------------------------------------------------------


def test_a_fifo_given_as_any_input_is_refused_without_blocking(
    tmp_path: Path, fifo: Path, stories260k: ModelFiles
) -> None:
    model, tokenizer = stories260k.weights, stories260k.tokenizer
    net = make_network(tmp_path / "net", validators=1)
    url = "http://127.0.0.1:9/x.bin"
    for args in (
        ("run", fifo, "-z", tokenizer, "-n", "1"),
        ("run", model, "-z", fifo, "-n", "1"),
        ("run", model, "-z", tokenizer, "-f", fifo, "-n", "1"),
        ("quantize", fifo, tmp_path / "o.bin"),
        ("receipt", "verify", fifo, "--dir", net),
        ("model", "publish", "m", "--dir", net, "--weights", fifo, "--tokenizer", tokenizer,
         "--weights-url", url, "--tokenizer-url", url),
        ("net", "up", "--dir", tmp_path / "n2", "--policy", fifo.with_suffix(".json")),
    ):  # fmt: skip
        if args[0] == "net":
            os.mkfifo(fifo.with_suffix(".json"))
        code, err = _run(*args)
        _assert_one_line(code, err, 3, "is a FIFO, not a regular file")
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_dev_zero_as_a_prompt_file_or_a_receipt_is_refused_before_reading(
    tmp_path: Path, stories260k: ModelFiles
) -> None:
    net = make_network(tmp_path / "net", validators=1)
    code, err = _run(
        "run", stories260k.weights, "-z", stories260k.tokenizer, "-f", "/dev/zero", "-n", "1"
    )
    _assert_one_line(code, err, 3, "prompt file /dev/zero", "a character device")
    code, err = _run("receipt", "verify", "/dev/zero", "--dir", net)
    _assert_one_line(code, err, 3, "receipt /dev/zero", "a character device")


def test_inputs_over_their_cap_are_refused_by_size(tmp_path: Path) -> None:
    from edgechain.files import PROMPT_FILE_MAX_BYTES, RECEIPT_MAX_BYTES, read_regular

    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.truncate(PROMPT_FILE_MAX_BYTES + 1)  # sparse: its size is checked, not its bytes
    with pytest.raises(InputError, match="over the 1 MiB limit"):
        read_regular(big, "prompt file", InputError, PROMPT_FILE_MAX_BYTES)
    receipt = tmp_path / "r.json"
    with receipt.open("wb") as f:
        f.truncate(RECEIPT_MAX_BYTES + 1)
    with pytest.raises(InvalidReceipt, match="over the 16 MiB limit"):
        Receipt.load(receipt)


# --- special files as outputs -----------------------------------------------------------------


def test_an_output_never_replaces_a_special_file(tmp_path: Path, fifo: Path) -> None:
    from edgechain.files import write_atomically

    receipt = Receipt({"x": 1})
    with pytest.raises(InvalidReceipt, match="it is a FIFO, not a regular file"):
        receipt.save(fifo)
    with pytest.raises(InputError, match="a directory, not a regular file"):
        write_atomically(tmp_path, b"x", "output")
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no temporary left behind


def test_quantize_to_a_fifo_is_refused_and_leaves_it(
    tmp_path: Path, fifo: Path, stories260k: ModelFiles
) -> None:
    code, err = _run("quantize", stories260k.weights, fifo)
    _assert_one_line(code, err, 3, "cannot write output checkpoint", "FIFO")
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_an_output_replaces_a_regular_file_whole_keeping_its_mode(tmp_path: Path) -> None:
    from edgechain.files import write_atomically

    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    write_atomically(target, lambda f: f.write(b"new bytes"), "output")
    assert target.read_bytes() == b"new bytes"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


# --- the oracle budget --------------------------------------------------------------------------


def test_an_oracle_budget_past_a_day_is_refused_when_given(tmp_path: Path) -> None:
    for budget in ("1e10", "1e308"):
        code, err = _run("net", "up", "--dir", tmp_path / "n", "--oracle-budget", budget)
        _assert_one_line(code, err, 2, "oracle budget must be > 0", "at most 86400")
        assert not (tmp_path / "n").exists()
    net = make_network(tmp_path / "net", validators=1)
    mint = ("story", "mint", "--model", "stories260K", "-i", "Once", "--dir", net)
    code, err = _run(*mint, "--oracle-budget", "1e308")
    _assert_one_line(code, err, 2, "at most 86400")


def test_a_saved_oracle_budget_past_a_day_is_a_malformed_network_json(tmp_path: Path) -> None:
    net = make_network(tmp_path / "net", validators=1)
    config = json.loads((net / "network.json").read_text())
    (net / "network.json").write_text(json.dumps({**config, "oracle_budget_s": 1e10}))
    code, err = _run("net", "status", "--dir", net)
    _assert_one_line(code, err, 4, "network.json is malformed", "oracle_budget_s")


# --- a wrongly typed network.json -------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda c: [], "expected a JSON object"),
        (lambda c: {**c, "faults": 5}, "faults must be a string"),
        (lambda c: {**c, "vote_timeout": [1]}, "vote_timeout must be a number"),
        (lambda c: {**c, "committee": 7}, "malformed"),
        (lambda c: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_a_wrongly_typed_network_json_is_storage_corrupted(
    tmp_path: Path, change, fragment
) -> None:
    net = make_network(tmp_path / "net", validators=1)
    config = json.loads((net / "network.json").read_text())
    value = change(config)
    text = value if isinstance(value, str) else json.dumps(value)
    (net / "network.json").write_text(text)
    for command in (("net", "status"), ("chain", "verify")):
        code, err = _run(*command, "--dir", net)
        _assert_one_line(code, err, 4, "network.json is malformed", fragment)


def test_an_edgechain_command_reads_network_json_only_if_it_is_a_regular_file(
    tmp_path: Path,
) -> None:
    net = make_network(tmp_path / "net", validators=1)
    (net / "network.json").unlink()
    os.mkfifo(net / "network.json")
    result = edgechain("net", "status", "--dir", net)
    result.assert_user_error(4, "no edgechain network")
