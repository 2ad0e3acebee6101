"""The wasm host against a tiny WAT stand-in guest (mock_guest.wat): marshalling, error codes,
traps and deadlines, independent of the candle guest."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import wasmtime

from edgechain import errors
from edgechain.service.engine import GenerationParams, StopReason
from edgechain.service.engine.wasm import WasmEngine


@pytest.fixture(scope="module")
def mock_engine(tmp_path_factory: pytest.TempPathFactory) -> WasmEngine:
    directory = tmp_path_factory.mktemp("mock")
    wasm = directory / "mock.wasm"
    wasm.write_bytes(wasmtime.wat2wasm((Path(__file__).with_name("mock_guest.wat")).read_text()))
    return WasmEngine(guest_path=wasm, cache_dir=directory / "cache")


def test_info_encode_decode_and_a_session(mock_engine: WasmEngine) -> None:
    with mock_engine.load(b"x" * 40, b"tok") as model:
        assert model.info.vocab_size == 259 and model.info.shared_classifier is True
        assert model.encode("hé", bos=True) == [1, 104 + 3, 0xC3 + 3, 0xA9 + 3]
        assert model.encode("", bos=True, eos=True) == [1, 2]
        assert model.decode(model.encode("日本 ok")) == "日本 ok"
        gen = model.generate("hi", GenerationParams())
        assert gen.prompt_text == "hi"
        assert [(t.id, t.text) for t in gen] == [(100 + i, "abcde"[i]) for i in range(5)]
        assert gen.stop_reason is StopReason.MAX_TOKENS
        assert (gen.prompt_tokens, gen.generated_tokens, gen.text) == (3, 5, "abcde")


def test_error_codes_keep_the_guest_message(mock_engine: WasmEngine) -> None:
    with pytest.raises(errors.InvalidCheckpoint, match="^checkpoint too short$"):
        mock_engine.load(b"short", b"")
    with mock_engine.load(b"x" * 40, b"") as model:
        with pytest.raises(errors.PromptTooLong, match="prompt too long"):
            model.generate("x" * 200, GenerationParams())
        assert model.encode("still fine", bos=False)[0] == ord("s") + 3


def test_a_trap_is_a_guest_trap_with_the_trap_message(mock_engine: WasmEngine) -> None:
    with pytest.raises(errors.GuestTrap, match="unreachable"):
        mock_engine.load(b"\xff" * 40, b"")
    with mock_engine.load(b"x" * 40, b"") as other:
        assert len(list(other.generate("ok", GenerationParams()))) == 5


def test_a_deadline_interrupts_a_spinning_guest(mock_engine: WasmEngine) -> None:
    model = mock_engine.load(b"x" * 40, b"")
    healthy = mock_engine.load(b"y" * 40, b"")
    started = time.monotonic()
    with pytest.raises(errors.Timeout, match="budget of 0.1 s"):
        list(model.generate("spin", GenerationParams(), timeout=0.1))
    assert time.monotonic() - started < 2
    assert model.discarded  # type: ignore[attr-defined]
    with pytest.raises(errors.GuestTrap, match="load it again"):
        model.encode("x")
    assert [t.text for t in healthy.generate("ok", GenerationParams())] == list("abcde")
    model.close()
    healthy.close()


def test_large_buffers_cross_and_the_memory_limit_holds(tmp_path: Path) -> None:
    wasm = tmp_path / "mock.wasm"
    wasm.write_bytes(wasmtime.wat2wasm((Path(__file__).with_name("mock_guest.wat")).read_text()))
    roomy = WasmEngine(guest_path=wasm, cache_dir=False)
    roomy.load(b"y" * (40 * 2**20), b"").close()
    tight = WasmEngine(guest_path=wasm, cache_dir=False, memory_limit=2**20)
    with pytest.raises(errors.GuestTrap, match="could not allocate"):
        tight.load(b"y" * (2 * 2**20), b"")
