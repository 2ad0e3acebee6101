"""Every example in ``edgechain <command> --help`` runs as written.

The examples are read from each command's help (every command and sub-command of the parser
tree, in order) and run through a shell, as a user would paste them, in one working directory
holding stories260K.bin and tok512.bin. The only thing supplied is the network: each help page's
examples run against a fresh copy of a network with stories260K published (``EDGECHAIN_DIR``),
whose files a plain ``python -m http.server 8000`` serves, as the examples' URLs expect.
Examples that give ``--dir`` use their own directory. ``serve`` runs until it has printed its
address, then is stopped with Ctrl+C (SIGINT) and must exit 0.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_helpers import STORIES_DIR
from service_helpers import publish_stories

from edgechain.cli import build_parser
from edgechain.client import Client
from edgechain.service.engine.wasm import PACKAGED_GUEST

WEIGHTS_PORT = 8000  # the port the examples' URLs name
MODEL_FILES = ("stories260K.bin", "tok512.bin")


def help_pages() -> Iterator[tuple[str, str]]:
    """(command, help text) for every command and sub-command, in the parser's order."""

    def walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, str]]:
        yield path, parser.format_help()  # what `<path> --help` prints
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}")

    yield from walk(build_parser(), "edgechain")


def examples(help_text: str) -> list[str]:
    """The command lines under the help's ``example:``/``examples:`` heading, continuation
    lines (ending in a backslash) joined."""
    lines = help_text.splitlines()
    found: list[str] = []
    for start, line in enumerate(lines):
        if re.fullmatch(r"examples?:", line.strip()) and not line.startswith(" "):
            pending = ""
            for item in lines[start + 1 :]:
                if not item.startswith("  "):
                    break
                text = item.strip()
                if text.endswith("\\"):
                    pending += text[:-1].rstrip() + " "
                    continue
                text, pending = pending + text, ""
                if text.startswith("edgechain "):
                    found.append(text)
    return found


def test_examples_are_found_in_the_help_of_each_command_group() -> None:
    pages = dict(help_pages())
    for command in ("edgechain net", "edgechain model", "edgechain generate", "edgechain chain"):
        assert examples(pages[command]), command
    assert examples("examples:\n  edgechain a \\\n      --b c\n  edgechain d\n\nx") == [
        "edgechain a --b c",
        "edgechain d",
    ]


@pytest.fixture(scope="module")
def weights_http_server() -> Iterator[str]:
    """``python -m http.server 8000`` serving the stories260K files."""
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(WEIGHTS_PORT), "--bind", "127.0.0.1",
         "--directory", str(STORIES_DIR)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{WEIGHTS_PORT}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"port {WEIGHTS_PORT} is taken: the examples need it"
            try:
                httpx.head(f"{base}/tok512.bin", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "http.server did not start"
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def published_network(tmp_path_factory: pytest.TempPathFactory, weights_http_server: str) -> Path:
    """A network with stories260K version 1 published (and a second model, so it has two
    blocks), served by the http.server, and a second chain, bob's."""
    directory = tmp_path_factory.mktemp("examples") / "template-net"
    with Client.up(directory, validators=4) as client:
        for name in ("stories260K", "tiny"):
            publish_stories(client, weights_http_server, name, version="1")
        client.open_chain("bob")
    return directory


def run_example(line: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``line`` in a shell; its exit code and output."""
    if line.split()[1] == "serve":  # runs until stopped: stop it once it serves
        process = subprocess.Popen(
            ["bash", "-c", f"exec {line}"], cwd=cwd, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert process.stdout is not None
        first = process.stdout.readline()
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        return process.returncode, first + rest
    done = subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=env, text=True, capture_output=True,
        stdin=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def test_every_help_example_runs_as_written(published_network: Path, tmp_path: Path) -> None:
    assert PACKAGED_GUEST.is_file(), "the wasm guest is missing: run scripts/build_guest.sh"
    session = tmp_path / "session"  # the user's working directory, with the model files
    session.mkdir()
    for name in MODEL_FILES:
        shutil.copyfile(STORIES_DIR / name, session / name)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    ran, failures = 0, []
    for page, (command, help_text) in enumerate(help_pages()):
        if command == "edgechain":
            continue  # the top-level help's first-session synopsis has placeholders (NAME, F)
        network = tmp_path / f"net-{page}"  # each help page starts from the published network
        shutil.copytree(published_network, network)
        env = {**os.environ, "PATH": path, "EDGECHAIN_DIR": str(network), "CI": "true"}
        for line in examples(help_text):
            code, output = run_example(line, session, env)
            ran += 1
            if code != 0:
                failures.append(f"`{command} --help`: {line}\n  exit {code}: {output[-600:]}")
    assert not failures, "\n".join(failures)
    assert ran >= 15


def test_run_and_generate_say_what_n_counts_on_their_first_help_line() -> None:
    pages = dict(help_pages())
    first_line = {
        command: pages[f"edgechain {command}"].split("\n\n")[1].replace("\n", " ")
        for command in ("run", "generate")
    }
    assert "-n counts positions, the prompt's included" in first_line["run"]
    assert "-n counts new tokens, the prompt's excluded" in first_line["generate"]


def test_every_positional_argument_has_help() -> None:
    def walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}")
            elif not action.option_strings:
                yield path, action

    missing = [f"{path}: {action.metavar or action.dest}" for path, action in
               walk(build_parser(), "edgechain") if not action.help]  # fmt: skip
    assert missing == []
