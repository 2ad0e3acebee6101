"""Engine.load_files: the weights read straight from the file into the engine (one copy in the
process), on both backends, with the same results and errors as Engine.load(bytes)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import wasmtime

from edgechain import errors
from edgechain.service.engine import Engine, GenerationParams
from edgechain.service.engine import wasm as wasm_backend
from edgechain.service.engine.native import NativeEngine
from edgechain.testing.models import ModelFiles


def greedy_text(engine: Engine, files: ModelFiles) -> bytes:
    with engine.load_files(files.weights, files.tokenizer) as model:
        generation = model.generate(
            "Once upon a time", GenerationParams(temperature=0, max_positions=256)
        )
        return generation.prompt_data + b"".join(t.data for t in generation) + b"\n"


def test_golden_output_through_load_files(
    engine: Engine, stories260k: ModelFiles, golden_once_upon_a_time: bytes
) -> None:
    assert greedy_text(engine, stories260k) == golden_once_upon_a_time


def test_load_files_accepts_str_paths(engine: Engine, stories260k: ModelFiles) -> None:
    with engine.load_files(str(stories260k.weights), str(stories260k.tokenizer)) as model:
        assert model.info.vocab_size == 512 and model.info.n_kv_heads == 4


def _short_tokenizer(tok: bytes) -> bytes:
    """tok512.bin without its last token (511 tokens for a 512-token model)."""
    at, last = 4, 4
    while at < len(tok):
        last = at
        at += 8 + int.from_bytes(tok[at + 4 : at + 8], "little", signed=True)
    return tok[:last]


BAD_PAIRS = ["truncated", "extra_bytes", "shorter_than_header", "bad_header", "bad_tokenizer"]
BAD_PAIRS += ["vocab_mismatch"]


def _bad_pair(case: str, files: ModelFiles) -> tuple[bytes, bytes, type[Exception]]:
    ckpt, tok = files.weights.read_bytes(), files.tokenizer.read_bytes()
    return {
        "truncated": (ckpt[:-4], tok, errors.InvalidCheckpoint),
        "extra_bytes": (ckpt + b"\0" * 8, tok, errors.InvalidCheckpoint),
        "shorter_than_header": (ckpt[:10], tok, errors.InvalidCheckpoint),
        "bad_header": (b"\0" * 4 + ckpt[4:], tok, errors.InvalidCheckpoint),
        "bad_tokenizer": (ckpt, tok[:-1], errors.InvalidTokenizer),
        "vocab_mismatch": (ckpt, _short_tokenizer(tok), errors.VocabMismatch),
    }[case]


@pytest.mark.parametrize("case", BAD_PAIRS)
def test_errors_are_those_of_load_bytes(
    engine: Engine, stories260k: ModelFiles, tmp_path: Path, case: str
) -> None:
    ckpt, tok, expected = _bad_pair(case, stories260k)
    with pytest.raises(expected) as from_bytes:
        engine.load(ckpt, tok)
    (tmp_path / "model.bin").write_bytes(ckpt)
    (tmp_path / "tok.bin").write_bytes(tok)
    with pytest.raises(expected) as from_files:
        engine.load_files(tmp_path / "model.bin", tmp_path / "tok.bin")
    assert str(from_files.value) == str(from_bytes.value)


def test_missing_files_name_the_file(engine: Engine, stories260k: ModelFiles, tmp_path: Path):
    with pytest.raises(errors.InvalidCheckpoint, match="checkpoint not found: .*nope.bin"):
        engine.load_files(tmp_path / "nope.bin", stories260k.tokenizer)
    with pytest.raises(errors.InvalidTokenizer, match="tokenizer not found: .*nope.tok"):
        engine.load_files(stories260k.weights, tmp_path / "nope.tok")
    with pytest.raises(errors.InvalidCheckpoint, match="is a directory"):
        engine.load_files(tmp_path, stories260k.tokenizer)


def test_a_checkpoint_changed_while_the_guest_reads_it_is_refused(
    wasm_engine: Engine,
    stories260k: ModelFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    copy = tmp_path / "model.bin"
    copy.write_bytes(stories260k.weights.read_bytes())
    real = wasm_backend._Guest.load_file

    def load_then_touch(self: Any, f: Any, size: int, tokenizer: bytes) -> int:
        handle = real(self, f, size, tokenizer)
        with copy.open("r+b") as w:  # same size, new mtime/ctime
            w.write(b"\x01")
        return handle

    monkeypatch.setattr(wasm_backend._Guest, "load_file", load_then_touch)
    with pytest.raises(errors.InvalidCheckpoint, match="changed while it was being loaded"):
        wasm_engine.load_files(copy, stories260k.tokenizer)


def test_a_checkpoint_changed_while_rust_reads_it_is_refused(
    native_engine: NativeEngine, stories260k: ModelFiles, tmp_path: Path
) -> None:
    copy = tmp_path / "model.bin"
    copy.write_bytes(stories260k.weights.read_bytes())
    real = native_engine._native

    class ReplacingModel:
        @staticmethod
        def from_files(checkpoint: str, tokenizer: str, threads: int | None = None) -> Any:
            model = real.Model.from_files(checkpoint, tokenizer, threads=threads)
            replacement = tmp_path / "other.bin"
            replacement.write_bytes(copy.read_bytes())
            replacement.replace(copy)  # a new inode under the same path
            return model

    engine = NativeEngine()
    engine._native = SimpleNamespace(Model=ReplacingModel, EngineError=real.EngineError)
    with pytest.raises(errors.InvalidCheckpoint, match="changed while it was being loaded"):
        engine.load_files(copy, stories260k.tokenizer)


def test_a_guest_without_the_streaming_exports_loads_from_bytes(tmp_path: Path) -> None:
    wat = Path(__file__).with_name("mock_guest.wat").read_text()
    (tmp_path / "mock.wasm").write_bytes(wasmtime.wat2wasm(wat))
    engine = wasm_backend.WasmEngine(guest_path=tmp_path / "mock.wasm", cache_dir=False)
    (tmp_path / "model.bin").write_bytes(b"x" * 40)
    (tmp_path / "tok.bin").write_bytes(b"tok")
    with engine.load_files(tmp_path / "model.bin", tmp_path / "tok.bin") as model:
        assert model.info.vocab_size == 259


def test_a_checkpoint_too_big_for_the_guest_memory_limit_is_refused_from_its_header(
    stories260k: ModelFiles, tmp_path: Path
) -> None:
    dim, hidden, layers, heads, vocab, seq = 1024, 2048, 1, 8, 32000, 16
    per_layer = 2 * dim + 4 * dim * dim + 3 * dim * hidden
    count = vocab * dim + layers * per_layer + dim + seq * (dim // heads)
    header = b"".join(
        v.to_bytes(4, "little") for v in (dim, hidden, layers, heads, heads, vocab, seq)
    )
    big = tmp_path / "big.bin"
    with big.open("wb") as f:  # sparse: the size is right, the weights are zeros
        f.write(header)
        f.truncate(len(header) + 4 * count)
    engine = wasm_backend.WasmEngine(memory_limit=64 * 2**20)
    with pytest.raises(errors.CheckpointTooLarge, match="the engine's memory limit"):
        engine.load_files(big, stories260k.tokenizer)


def test_a_file_that_grows_while_the_guest_reads_it_is_refused(stories260k: ModelFiles) -> None:
    engine = wasm_backend.WasmEngine(cache_dir=False)
    guest = engine._instantiate()
    data = stories260k.weights.read_bytes()
    grown = io.BytesIO(data + b"\0" * 4)  # the size given is the size before growing
    with pytest.raises(errors.InvalidCheckpoint, match="longer than the 1056540 bytes"):
        guest.load_file(grown, len(data), stories260k.tokenizer.read_bytes())
