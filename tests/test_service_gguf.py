"""A GGUF model through the whole service: `edgechain convert`, publish (one file: weights and
tokenizer), certified fetch, verify, generate; by URL through the CLI, and as blobs through the
Client. The converted stories260K (f32) must tell run.c's golden story."""

from __future__ import annotations

from pathlib import Path

import pytest
from network_cli_helpers import edgechain, make_network

from edgechain.chain import Network
from edgechain.client import Client
from edgechain.convert import convert_to_gguf
from edgechain.errors import UsageError
from edgechain.service.runtime import GenerateQuery
from edgechain.testing.models import ModelFiles, stories260k_golden
from edgechain.testing.weight_server import WeightServer

PROMPT = "Once upon a time"


@pytest.fixture
def gguf(stories260k: ModelFiles, weight_server_dir: Path) -> Path:
    """stories260K converted to GGUF (f32), in the directory the weight server serves."""
    out = weight_server_dir / "stories260K.gguf"
    convert_to_gguf(stories260k.weights, stories260k.tokenizer, out, "f32")
    return out


def test_cli_publishes_a_gguf_url_and_generates_run_c_text(
    tmp_path: Path, weight_server: WeightServer, gguf: Path, stories260k: ModelFiles
) -> None:
    net = make_network(tmp_path / "net")
    url = weight_server.url(gguf.name)
    published = edgechain(
        "model", "publish", "s260-gguf", "--dir", net, "--weights", url, "--json"
    )  # fmt: skip
    assert published.code == 0, published.err
    entry = published.json()
    assert entry["format"] == "gguf"
    assert entry["tokenizer"] == entry["weights"]
    assert entry["weights"]["urls"] == [url]
    golden = stories260k_golden(stories260k).decode("utf-8")
    for engine in ("wasm", "native"):
        result = edgechain(
            "generate", "--model", "s260-gguf", "--dir", net,
            "-i", PROMPT, "-t", "0", "-n", "200", "--engine", engine,
        )  # fmt: skip
        assert result.code == 0, result.err
        # 200 tokens of run.c's greedy story (then the CLI's summary of what was verified).
        assert result.out[:450] == golden[:450], (engine, result.out[:300])
    # One file: fetched once by the service (the tokenizer is the same cached file).
    assert weight_server.request_count(gguf.name) == 2  # publish's download + the service's


def test_a_tokenizer_beside_a_gguf_file_is_a_usage_error(
    tmp_path: Path, weight_server: WeightServer, gguf: Path, stories260k: ModelFiles
) -> None:
    net = make_network(tmp_path / "net")
    result = edgechain(
        "model", "publish", "m", "--dir", net,
        "--weights", weight_server.url(gguf.name), "--tokenizer", stories260k.tokenizer,
    )  # fmt: skip
    result.assert_user_error(UsageError.exit_code, "carries its own tokenizer")
    missing = edgechain(
        "model", "publish", "m", "--dir", net, "--weights", stories260k.weights,
        "--weights-url", weight_server.url("x.bin"),
    )  # fmt: skip
    missing.assert_user_error(UsageError.exit_code, "needs its tokenizer.bin")


def test_a_gguf_model_published_as_blobs_generates_on_both_engines(
    tmp_path: Path, gguf: Path, stories260k: ModelFiles
) -> None:
    net = Network.create(tmp_path / "net", validators=4)
    golden = stories260k_golden(stories260k).decode("utf-8")
    with Client(net, cache_dir=tmp_path / "cache") as client:
        published = client.publish_model("s260-gguf", weights=gguf, blobs=True)
        entry = published.model.entry
        assert entry.format == "gguf" and entry.tokenizer == entry.weights
        assert entry.weights.chunks and published.blobs is not None
        query = GenerateQuery(model="s260-gguf", prompt=PROMPT, max_tokens=200, temperature=0)
        stream = client.generate(query)
        text = stream.prompt_text + "".join(t.text for t in stream)
        assert stream.record is not None and stream.record.output_tokens == 200
        assert len(text) > 400 and golden.startswith(text)
