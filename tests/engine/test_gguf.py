"""GGUF files: `edgechain convert` (a llama2.c checkpoint + tokenizer as one llama GGUF) and
both engines running them: the f32 file gives run.c's golden greedy text, Q8_0 stays close to
it, wasm and native agree bit for bit, and what the engine does not run is refused from the
header with one clear error naming it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from engine_helpers import (
    REPO_ROOT,
    assert_clean_error,
    assert_engines_sample_alike,
    run_cli,
    sampled,
)

from edgechain.convert import convert_to_gguf
from edgechain.errors import (
    CheckpointTooLarge,
    InvalidCheckpoint,
    InvalidParameter,
    InvalidTokenizer,
    UnsupportedModel,
)
from edgechain.service.engine import Engine
from edgechain.service.engine import gguf_writer as gw
from edgechain.service.engine.wasm import WasmEngine
from edgechain.testing.models import ModelFiles

GOLDEN = REPO_ROOT / "tests" / "engine" / "golden"
ENGINES = ["wasm", "native"]
PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def gguf_f32(stories260k: ModelFiles, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "stories260K.gguf"
    convert_to_gguf(stories260k.weights, stories260k.tokenizer, out, "f32")
    return out


@pytest.fixture(scope="module")
def gguf_q8(stories260k: ModelFiles, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "stories260K-q8_0.gguf"
    convert_to_gguf(stories260k.weights, stories260k.tokenizer, out, "q8_0")
    return out


def _greedy(path: Path, engine: str) -> bytes:
    result = run_cli("run", path, "--engine", engine, "-t", "0", "-n", "256", "-i", PROMPT)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _common_prefix(a: bytes, b: bytes) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def test_convert_is_deterministic_and_keeps_the_header(
    stories260k: ModelFiles, gguf_f32: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again.gguf"
    result = convert_to_gguf(stories260k.weights, stories260k.tokenizer, again, "f32")
    assert again.read_bytes() == gguf_f32.read_bytes()
    data = gguf_f32.read_bytes()
    assert data[:4] == b"GGUF" and struct.unpack_from("<I", data, 4) == (3,)
    assert (result.quantized, result.kept_f32) == (0, 36)
    # The embedding's f32 bytes are the checkpoint's, unchanged, somewhere in the data section.
    ckpt = stories260k.weights.read_bytes()
    assert ckpt[28 : 28 + 4 * 512 * 64] in data


@pytest.mark.parametrize("engine", ENGINES)
def test_converted_f32_gguf_gives_run_c_golden_text(
    engine: str, gguf_f32: Path, golden_once_upon_a_time: bytes
) -> None:
    assert _greedy(gguf_f32, engine) == golden_once_upon_a_time


def test_q8_0_gguf_is_as_close_as_measured_and_identical_on_both_engines(
    gguf_q8: Path, golden_once_upon_a_time: bytes
) -> None:
    wasm, native = _greedy(gguf_q8, "wasm"), _greedy(gguf_q8, "native")
    assert wasm == native
    # Measured when written: Q8_0 (blocks of 32, ffn_down kept f32 as its rows of 172 are not
    # whole blocks) follows run.c's text for 295 of 566 bytes; runq.c's int8 (groups of 4)
    # for 448. A change of kernel or rounding moves this figure: update it knowingly.
    assert _common_prefix(wasm, golden_once_upon_a_time) == 295
    runq = (GOLDEN / "stories260K_q8_greedy_once_upon_a_time_256.txt").read_bytes()
    assert _common_prefix(runq, golden_once_upon_a_time) == 448


@pytest.mark.parametrize(("kind", "same_bytes"), [("f16", 566), ("q4_0", 87)])
def test_f16_and_q4_0_gguf_are_identical_on_both_engines(
    kind: str,
    same_bytes: int,
    stories260k: ModelFiles,
    tmp_path: Path,
    golden_once_upon_a_time: bytes,
) -> None:
    path = tmp_path / f"stories260K-{kind}.gguf"
    convert_to_gguf(stories260k.weights, stories260k.tokenizer, path, kind)
    wasm, native = _greedy(path, "wasm"), _greedy(path, "native")
    assert wasm == native
    # Measured when written: F16 weights (widened to f32 at load) keep run.c's whole greedy
    # text; Q4_0 (4-bit blocks of 32, run exactly on the int8 path) leaves it after 87 bytes.
    assert _common_prefix(wasm, golden_once_upon_a_time) == same_bytes


@pytest.mark.parametrize("which", ["gguf_f32", "gguf_q8"])
def test_gguf_wasm_and_native_sample_the_same_tokens(
    which: str, request: pytest.FixtureRequest, wasm_engine: Engine, native_engine: Engine
) -> None:
    path = request.getfixturevalue(which)
    info = assert_engines_sample_alike(wasm_engine, native_engine, path, None)
    expected_group = 32 if which == "gguf_q8" else None
    assert getattr(info, "group_size", None) == expected_group


def test_gguf_f32_samples_as_the_llama2c_checkpoint(
    native_engine: Engine, gguf_f32: Path, stories260k: ModelFiles
) -> None:
    ids, _ = sampled(native_engine, gguf_f32, None, 7)
    assert ids == sampled(native_engine, stories260k.weights, stories260k.tokenizer, 7)[0]


# ---- refusals ----


def _tiny_gguf(path: Path, *, arch: str = "llama", kind: int = gw.GGML_F32, extra=()) -> Path:
    """A header-valid GGUF whose tensors are zeros (refused before they matter)."""
    dim, hidden, vocab = 32, 32, 260
    meta = [
        ("general.architecture", arch),
        (f"{arch}.context_length", 16),
        (f"{arch}.embedding_length", dim),
        (f"{arch}.block_count", 1),
        (f"{arch}.feed_forward_length", hidden),
        (f"{arch}.attention.head_count", 2),
        ("tokenizer.ggml.model", "llama"),
        *extra,
    ]

    def tensor(name: str, dims: tuple[int, ...], k: int = gw.GGML_F32) -> gw.Tensor:
        count = 1
        for d in dims:
            count *= d
        nbytes = count * 4 if k == gw.GGML_F32 else count * 18 // 32
        return gw.Tensor(name, dims, k, bytes(nbytes))

    tensors = [
        tensor("token_embd.weight", (vocab, dim)),
        tensor("output_norm.weight", (dim,)),
        tensor("blk.0.attn_norm.weight", (dim,)),
        tensor("blk.0.ffn_norm.weight", (dim,)),
        tensor("blk.0.attn_q.weight", (dim, dim), kind),
    ]
    for name, dims in (
        ("attn_k", (dim, dim)),
        ("attn_v", (dim, dim)),
        ("attn_output", (dim, dim)),
        ("ffn_gate", (hidden, dim)),
        ("ffn_down", (dim, hidden)),
        ("ffn_up", (hidden, dim)),
    ):
        tensors.append(tensor(f"blk.0.{name}.weight", dims))
    with path.open("wb") as f:
        gw.write_gguf(f, meta, tensors)
    return path


@pytest.mark.parametrize("engine", ENGINES)
def test_unsupported_architecture_and_tensor_type_are_named(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    eng = request.getfixturevalue(f"{engine}_engine")
    with pytest.raises(UnsupportedModel, match="architecture 'gemma3' is not supported"):
        eng.load_files(_tiny_gguf(tmp_path / "a.gguf", arch="gemma3"), None)
    with pytest.raises(UnsupportedModel, match=r"blk\.0\.attn_q\.weight is Q5_K; supported"):
        eng.load_files(_tiny_gguf(tmp_path / "b.gguf", kind=13), None)
    scaled = (("llama.rope.scaling.type", "yarn"),)
    with pytest.raises(UnsupportedModel, match="RoPE scaling"):
        eng.load_files(_tiny_gguf(tmp_path / "c.gguf", extra=scaled), None)


@pytest.mark.parametrize("engine", ENGINES)
def test_truncated_gguf_and_a_tokenizer_beside_it_are_clean_errors(
    engine: str, gguf_f32: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    eng = request.getfixturevalue(f"{engine}_engine")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_f32.read_bytes()[:-1000])
    with pytest.raises(InvalidCheckpoint, match="runs past the end"):
        eng.load_files(cut, None)
    with pytest.raises(InvalidTokenizer, match="carries its own tokenizer"):
        eng.load_files(gguf_f32, gguf_f32)


def test_cli_convert_and_its_errors(stories260k: ModelFiles, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    result = run_cli(
        "convert", stories260k.weights, "--tokenizer", stories260k.tokenizer, "--type", "q8_0", out
    )
    assert result.returncode == 0, result.stderr
    assert b"(tensors: 16 F32, 31 Q8_0)" in result.stdout
    bad = run_cli("convert", stories260k.tokenizer, "--tokenizer", stories260k.tokenizer, out)
    assert_clean_error(bad, InvalidCheckpoint.exit_code, "header")
    with pytest.raises(InvalidParameter):
        convert_to_gguf(stories260k.weights, stories260k.tokenizer, out, "q5_k")


def test_a_gguf_too_large_for_the_guest_is_refused_before_loading(gguf_f32: Path) -> None:
    # The file (1 MB), the tensors built from it (1 MB) and the KV cache exceed 2 MiB.
    small = WasmEngine(memory_limit=2 * 2**20)
    with pytest.raises(CheckpointTooLarge, match=r"GGUF weights .* use the native engine"):
        small.load_files(gguf_f32, None)
