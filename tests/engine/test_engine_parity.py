"""Both engines through the Python API: identical tokens, tokenizer round trips, stop rules."""

from __future__ import annotations

import threading

import pytest

from edgechain import errors
from edgechain.service.engine import Engine, GenerationParams, LoadedModel, StopReason
from edgechain.testing.models import ModelFiles


def _ids(model: LoadedModel, prompt: str, params: GenerationParams) -> list[int]:
    return [token.id for token in model.generate(prompt, params)]


@pytest.mark.parametrize("seed", [1, 42, 2**63 + 5])
@pytest.mark.parametrize(
    ("temperature", "top_p"), [(0.0, 0.9), (0.8, 0.9), (0.8, 1.0), (1.0, 0.9), (1.0, 1.0)]
)
def test_wasm_and_native_produce_identical_token_ids(
    wasm_260k: LoadedModel, native_260k: LoadedModel, seed: int, temperature: float, top_p: float
) -> None:
    params = GenerationParams(temperature=temperature, top_p=top_p, seed=seed, max_positions=200)
    wasm_ids = _ids(wasm_260k, "Once upon a time", params)
    assert len(wasm_ids) > 50
    assert wasm_ids == _ids(native_260k, "Once upon a time", params)


def test_different_seeds_sample_differently(model_260k: LoadedModel) -> None:
    runs = {
        seed: _ids(model_260k, "Lily", GenerationParams(temperature=1.0, seed=seed, max_tokens=60))
        for seed in (1, 2)
    }
    assert runs[1] != runs[2]


def test_info_matches_the_header(model_260k: LoadedModel) -> None:
    info = model_260k.info
    assert (info.dim, info.hidden_dim, info.n_layers, info.n_heads, info.n_kv_heads) == (
        64, 172, 5, 8, 4,
    )  # fmt: skip
    assert (info.vocab_size, info.seq_len, info.shared_classifier) == (512, 512, True)


@pytest.mark.parametrize(
    "text", ["Once upon a time", "hello world", "café", "日本", "emoji 🎉 ok", "a\nb\tc", " x "]
)
def test_encode_decode_round_trip_with_byte_fallback(model_260k: LoadedModel, text: str) -> None:
    ids = model_260k.encode(text)
    assert ids[0] == 1  # BOS
    assert model_260k.decode(ids) == text


def test_non_ascii_falls_back_to_byte_tokens(model_260k: LoadedModel) -> None:
    ids = model_260k.encode("日", bos=False)
    # 3 UTF-8 bytes -> byte tokens <0xNN> at id byte + 3, after the dummy-prefix space.
    assert ids[-3:] == [b + 3 for b in "日".encode()]


def test_encode_bos_and_eos_flags(model_260k: LoadedModel) -> None:
    assert model_260k.encode("", bos=True, eos=True) == [1, 2]
    assert model_260k.encode("", bos=False, eos=False) == []
    plain = model_260k.encode("Lily", bos=False)
    assert model_260k.encode("Lily", bos=True, eos=True) == [1, *plain, 2]


def test_engines_encode_identically(wasm_260k: LoadedModel, native_260k: LoadedModel) -> None:
    for text in ("Once upon a time, there was a little girl named Lily.", "日本 🎉 é"):
        assert wasm_260k.encode(text) == native_260k.encode(text)


def test_max_tokens_stops_with_max_tokens(model_260k: LoadedModel) -> None:
    gen = model_260k.generate("Lily", GenerationParams(temperature=0, max_tokens=7))
    assert len(list(gen)) == 7
    assert gen.stop_reason is StopReason.MAX_TOKENS
    assert gen.generated_tokens == 7
    assert gen.prompt_tokens == len(model_260k.encode("Lily"))


def test_max_positions_counts_the_prompt(model_260k: LoadedModel) -> None:
    prompt_tokens = len(model_260k.encode("Once upon a time"))
    gen = model_260k.generate("Once upon a time", GenerationParams(temperature=0, max_positions=30))
    tokens = list(gen)
    assert gen.stop_reason is StopReason.MAX_TOKENS
    # run.c -n 30 runs positions 0..29, each printing the next token: the prompt's tokens after
    # BOS, then generated ones.
    assert len(tokens) == 30 - (prompt_tokens - 1)


def test_stop_string_ends_generation_after_the_matching_token(model_260k: LoadedModel) -> None:
    full = model_260k.generate("Once upon a time", GenerationParams(temperature=0, max_tokens=80))
    text = "".join(t.text for t in full)
    stop = text[10:14]
    gen = model_260k.generate(
        "Once upon a time", GenerationParams(temperature=0, max_tokens=80, stop=(stop,))
    )
    produced = "".join(t.text for t in gen)
    assert gen.stop_reason is StopReason.STOP_STRING
    assert stop in produced and produced == gen.text
    assert text.startswith(produced)


def test_cancel_frees_the_session(model_260k: LoadedModel) -> None:
    gen = model_260k.generate("Lily", GenerationParams(temperature=1.0, seed=3))
    next(gen)
    gen.cancel()
    assert list(gen) == []
    assert gen.stop_reason is StopReason.CANCELLED


def test_prompt_too_long_and_bad_params_raise_typed_errors(model_260k: LoadedModel) -> None:
    with pytest.raises(errors.PromptTooLong):
        model_260k.generate("the dog " * 400, GenerationParams())
    with pytest.raises(errors.InvalidParameter):
        model_260k.generate("x", GenerationParams(top_p=0))


def test_lone_surrogates_are_invalid_text(model_260k: LoadedModel) -> None:
    with pytest.raises(errors.InvalidText):
        model_260k.encode("bad \udc80")
    with pytest.raises(errors.InvalidText):
        model_260k.generate("bad \udc80", GenerationParams())


def test_concurrent_generations_on_one_model_match_sequential_ones(
    stories260k: ModelFiles, engine: Engine
) -> None:
    prompts = ["Lily", "Tom", "The cat", "Once upon a time"]
    params = GenerationParams(temperature=0.9, seed=11, max_tokens=60)
    with stories260k.load(engine) as model:
        expected = {p: [t.id for t in model.generate(p, params)] for p in prompts}
        got: dict[str, list[int]] = {}

        def work(prompt: str) -> None:
            got[prompt] = [t.id for t in model.generate(prompt, params)]

        threads = [threading.Thread(target=work, args=(p,)) for p in prompts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert got == expected
