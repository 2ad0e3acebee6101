"""`edgechain model publish|list|show|retire` through the CLI, and the hashing progress bar."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from network_cli_helpers import edgechain, make_network

from edgechain.cli.progress import ProgressBar
from edgechain.testing.models import ModelFiles
from edgechain.testing.weight_server import WeightServer


@pytest.fixture
def net(tmp_path: Path) -> Path:
    return make_network(tmp_path / "net")


def publish_urls(net: Path, server: WeightServer, *extra: str, name: str = "stories260K"):
    return edgechain(
        "model", "publish", name, "--dir", net,
        "--weights", server.url("stories260K.bin"),
        "--tokenizer", server.url("tok512.bin"),
        *extra,
    )  # fmt: skip


def test_publish_local_files_prints_hashes_height_and_signers(
    net: Path, served: WeightServer, stories260k: ModelFiles
) -> None:
    result = edgechain(
        "model", "publish", "stories260K", "--dir", net,
        "--weights", stories260k.weights, "--tokenizer", stories260k.tokenizer,
        "--weights-url", served.url("stories260K.bin"),
        "--tokenizer-url", served.url("tok512.bin"),
        "--description", "tiny stories", "--license", "MIT",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "published stories260K version 1" in result.out
    assert f"blake3 {stories260k.weights_blake3}  1,056,540 bytes" in result.out
    assert f"blake3 {stories260k.tokenizer_blake3}  6,227 bytes" in result.out
    assert "certificate  height 0, block " in result.out
    assert "signed by v1, v2, v3" in result.out and "(quorum 3 of 4)" in result.out
    # Local files are hashed from disk; each URL is fetched once, to check it serves them.
    assert served.request_count("stories260K.bin") == served.request_count("tok512.bin") == 1
    assert f"checked      {served.url('stories260K.bin')} serves the weights" in result.out
    assert "hashing" not in result.err  # stderr is not a tty: no progress bar


def test_publish_from_urls_json_is_the_certified_entry(
    net: Path, served: WeightServer, stories260k: ModelFiles
) -> None:
    result = publish_urls(net, served, "--version", "2.0", "--json")
    assert result.code == 0, result.err
    entry = result.json()
    assert entry["name"] == "stories260K" and entry["version"] == "2.0"
    assert entry["weights"] == {
        "blake3": stories260k.weights_blake3,
        "size": 1_056_540,
        "urls": [served.url("stories260K.bin")],
    }
    assert entry["tokenizer"]["blake3"] == stories260k.tokenizer_blake3
    assert entry["status"] == "active" and entry["certificate_height"] == 0
    assert entry["signers"] == ["v1", "v2", "v3"]
    assert len(entry["block_hash"]) == 64


def test_publish_certifies_despite_a_faulty_validator_but_not_two(
    tmp_path: Path, served: WeightServer
) -> None:
    one = make_network(tmp_path / "one", faulty="v1=offline")
    result = publish_urls(one, served, "--json")
    assert result.code == 0, result.err
    assert result.json()["signers"] == ["v2", "v3", "v4"]

    two = make_network(tmp_path / "two", faulty="v1=offline,v4=bad-signature")
    publish_urls(two, served).assert_user_error(4, "no quorum", "2 of 4")
    assert edgechain("model", "list", "--dir", two, "--json").json() == []


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--weights-url", "ftp://127.0.0.1/w.bin"), "not an http or https URL"),
        (("--tokenizer-url", "http:///nohost"), "has no host"),
        (("--version", "bad version"), "model version 'bad version' must match"),
        (("--license", "x" * 200), "license is longer than 128"),
    ],
)
def test_the_contract_rejects_bad_operations(
    net: Path, served: WeightServer, extra: tuple[str, ...], fragment: str
) -> None:
    publish_urls(net, served, *extra).assert_user_error(5, fragment)
    assert edgechain("chain", "show", "--dir", net, "--json").json()["blocks"] == []


def test_a_bad_name_is_rejected_by_the_contract(net: Path, served: WeightServer) -> None:
    publish_urls(net, served, name="no spaces").assert_user_error(5, "model name 'no spaces'")


def test_other_bytes_under_a_registered_version_are_rejected(
    net: Path, served: WeightServer, weight_server_dir: Path
) -> None:
    assert publish_urls(net, served).code == 0
    other = bytearray((weight_server_dir / "stories260K.bin").read_bytes())
    other[-1] ^= 1  # still a well-formed checkpoint, other bytes
    (weight_server_dir / "other.bin").write_bytes(bytes(other))
    result = edgechain(
        "model", "publish", "stories260K", "--dir", net,
        "--weights", served.url("other.bin"), "--tokenizer", served.url("tok512.bin"),
    )  # fmt: skip
    result.assert_user_error(5, "already registered with other bytes")


def test_unreachable_and_forbidden_urls_fail_the_download(net: Path, served: WeightServer) -> None:
    for weights_url, fragment in (
        ("http://127.0.0.1:9/stories260K.bin", "connection failed"),
        ("http://example.com/stories260K.bin", "host not allowed"),
        (served.url("missing.bin"), "404"),
    ):
        result = edgechain(
            "model", "publish", "m", "--dir", net,
            "--weights", weights_url, "--tokenizer", served.url("tok512.bin"),
        )  # fmt: skip
        result.assert_user_error(6, fragment)


def test_bad_local_files_are_input_errors(net: Path, tmp_path: Path, served: WeightServer) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    url = served.url("stories260K.bin")
    for weights, fragment in ((tmp_path / "absent.bin", "no such file"), (empty, "empty")):
        result = edgechain(
            "model", "publish", "m", "--dir", net, "--weights", weights,
            "--weights-url", url, "--tokenizer", served.url("tok512.bin"),
        )  # fmt: skip
        result.assert_user_error(3, fragment)


def test_a_local_file_needs_the_url_services_fetch_it_from(
    net: Path, stories260k: ModelFiles, served: WeightServer
) -> None:
    result = edgechain(
        "model", "publish", "m", "--dir", net,
        "--weights", stories260k.weights, "--tokenizer", served.url("tok512.bin"),
    )  # fmt: skip
    result.assert_user_error(2, "--weights-url")


def test_publish_without_a_network_is_a_chain_error(tmp_path: Path, served: WeightServer) -> None:
    publish_urls(tmp_path / "nowhere", served).assert_user_error(4, "no edgechain network")


def test_list_show_and_retire(net: Path, served: WeightServer, stories260k: ModelFiles) -> None:
    empty = edgechain("model", "list", "--dir", net)
    assert empty.code == 0 and "no active models" in empty.out
    assert publish_urls(net, served).code == 0
    assert publish_urls(net, served, "--version", "2").code == 0

    listed = edgechain("model", "list", "--dir", net)
    assert listed.code == 0
    rows = [line.split() for line in listed.out.splitlines()[1:]]
    assert [row[:4] for row in rows] == [
        ["stories260K", "1", "active", "0"],
        ["stories260K", "2", "active", "1"],
    ]

    shown = edgechain("model", "show", "stories260K", "--dir", net, "--json")
    assert shown.code == 0 and shown.json()["version"] == "2"  # the latest active version

    retired = edgechain("model", "retire", "stories260K", "--version", "2", "--dir", net)
    assert retired.code == 0, retired.err
    assert "retired stories260K version 2" in retired.out and "height 2" in retired.out

    active = edgechain("model", "list", "--dir", net, "--json").json()
    assert [m["version"] for m in active] == ["1"]
    everything = edgechain("model", "list", "--all", "--dir", net, "--json").json()
    assert [(m["version"], m["status"]) for m in everything] == [("1", "active"), ("2", "retired")]
    assert everything[1]["retired_height"] == 2 and everything[1]["certificate_height"] == 2

    latest = edgechain("model", "show", "stories260K", "--dir", net)
    assert latest.code == 0 and "stories260K version 1" in latest.out
    old = edgechain("model", "show", "stories260K", "--version", "2", "--dir", net)
    assert old.code == 0 and "retired at height 2" in old.out
    assert stories260k.weights_blake3 in old.out


def test_retiring_twice_or_an_unknown_model_is_rejected(net: Path, served: WeightServer) -> None:
    assert publish_urls(net, served).code == 0
    retire = ("model", "retire", "stories260K", "--version", "1", "--dir", net)
    assert edgechain(*retire, "--json").json()["signers"] == ["v1", "v2", "v3"]
    edgechain(*retire).assert_user_error(5, "already retired")
    edgechain("model", "retire", "nope", "--version", "1", "--dir", net).assert_user_error(
        5, "not registered"
    )
    edgechain("model", "show", "stories260K", "--dir", net).assert_user_error(
        6, "every version of model stories260K is retired"
    )
    edgechain("model", "retire", "stories260K", "--dir", net).assert_user_error(2, "--version")


def test_show_an_unknown_model_is_a_service_error(net: Path) -> None:
    edgechain("model", "show", "nope", "--dir", net).assert_user_error(6, "no model named nope")
    edgechain("model", "show", "nope", "--version", "3", "--dir", net, "--json").assert_user_error(
        6, "no model nope version 3"
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_on_a_terminal_only() -> None:
    terminal = _Terminal()
    bar = ProgressBar(terminal)
    bar("hashing weights", 512, 1024)
    bar("hashing weights", 1024, 1024)
    bar("hashing tokenizer", 10, 10)
    bar.close()
    text = terminal.getvalue()
    assert "\rhashing weights" in text and " 50%" in text and "100%" in text
    assert "\nhashing tokenizer" not in text and "\n\rhashing tokenizer" in text
    assert text.endswith("\n")

    pipe = io.StringIO()
    quiet = ProgressBar(pipe)
    quiet("hashing weights", 1, 2)
    quiet.close()
    assert pipe.getvalue() == ""


def test_publish_draws_the_progress_bar_when_stderr_is_a_terminal(
    net: Path, served: WeightServer, stories260k: ModelFiles
) -> None:
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [
                sys.executable, "-m", "edgechain.cli", "model", "publish", "stories260K",
                "--dir", str(net),
                "--weights", str(stories260k.weights), "--tokenizer", str(stories260k.tokenizer),
                "--weights-url", served.url("stories260K.bin"),
                "--tokenizer-url", served.url("tok512.bin"),
            ],
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
            timeout=60,
        )  # fmt: skip
        os.close(slave)
        slave = -1
        drawn = b""
        while True:
            try:
                piece = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not piece:
                break
            drawn += piece
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert done.returncode == 0
    text = drawn.decode()
    assert "hashing weights" in text and "hashing tokenizer" in text and "100%" in text
    assert "hashing" not in done.stdout


def test_show_names_the_weight_format_once_this_machine_holds_the_weights(
    net: Path, served: WeightServer, tmp_path: Path, stories260k: ModelFiles
) -> None:
    assert publish_urls(net, served).code == 0
    before = edgechain("model", "show", "stories260K", "--dir", net)
    assert "weights as   not known here yet" in before.out
    generated = edgechain("generate", "--model", "stories260K", "-n", "2", "--dir", net)
    assert generated.code == 0, generated.err
    after = edgechain("model", "show", "stories260K", "--dir", net)
    assert "weights as   f32\n" in after.out and "stored on chain" not in after.out
    int8 = tmp_path / "stories260K_q8.bin"
    assert edgechain("quantize", stories260k.weights, int8).code == 0
    on_chain = edgechain(
        "model", "publish", "q8", "--dir", net, "--weights", int8,
        "--tokenizer", stories260k.tokenizer, "--blobs",
    )  # fmt: skip
    assert on_chain.code == 0, on_chain.err
    assert "weights as   int8 (Q8_0, group size 4)" in on_chain.out
    assert "stored on chain as 1 blob\n" in on_chain.out
    # What the README says of the size: (1 + 4/N)/4 of f32, so half at stories260K's N = 4.
    ratio = int8.stat().st_size / stories260k.weights.stat().st_size
    assert 0.49 < ratio < 0.52, ratio
