"""One network directory, many processes: publishers, verifiers, generators and a node at once.

Every process is a real `edgechain` CLI call (or `edgechain serve`) against the same directory.
Writers take turns on SQLite's write lock and build on the newest head; readers read blocks and
state in one snapshot. So nothing may fail: no "tampered storage" alarm, no lost publish.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from network_cli_helpers import REPO_ROOT, edgechain
from serve_helpers import PUBLISH, file_input, start_node, stop_node

from edgechain.testing.models import ModelFiles
from edgechain.testing.weight_server import WeightServer

PUBLISHERS = 2
PUBLISHES_EACH = 8
VERIFIERS = 12
NODE_PUBLISHES = 4


def _cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "edgechain.cli", *map(str, args)]


def test_publishers_verifiers_generators_and_a_node_share_one_directory(
    stories_net: Path, stories260k: ModelFiles, weight_server: WeightServer
) -> None:
    failures: list[str] = []
    counts = {"publish": 0, "verify": 0, "generate": 0, "node": 0, "node-publish": 0}
    lock = threading.Lock()
    publishing = threading.Event()

    def record(kind: str, code: int, text: str) -> None:
        with lock:
            counts[kind] += 1
            if code != 0:
                failures.append(f"{kind} exited {code}: {text.strip()[-300:]}")

    def publisher(index: int) -> None:
        for n in range(PUBLISHES_EACH):
            result = edgechain(
                "model", "publish", f"p{index}-m{n}", "--dir", stories_net,
                "--weights", stories260k.weights, "--tokenizer", stories260k.tokenizer,
                "--weights-url", weight_server.url("stories260K.bin"),
                "--tokenizer-url", weight_server.url("tok512.bin"),
            )  # fmt: skip
            record("publish", result.code, result.err)

    def generator() -> None:
        while publishing.is_set() or counts["generate"] < 2:
            result = edgechain(
                "generate", "--model", "stories260K", "--dir", stories_net, "-i", "Once", "-n", "4"
            )
            record("generate", result.code, result.err)

    def node_publisher() -> None:
        files = {
            "w": file_input(stories260k.weights, weight_server.url("stories260K.bin")),
            "t": file_input(stories260k.tokenizer, weight_server.url("tok512.bin")),
        }
        for n in range(NODE_PUBLISHES):
            body = node.graphql(PUBLISH, {"name": f"node-m{n}", "version": "1", **files})
            record("node-publish", 1 if "errors" in body else 0, str(body.get("errors")))

    def node_reader() -> None:
        while publishing.is_set() or counts["node"] < 2:
            body = node.graphql("{ models { name } blocks { height } }")
            record("node", 1 if "errors" in body else 0, str(body.get("errors")))

    node = start_node(stories_net)
    try:
        publishing.set()
        publishers = [threading.Thread(target=publisher, args=(i,)) for i in range(PUBLISHERS)]
        publishers.append(threading.Thread(target=node_publisher))
        others = [threading.Thread(target=generator), threading.Thread(target=node_reader)]
        for thread in publishers + others:
            thread.start()
        # Twelve verifications at once, while the publishers run.
        verifiers = [
            subprocess.Popen(
                _cli("chain", "verify", "--dir", stories_net),
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(VERIFIERS)
        ]
        for process in verifiers:
            out, err = process.communicate(timeout=120)
            record("verify", process.returncode, err)
        for thread in publishers:
            thread.join(timeout=300)
        publishing.clear()
        for thread in others:
            thread.join(timeout=300)
        models = node.data("{ models { name } }")["models"]
    finally:
        publishing.clear()
        code, node_err = stop_node(node)

    assert failures == [], failures
    assert counts["publish"] == PUBLISHERS * PUBLISHES_EACH
    assert counts["verify"] == VERIFIERS
    assert counts["generate"] >= 2 and counts["node"] >= 2
    assert "Traceback" not in node_err, node_err
    assert counts["node-publish"] == NODE_PUBLISHES
    published = {f"p{i}-m{n}" for i in range(PUBLISHERS) for n in range(PUBLISHES_EACH)}
    published |= {f"node-m{n}" for n in range(NODE_PUBLISHES)}
    assert published <= {m["name"] for m in models}  # the node saw every block
    listed = edgechain("model", "list", "--dir", stories_net, "--json")
    assert listed.code == 0, listed.err
    assert published <= {m["name"] for m in listed.json()}
    assert len(listed.json()) == len(published) + 1
    verify = edgechain("chain", "verify", "--dir", stories_net, "--json")
    assert verify.code == 0 and verify.json()["blocks"] == len(published) + 1
