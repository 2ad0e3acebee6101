"""An int8 checkpoint through the whole service: publish, certified fetch, verify, generate."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgechain.client import Client
from edgechain.quantize import quantize_checkpoint
from edgechain.service.fetch import FetchPolicy
from edgechain.service.runtime import GenerateQuery
from edgechain.testing.weight_server import WeightServer

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO.parent / "shared" / "models" / "stories260K"
GOLDEN = REPO / "tests" / "engine" / "golden" / "stories260K_q8_greedy_once_upon_a_time_256.txt"


@pytest.fixture()
def int8_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "models"
    directory.mkdir()
    quantize_checkpoint(MODELS / "stories260K.bin", directory / "stories260K_q8.bin")
    shutil.copy(MODELS / "tok512.bin", directory / "tok512.bin")
    return directory


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[Client]:
    policy = FetchPolicy(read_timeout=0.5, connect_timeout=0.5, total_timeout=5.0)
    with Client.up(tmp_path / "net", validators=4, fetch_policy=policy) as c:
        yield c


def test_an_int8_model_publishes_verifies_and_generates_runq_c_text(
    client: Client, int8_dir: Path
) -> None:
    with WeightServer(int8_dir) as server:
        client.publish_model(
            "stories260K-int8",
            weights=int8_dir / "stories260K_q8.bin",
            tokenizer=int8_dir / "tok512.bin",
            weights_urls=[server.url("stories260K_q8.bin")],
            tokenizer_urls=[server.url("tok512.bin")],
        )
        query = GenerateQuery(
            model="stories260K-int8", prompt="Once upon a time", max_tokens=200, temperature=0
        )
        stream = client.generate(query)
        pieces = [t.text for t in stream]
    record = stream.record
    assert record is not None and record.output_tokens == 200
    text = stream.prompt_text + "".join(pieces)
    golden = GOLDEN.read_text(encoding="utf-8")
    assert len(text) > 400 and text == golden[: len(text)]
