"""Helpers for the `edgechain serve` tests: run the node as a subprocess, talk GraphQL and SSE."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import blake3
import httpx

from edgechain.testing.models import STORIES260K_GOLDEN, stories260k
from edgechain.testing.synth import shape_named, synthesize

REPO_ROOT = Path(__file__).resolve().parents[1]
STORIES_DIR = stories260k().directory
GOLDEN = STORIES_DIR / STORIES260K_GOLDEN
START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command(directory: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "edgechain.cli", "serve",
        "--dir", str(directory), "--port", str(port), *extra,
    ]  # fmt: skip


@dataclass
class NodeProcess:
    """A running `edgechain serve` and the URLs of its registry application (and of its story
    book application: ``story_path``)."""

    process: subprocess.Popen[str]
    stderr: IO[str]  # a file, not a pipe: a chatty node must never block on a full pipe
    base_url: str
    app_path: str
    chain_id: str
    application_id: str
    story_path: str

    @property
    def graphql_url(self) -> str:
        return self.base_url + self.app_path

    @property
    def generate_url(self) -> str:
        return self.graphql_url + "/generate"

    def graphql(
        self, query: str, variables: dict[str, Any] | None = None, path: str | None = None
    ) -> dict[str, Any]:
        """POST a GraphQL request to the registry (or to ``path``); the decoded response body
        (``data``/``errors``)."""
        response = httpx.post(
            self.base_url + (path or self.app_path),
            json={"query": query, "variables": variables or {}},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def data(
        self, query: str, variables: dict[str, Any] | None = None, path: str | None = None
    ) -> dict[str, Any]:
        """POST a GraphQL request that must succeed; its ``data``."""
        body = self.graphql(query, variables, path)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def story_data(self, query: str) -> dict[str, Any]:
        """``data`` of a request to the story book application."""
        return self.data(query, path=self.story_path)


def start_node(
    directory: Path,
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
    stdout: IO[str] | None = None,
) -> NodeProcess:
    """Start `edgechain serve` on ``directory`` (with ``env`` added to the environment, ``extra``
    flags, stdout to the ``stdout`` file or nowhere) and wait until ``GET /`` answers."""
    port = free_port()
    stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (stop_node closes it)
    process = subprocess.Popen(
        serve_command(directory, port, *extra),
        stdout=subprocess.DEVNULL if stdout is None else stdout,
        stderr=stderr,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            stderr.seek(0)
            raise AssertionError(f"edgechain serve exited {process.returncode}: {stderr.read()}")
        try:
            index = httpx.get(base_url + "/", timeout=5).json()
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                process.kill()
                raise AssertionError("edgechain serve did not answer in time") from None
            time.sleep(0.1)
    chain = index["chains"][0]
    apps = {app["kind"]: app for app in chain["applications"]}
    app = apps["model-registry"]
    return NodeProcess(
        process,
        stderr,
        base_url,
        app["graphql"],
        chain["chainId"],
        app["applicationId"],
        apps["story-book"]["graphql"],
    )


def stop_node(node: NodeProcess, sig: signal.Signals = signal.SIGTERM) -> tuple[int, str]:
    """Stop the node with ``sig`` (SIGKILL if it lingers); its exit code and stderr."""
    process = node.process
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    node.stderr.seek(0)
    err = node.stderr.read()
    node.stderr.close()
    return process.returncode, err


@contextmanager
def running_node(directory: Path, **options: Any) -> Iterator[NodeProcess]:
    """A node started on ``directory`` (``options`` as for start_node), stopped on exit."""
    node = start_node(directory, **options)
    try:
        yield node
    finally:
        stop_node(node)


def file_input(path: Path, url: str) -> dict[str, Any]:
    """The GraphQL FileInput of a local file served at ``url``."""
    data = path.read_bytes()
    return {"blake3": blake3.blake3(data).hexdigest(), "size": len(data), "urls": [url]}


def publish_files(
    node: NodeProcess, name: str, weights: Path, tokenizer: Path, base_url: str, version: str = "1"
) -> dict[str, Any]:
    """The node's ``publishModel`` of two local files, served at ``base_url/<file name>``."""
    variables = {
        "name": name,
        "version": version,
        "w": file_input(weights, f"{base_url}/{weights.name}"),
        "t": file_input(tokenizer, f"{base_url}/{tokenizer.name}"),
    }
    return node.data(PUBLISH, variables)["publishModel"]


PUBLISH = """
mutation Publish($name: String!, $version: String!, $w: FileInput!, $t: FileInput!) {
  publishModel(name: $name, version: $version, weights: $w, tokenizer: $t,
               description: "tiny stories", license: "MIT") {
    name version height blockHash signers retired
    weights { blake3 size urls }
    tokenizer { blake3 size urls }
  }
}
"""


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: Any


def sse_events(response: httpx.Response) -> Iterator[SseEvent]:
    """Parse a text/event-stream response into events (JSON data)."""
    event, data_lines = "message", []
    for line in response.iter_lines():
        if line == "":
            if data_lines:
                yield SseEvent(event, json.loads("\n".join(data_lines)))
            event, data_lines = "message", []
        elif line.startswith("event:"):
            event = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data_lines.append(line[len("data:") :].lstrip(" "))


def stream_generation(node: NodeProcess, **params: Any) -> list[SseEvent]:
    """Every event of one SSE generation, in order."""
    with httpx.stream("GET", node.generate_url, params=params, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(sse_events(response))


def subscribe(node: NodeProcess, query: str, path: str | None = None) -> list[dict[str, Any]]:
    """Run a GraphQL subscription over graphql-transport-ws; every message after the ack, up to
    and including ``complete`` or ``error``."""
    from websockets.sync.client import connect

    url = "ws" + node.base_url.removeprefix("http") + (path or node.app_path)
    with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=30) as ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "connection_ack"
        ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        messages = []
        while True:
            message = json.loads(ws.recv(timeout=120))
            messages.append(message)
            if message["type"] in ("complete", "error"):
                return messages


def stories_and_synthetic(directory: Path, name: str, seed: int) -> None:
    """Put stories260K's files in ``directory``, and a synthetic 260K-shaped model ``name``
    (``<name>.bin``, ``<name>_tok.bin``; ``seed`` picks its weights)."""
    for file in ("stories260K.bin", "tok512.bin"):
        (directory / file).write_bytes((STORIES_DIR / file).read_bytes())
    synthesize(shape_named("260K"), seed, directory / f"{name}.bin", directory / f"{name}_tok.bin")


def publish_stories_and_synthetic(
    node: NodeProcess, directory: Path, base_url: str, name: str
) -> None:
    """Publish the two models :func:`stories_and_synthetic` wrote, served at ``base_url``."""
    publish_files(
        node, "stories260K", directory / "stories260K.bin", directory / "tok512.bin", base_url
    )
    publish_files(node, name, directory / f"{name}.bin", directory / f"{name}_tok.bin", base_url)
