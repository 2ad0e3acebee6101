"""A GGUF model through the node: ``publishModel`` with ``format: "gguf"`` (one file, no
tokenizer) certifies an entry whose tokenizer is the file itself, and the SSE stream tells
run.c's golden story from the converted stories260K."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import (
    GOLDEN,
    STORIES_DIR,
    file_input,
    running_node,
    stream_generation,
)

from edgechain.convert import convert_to_gguf
from edgechain.testing.weight_server import WeightServer

PROMPT = "Once upon a time"
PUBLISH_GGUF = """
mutation Publish($name: String!, $w: FileInput!) {
  publishModel(name: $name, weights: $w, format: "gguf") {
    name format weights { blake3 size urls } tokenizer { blake3 size urls }
  }
}
"""


@pytest.fixture
def served_gguf(tmp_path: Path) -> Iterator[tuple[Path, WeightServer]]:
    directory = tmp_path / "served"
    directory.mkdir()
    out = directory / "stories260K.gguf"
    convert_to_gguf(STORIES_DIR / "stories260K.bin", STORIES_DIR / "tok512.bin", out, "f32")
    with WeightServer(directory) as server:
        yield out, server


def test_node_publishes_a_gguf_model_and_streams_run_c_text(
    network_dir: Path, served_gguf: tuple[Path, WeightServer]
) -> None:
    path, server = served_gguf
    with running_node(network_dir) as node:
        variables = {"name": "s260-gguf", "w": file_input(path, server.url(path.name))}
        published = node.data(PUBLISH_GGUF, variables)["publishModel"]
        assert published["format"] == "gguf"
        assert published["tokenizer"] == published["weights"]
        events = stream_generation(
            node, model="s260-gguf", prompt=PROMPT, temperature=0, maxTokens=200
        )
    assert [e.event for e in events][-1] == "done"
    streamed = "".join(e.data["text"] for e in events[:-1])
    golden = GOLDEN.read_text(encoding="utf-8")[len(PROMPT) :]
    assert len(streamed) > 400 and streamed == golden[: len(streamed)]
