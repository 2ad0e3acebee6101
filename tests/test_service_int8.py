"""An int8 checkpoint through the whole service: publish, certified fetch, verify, generate."""

from __future__ import annotations

from pathlib import Path

from edgechain.client import Client
from edgechain.quantize import quantize_checkpoint
from edgechain.service.runtime import GenerateQuery
from edgechain.testing.models import ModelFiles
from edgechain.testing.pytest_plugin import PublishModel

GOLDEN = (
    Path(__file__).parent / "engine" / "golden" / "stories260K_q8_greedy_once_upon_a_time_256.txt"
)


def test_an_int8_model_publishes_verifies_and_generates_runq_c_text(
    edgechain_network: Client, publish_model: PublishModel, stories260k: ModelFiles, tmp_path: Path
) -> None:
    int8 = tmp_path / "stories260K_q8.bin"
    quantize_checkpoint(stories260k.weights, int8)
    publish_model("stories260K-int8", int8, stories260k.tokenizer)
    query = GenerateQuery(
        model="stories260K-int8", prompt="Once upon a time", max_tokens=200, temperature=0
    )
    stream = edgechain_network.generate(query)
    pieces = [t.text for t in stream]
    record = stream.record
    assert record is not None and record.output_tokens == 200
    text = stream.prompt_text + "".join(pieces)
    golden = GOLDEN.read_text(encoding="utf-8")
    assert len(text) > 400 and text == golden[: len(text)]
