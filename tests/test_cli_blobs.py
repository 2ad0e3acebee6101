"""Issue 11's check, end to end through the CLI: a testnet-policy network, the real stories260K
published with ``--blobs`` and no HTTP server anywhere, blocks shown, run.c's greedy text
reproduced, the chain verified."""

from __future__ import annotations

from pathlib import Path

from network_cli_helpers import edgechain

from edgechain.testing.models import ModelFiles

PROMPT = "Once upon a time"


def test_testnet_blob_model_generates_run_c_greedy_text(
    tmp_path: Path, stories260k: ModelFiles
) -> None:
    net = tmp_path / "net"
    up = edgechain("net", "up", "--dir", net, "--validators", "4", "--policy", "testnet")
    assert up.code == 0, up.err
    published = edgechain(
        "model",
        "publish",
        "stories260K",
        "--dir",
        net,
        "--weights",
        stories260k.weights,
        "--tokenizer",
        stories260k.tokenizer,
        "--blobs",
    )
    assert published.code == 0, published.err
    assert "3 chunks, 3 published now in 1 blocks" in published.out

    shown = edgechain("chain", "show", "--dir", net, "--json").json()
    blob_blocks = [b for b in shown["blocks"] if b["blobs"]]
    assert [len(b["blobs"]) for b in blob_blocks] == [3]
    assert sorted(b["size"] for b in blob_blocks[0]["blobs"]) == [6_227, 56_540, 1_000_000]
    manifest = shown["blocks"][-1]["operations"][0]
    assert manifest["name"] == "RegisterModel" and blob_blocks[0]["height"] == 0
    chunks = manifest["payload"]["weights"]["chunks"]
    assert [c[0] for c in chunks] == [b["blob"] for b in blob_blocks[0]["blobs"][:2]]

    probe = edgechain(
        "generate", "--dir", net, "--model", "stories260K", "-i", PROMPT, "-n", "1", "--json"
    )
    assert probe.code == 0, probe.err
    # run.c -n 256 predicts a token at every position from the prompt's last one to 255.
    steps = 257 - probe.json()["input_tokens"]
    greedy = edgechain(
        "generate", "--dir", net, "--model", "stories260K", "-i", PROMPT, "-t", "0", "-n", steps
    )
    assert greedy.code == 0, greedy.err
    golden = (stories260k.directory / "greedy_once_upon_a_time_256.txt").read_text()
    assert greedy.out == golden

    verified = edgechain("chain", "verify", "--dir", net)
    assert verified.code == 0, verified.err
    assert "ok: 2 blocks on 1 chain(s) verified" in verified.out
    assert "ok: 3 stored blobs match their ids" in verified.out


def test_blobs_publish_local_files_only(tmp_path: Path, stories260k: ModelFiles) -> None:
    net = tmp_path / "net"
    assert edgechain("net", "up", "--dir", net, "--validators", "1").code == 0
    result = edgechain(
        "model", "publish", "m", "--dir", net, "--blobs",
        "--weights", "http://127.0.0.1:9/stories260K.bin", "--tokenizer", stories260k.tokenizer,
    )  # fmt: skip
    result.assert_user_error(2, "weights: --blobs publishes local files, not a URL")
    tiny = tmp_path / "tiny.json"
    tiny.write_text('{"maximum_block_proposal_size": 70000}')
    assert edgechain("net", "up", "--dir", tmp_path / "t", "--policy", tiny).code == 0
    result = edgechain(
        "model", "publish", "m", "--dir", tmp_path / "t", "--blobs",
        "--weights", stories260k.weights, "--tokenizer", stories260k.tokenizer,
    )  # fmt: skip
    result.assert_user_error(5, "maximum_block_proposal_size", "allowance of 70000")
