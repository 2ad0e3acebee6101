"""examples/story_demo.py, run as a user runs it, and its hub fallback's known files."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import blake3
import pytest

from edgechain.client import Client
from edgechain.testing.models import ModelFiles

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = REPO_ROOT / "examples" / "story_demo.py"


def run_demo(*args: str | Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(DEMO), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, time.perf_counter() - started


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("story_demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_tells_a_verified_story_in_seconds(stories260k: ModelFiles) -> None:
    done, seconds = run_demo("--models-dir", stories260k.directory, "-t", "0", "-n", "40")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "faulty: v4=offline" in out and "a certificate needs 3 signatures" in out
    assert "published stories260K version 1: certified at height 0 by v1, v2, v3" in out
    assert "Once upon a time, there was a little girl named Lily" in out
    assert f"weights      blake3 {stories260k.weights_blake3}" in out
    assert f"tokenizer    blake3 {stories260k.tokenizer_blake3}" in out
    assert "signed by v1, v2, v3 (quorum 3 of 4)" in out
    assert "derived from the chain id, block hash, application id and query" in out
    assert "generated    40 tokens" in out and "tokens/s, stop: max_tokens" in out
    assert seconds < 30, f"the demo took {seconds:.1f} s"


def test_the_demo_takes_faults_a_seed_and_a_network_directory(tmp_path: Path) -> None:
    args = ("--dir", tmp_path / "net", "--validators", "7", "--faulty", "v1=offline,v6=bad-sig")
    done, _ = run_demo(*args, "-s", "42", "-n", "10", "-i", "Lily")
    assert done.returncode == 0, done.stderr
    assert "faulty: v1=offline, v6=bad-signature" in done.stdout
    assert "certified at height 0 by v2, v3, v4, v5, v7" in done.stdout
    assert "(quorum 5 of 7)" in done.stdout
    assert "seed         42 (given with the query)" in done.stdout
    assert "\nLily" in done.stdout
    assert (tmp_path / "net" / "network.json").is_file()  # kept: the user chose the directory


def test_the_demo_reports_user_errors_in_one_line(tmp_path: Path) -> None:
    done, _ = run_demo("--models-dir", tmp_path / "absent")
    assert done.returncode == 3
    assert done.stderr.strip() == f"error: --models-dir {tmp_path / 'absent'}: no such directory"
    done, _ = run_demo("--models-dir", tmp_path, "-n", "5")  # exists, but holds no model
    assert done.returncode == 3 and "stories260K.bin: no such file" in done.stderr
    done, _ = run_demo("--faulty", "v1=offline,v2=offline", "-n", "5")
    assert done.returncode == 4 and "no quorum" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_hub_fallback_registers_the_known_files(
    demo: ModuleType, stories260k: ModelFiles, edgechain_network: Client
) -> None:
    for path in (stories260k.weights, stories260k.tokenizer):
        known = demo.HUB_FILES[path.name]
        data = path.read_bytes()
        assert (known.blake3, known.size) == (blake3.blake3(data).hexdigest(), len(data))
        (url,) = known.urls
        assert url.startswith("https://huggingface.co/") and url.endswith("/" + path.name)
    assert "huggingface.co" in demo.HUB_HOSTS
    demo.publish_hub(edgechain_network)  # registers only: nothing is downloaded
    entry = edgechain_network.model("stories260K").entry
    assert entry.weights == demo.HUB_FILES["stories260K.bin"]
    assert entry.tokenizer == demo.HUB_FILES["tok512.bin"]
