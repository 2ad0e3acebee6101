"""Download progress (bytes, rate, time left) on a terminal only, and publishing from a URL that
streams through a temporary file while hashing, never holding the file in memory."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import blake3
from service_helpers import MODELS

from edgechain.cli.progress import ProgressBar, render
from edgechain.client import Client, download_file
from edgechain.service.fetch import FetchPolicy
from edgechain.testing.weight_server import WeightServer


def test_the_line_shows_bytes_rate_and_time_left() -> None:
    line = render("downloading weights", 3 << 20, 12 << 20, elapsed=1.5)
    assert line.startswith("downloading weights")
    assert "25%" in line and "3.0/12.0 MiB" in line
    assert "2.0 MiB/s" in line and "0:05 left" in line
    assert "MiB/s" in render("downloading weights", 5 << 20, None, elapsed=1.0)


def test_the_bar_draws_on_a_terminal_and_is_quiet_otherwise() -> None:
    drawn = io.StringIO()
    bar = ProgressBar(drawn, force=True)
    bar("downloading weights", 10, 100)
    bar("downloading weights", 100, 100)
    bar.close()
    text = drawn.getvalue()
    assert text.count("\r") == 2 and "100%" in text and text.endswith("\n")
    quiet = io.StringIO()  # not a tty
    bar = ProgressBar(quiet)
    bar("downloading weights", 10, 100)
    bar.close()
    assert quiet.getvalue() == ""


def test_download_file_streams_with_bounded_memory() -> None:
    size = 24 << 20
    data = os.urandom(size)
    with WeightServer({"big.bin": data, "small.bin": b"warm-up"}) as server:
        seen: list[tuple[int, int | None]] = []
        download_file(server.url("small.bin"))  # first-use allocations (imports, TLS setup)
        tracemalloc.start()
        try:
            hashed = download_file(
                server.url("big.bin"), FetchPolicy(), lambda d, t: seen.append((d, t))
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (hashed.blake3, hashed.size) == (blake3.blake3(data).hexdigest(), size)
    assert hashed.data is None
    assert peak < size // 8, f"peak {peak} bytes while downloading {size}"
    assert seen[-1] == (size, size)


def test_publish_from_urls_reports_each_download(tmp_path: Path) -> None:
    events: list[tuple[str, int, int | None]] = []
    with WeightServer(MODELS) as server, Client.up(tmp_path / "net", validators=4) as client:
        published = client.publish_model(
            "stories260K",
            weights=server.url("stories260K.bin"),
            tokenizer=server.url("tok512.bin"),
            progress=lambda *event: events.append(event),
        )
    weights = (MODELS / "stories260K.bin").read_bytes()
    assert published.model.entry.weights.blake3 == blake3.blake3(weights).hexdigest()
    labels = {label for label, _, _ in events}
    assert labels == {"downloading weights", "downloading tokenizer"}
    last = [e for e in events if e[0] == "downloading weights"][-1]
    assert last[1:] == (len(weights), len(weights))


def _on_a_terminal(command: list[str]) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run ``command`` with stderr on a pseudo-terminal; the result and what it drew there.

    The terminal is drained while the command runs: a pty holds only a few KiB, and a slow
    (loaded) run draws more lines, which would block the command on a full terminal."""
    master, slave = pty.openpty()
    pieces: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                piece = os.read(master, 4096)
            except OSError:  # EIO: the other end is closed and drained
                return
            if not piece:
                return
            pieces.append(piece)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        done = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=slave, text=True, timeout=120
        )
    finally:
        os.close(slave)
        reader.join(timeout=10)
        os.close(master)
    return done, b"".join(pieces).decode(errors="replace")


def test_the_cli_draws_download_progress_for_publish_and_the_first_generate(
    tmp_path: Path,
) -> None:
    net = tmp_path / "net"
    Client.up(net, validators=4).close()
    cli = [sys.executable, "-m", "edgechain.cli"]
    with WeightServer(MODELS) as server:
        published, drawn = _on_a_terminal(
            [
                *cli, "model", "publish", "stories260K", "--dir", str(net),
                "--weights", server.url("stories260K.bin"),
                "--tokenizer", server.url("tok512.bin"),
            ]
        )  # fmt: skip
        assert published.returncode == 0, drawn
        assert "downloading weights" in drawn and "downloading tokenizer" in drawn
        assert "MiB/s" in drawn and "left" in drawn
        first, drawn = _on_a_terminal(
            [*cli, "generate", "--dir", str(net), "--model", "stories260K", "-i", "Once",
             "-n", "4", "-t", "0"]
        )  # fmt: skip
        assert first.returncode == 0, drawn
        assert "downloading weights" in drawn and "100%" in drawn
        assert "downloading" not in first.stdout
        again, drawn = _on_a_terminal(
            [*cli, "generate", "--dir", str(net), "--model", "stories260K", "-i", "Once",
             "-n", "4", "-t", "0"]
        )  # fmt: skip
        assert again.returncode == 0 and "downloading" not in drawn  # cached: no download
