"""`model publish` parses the checkpoint and tokenizer before it proposes (service/model_files.py).

Every refusal is typed (exit 3) and certifies nothing: the chain's height is unchanged.
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from network_cli_helpers import edgechain, make_network

from edgechain.client import Client
from edgechain.errors import InvalidCheckpoint, InvalidText, InvalidTokenizer, VocabMismatch
from edgechain.service.engine import open_engine
from edgechain.service.engine.base import Engine
from edgechain.service.model_files import (
    CheckpointHeader,
    check_model_files,
    parse_checkpoint_header,
    read_checkpoint_header,
    read_tokenizer,
)
from edgechain.testing.models import ModelFiles
from edgechain.testing.synth import SHAPES
from edgechain.testing.weight_server import WeightServer


def _tokenizer(tokens: list[bytes], max_len: int | None = None, score: float = 0.0) -> bytes:
    out = [struct.pack("<i", max_len or max(len(t) for t in tokens))]
    for token in tokens:
        out.append(struct.pack("<fi", score, len(token)) + token)
    return b"".join(out)


def _vocab(n: int) -> list[bytes]:
    return [b"<unk>", b"<s>", b"</s>", *(str(i).encode() for i in range(n - 3))]


def _separate_classifier(weights: bytes) -> bytes:
    """stories260K with a negative vocab_size and its own classifier appended."""
    dim, vocab = struct.unpack_from("<i", weights, 0)[0], struct.unpack_from("<i", weights, 20)[0]
    header = bytearray(weights[:28])
    struct.pack_into("<i", header, 20, -vocab)
    return bytes(header) + weights[28:] + bytes(4 * vocab * dim)


# name -> (weights bytes, tokenizer bytes) from the real files, and the error each must raise.
Case = Callable[[bytes, bytes], tuple[bytes, bytes]]
CASES: dict[str, tuple[Case, type[Exception], str]] = {
    "random weights": (lambda w, t: (bytes(range(256)) * 40, t), InvalidCheckpoint, "header"),
    "truncated weights": (lambda w, t: (w[: len(w) // 2], t), InvalidCheckpoint, "implies"),
    "weights one byte long": (lambda w, t: (w + b"\0", t), InvalidCheckpoint, "implies"),
    "weights shorter than a header": (lambda w, t: (w[:20], t), InvalidCheckpoint, "header"),
    "ak42 export of version 1": (
        lambda w, t: (struct.pack("<Ii", 0x616B3432, 1) + w[8:], t),
        InvalidCheckpoint,
        "version-1",
    ),
    "int8 export with a garbled header": (
        lambda w, t: (struct.pack("<Ii", 0x616B3432, 2) + w[8:], t),
        InvalidCheckpoint,
        "shared_classifier",
    ),
    "tokenizer of 32000 tokens": (
        lambda w, t: (w, _tokenizer(_vocab(32000))),
        VocabMismatch,
        "32000 tokens but the model's vocab_size is 512",
    ),
    "tokenizer of 511 tokens": (lambda w, t: (w, _tokenizer(_vocab(511))), VocabMismatch, "511"),
    "random tokenizer": (lambda w, t: (w, bytes(range(255, 0, -1)) * 9), InvalidTokenizer, "max_"),
    "truncated tokenizer": (lambda w, t: (w, t[:-3]), InvalidTokenizer, "truncated"),
    "tokenizer with a NaN score": (
        lambda w, t: (w, _tokenizer(_vocab(512), score=float("nan"))),
        InvalidTokenizer,
        "non-finite",
    ),
    "tokenizer token longer than max": (
        lambda w, t: (w, _tokenizer(_vocab(512), max_len=2)),
        InvalidTokenizer,
        "max_token_length is 2",
    ),
}


@pytest.fixture
def real(stories260k: ModelFiles) -> tuple[bytes, bytes]:
    return stories260k.weights.read_bytes(), stories260k.tokenizer.read_bytes()


def _write(tmp_path: Path, real: tuple[bytes, bytes], case: str) -> tuple[Path, Path]:
    weights, tokenizer = CASES[case][0](*real)
    (w := tmp_path / "w.bin").write_bytes(weights)
    (t := tmp_path / "t.bin").write_bytes(tokenizer)
    return w, t


# --- the parser alone -----------------------------------------------------------------------


def test_the_real_model_parses(stories260k: ModelFiles) -> None:
    header, tokenizer = check_model_files(stories260k.weights, stories260k.tokenizer)
    assert (header.dim, header.n_layers, header.vocab_size, header.seq_len) == (64, 5, 512, 512)
    assert header.shared_classifier and header.n_kv_heads == 4
    assert tokenizer.vocab_size == 512
    assert header.expected_bytes == stories260k.weights.stat().st_size


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_expected_bytes_match_the_synthesiser(name: str) -> None:
    shape = SHAPES[name]
    header = CheckpointHeader(
        shape.dim, shape.hidden_dim, shape.n_layers, shape.n_heads, shape.n_kv_heads,
        shape.vocab_size, shape.seq_len, shared_classifier=True,
    )  # fmt: skip
    assert header.expected_bytes == shape.file_size()


def test_a_separate_classifier_parses(real: tuple[bytes, bytes]) -> None:
    weights = _separate_classifier(real[0])
    header = parse_checkpoint_header(weights[:28], len(weights))
    assert not header.shared_classifier and header.vocab_size == 512
    with pytest.raises(InvalidCheckpoint, match="separate classifier"):
        parse_checkpoint_header(weights[:28], len(real[0]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_bad_pair_is_refused_from_bytes_and_files(
    case: str, real: tuple[bytes, bytes], tmp_path: Path
) -> None:
    _, error, fragment = CASES[case]
    weights, tokenizer = CASES[case][0](*real)
    with pytest.raises(error, match=fragment):
        check_model_files(weights, tokenizer)
    w, t = _write(tmp_path, real, case)
    with pytest.raises(error, match=fragment):
        check_model_files(w, t)


@pytest.mark.parametrize("case", ["truncated weights", "tokenizer of 32000 tokens"])
def test_an_open_spooled_file_parses_like_bytes(case: str, real: tuple[bytes, bytes]) -> None:
    """A download spooled to a temporary file is parsed from its start and left open."""
    _, error, fragment = CASES[case]
    weights, tokenizer = CASES[case][0](*real)
    with tempfile.TemporaryFile() as w, tempfile.TemporaryFile() as t:
        w.write(weights)
        t.write(tokenizer)
        with pytest.raises(error, match=fragment):
            check_model_files(w, t)
        with pytest.raises(error, match=fragment):
            check_model_files(w, t)  # left open, parsed from the start again
    with tempfile.TemporaryFile() as w, tempfile.TemporaryFile() as t:
        w.write(real[0])
        t.write(real[1])
        assert check_model_files(w, t)[1].vocab_size == 512
        assert not w.closed


def test_missing_files_and_directories_are_typed(tmp_path: Path) -> None:
    with pytest.raises(InvalidCheckpoint, match="no such file"):
        read_checkpoint_header(tmp_path / "absent.bin")
    with pytest.raises(InvalidTokenizer, match="directory"):
        read_tokenizer(tmp_path)


# --- through the library and the CLI: refused, nothing certified -------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_library_refuses_before_proposing(
    case: str, real: tuple[bytes, bytes], tmp_path: Path
) -> None:
    _, error, fragment = CASES[case]
    w, t = _write(tmp_path, real, case)
    with Client.up(tmp_path / "net", validators=4) as client:
        with pytest.raises(error, match=fragment):
            client.publish_model(
                "m", weights=w, tokenizer=t,
                weights_urls=["http://127.0.0.1:1/w"], tokenizer_urls=["http://127.0.0.1:1/t"],
            )  # fmt: skip
        assert client.chain.height == 0
        assert client.models() == []


@pytest.mark.parametrize(
    "case", ["random weights", "truncated weights", "tokenizer of 32000 tokens", "random tokenizer"]
)
def test_the_cli_refuses_local_files_and_urls_with_exit_3(
    case: str,
    real: tuple[bytes, bytes],
    tmp_path: Path,
    weight_server: WeightServer,
    weight_server_dir: Path,
) -> None:
    net = make_network(tmp_path / "net")
    w, t = _write(weight_server_dir, real, case)
    fragment = CASES[case][2]
    local = edgechain(
        "model", "publish", "m", "--dir", net, "--weights", w, "--tokenizer", t,
        "--weights-url", weight_server.url("w.bin"), "--tokenizer-url", weight_server.url("t.bin"),
    )  # fmt: skip
    local.assert_user_error(3, fragment)
    remote = edgechain(
        "model", "publish", "m", "--dir", net,
        "--weights", weight_server.url("w.bin"), "--tokenizer", weight_server.url("t.bin"),
    )  # fmt: skip
    remote.assert_user_error(3, fragment)
    assert weight_server.url("") in remote.err  # names the URL it parsed
    shown = edgechain("chain", "show", "--dir", net, "--json")
    assert shown.code == 0 and shown.json()["head_height"] is None  # no block


def test_a_good_pair_still_publishes_from_urls(
    real: tuple[bytes, bytes], tmp_path: Path, weight_server: WeightServer, weight_server_dir: Path
) -> None:
    (weight_server_dir / "w.bin").write_bytes(_separate_classifier(real[0]))
    (weight_server_dir / "t.bin").write_bytes(real[1])
    with Client.up(tmp_path / "net", validators=4) as client:
        published = client.publish_model(
            "m", weights=weight_server.url("w.bin"), tokenizer=weight_server.url("t.bin")
        )
        assert published.model.entry.weights.size == len(real[0]) + 4 * 512 * 64
        assert client.chain.height == 1


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"description": "\udcff"}, "description"),
        ({"license": "\ud800"}, "license"),
        ({"version": "1\udcff"}, "model version"),
        ({"weights_urls": ["http://h/\udcff"]}, "weights URL"),
        ({"weights": "http://127.0.0.1:9/\udcff"}, "weights"),
    ],
)
def test_the_library_refuses_odd_text_before_reading_any_file(
    options: dict[str, object], field: str, tmp_path: Path
) -> None:
    arguments: dict[str, object] = {
        "weights": tmp_path / "absent.bin",
        "tokenizer": tmp_path / "absent-tok.bin",
        "weights_urls": ["http://127.0.0.1:9/w"],
        "tokenizer_urls": ["http://127.0.0.1:9/t"],
        **options,
    }
    with Client.up(tmp_path / "net", validators=4) as client:
        with pytest.raises(InvalidText, match=f"^{field} is not valid UTF-8 text"):
            client.publish_model("m", **arguments)  # type: ignore[arg-type]
        assert client.chain.height == 0


# --- the engine agrees: what publish refuses, the engine would refuse at load -------------------


@pytest.fixture(scope="module")
def native_engine() -> Iterator[Engine]:
    engine = open_engine("native")
    yield engine
    engine.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_engine_refuses_the_same_files_with_the_same_error(
    case: str, real: tuple[bytes, bytes], native_engine: Engine
) -> None:
    _, error, _ = CASES[case]
    with pytest.raises(error):
        native_engine.load(*CASES[case][0](*real))


def test_the_engine_loads_a_separate_classifier_publish_accepts(
    real: tuple[bytes, bytes], native_engine: Engine
) -> None:
    weights = _separate_classifier(real[0])
    check_model_files(weights, real[1])
    native_engine.load(weights, real[1]).close()
