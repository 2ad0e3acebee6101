"""Batched prefill, hint tokens and sessions stepped together (rust_guest/ABI.md): none of them
changes a bit of the output. Each is checked on both engines, f32 and int8 stories260K."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from edgechain.errors import EngineInternalError, InvalidParameter
from edgechain.service.engine import Engine, GenerationParams, LoadedModel
from edgechain.service.engine.base import Generation, Step
from edgechain.testing.models import ModelFiles


@pytest.fixture(scope="module", params=["wasm-f32", "native-f32", "wasm-int8", "native-int8"])
def model(
    request: pytest.FixtureRequest, stories260k: ModelFiles, q8_260k: ModelFiles
) -> Iterator[LoadedModel]:
    kind, fmt = request.param.split("-")
    engine: Engine = request.getfixturevalue(f"{kind}_engine")
    files = stories260k if fmt == "f32" else q8_260k
    with files.load(engine) as loaded:
        yield loaded


@pytest.fixture(scope="module", params=["f32", "int8"])
def both(
    request: pytest.FixtureRequest,
    wasm_engine: Engine,
    native_engine: Engine,
    stories260k: ModelFiles,
    q8_260k: ModelFiles,
) -> Iterator[tuple[LoadedModel, LoadedModel]]:
    files = stories260k if request.param == "f32" else q8_260k
    with files.load(wasm_engine) as wasm, files.load(native_engine) as native:
        yield wasm, native


def _run(
    model: LoadedModel, prompt: str, params: GenerationParams, hint: Sequence[int] | None = None
) -> tuple[list[int], str, Any]:
    gen = model.generate(prompt, params, hint=hint)
    ids = [t.id for t in gen]
    return ids, gen.text, gen.stop_reason


def _prompt_of(model: LoadedModel, n: int) -> str:
    """A prompt that encodes to exactly ``n`` tokens, BOS included."""
    words = ["Once", "upon", "a", "time", "there", "was", "a", "girl", "named", "Lily", "who"]
    text = " ".join(words[i % len(words)] for i in range(n + 10))
    ids = model.encode(text)
    for cut in range(n, 0, -1):
        prompt = model.decode(ids[:cut])
        if len(model.encode(prompt)) == n:
            return prompt
    raise AssertionError(f"no prompt of {n} tokens")


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 200])
def test_prompts_across_prefill_chunks_sample_the_same_on_both_engines(
    both: tuple[LoadedModel, LoadedModel], n: int
) -> None:
    # Prefill runs in chunks of 32 positions; the Rust tests compare its logits with token by
    # token bit for bit. Sampling at temperature 1 turns any difference in bits into a
    # different token sooner or later, so wasm and native must agree on every one.
    wasm, native = both
    prompt = _prompt_of(wasm, n)
    params = GenerationParams(temperature=1.0, top_p=1.0, seed=n, max_tokens=60)
    wasm_run = _run(wasm, prompt, params)
    assert wasm_run == _run(native, prompt, params)
    assert len(wasm_run[0]) > 0


def test_a_prompt_filling_the_context_stops_on_both_engines(
    both: tuple[LoadedModel, LoadedModel],
) -> None:
    wasm, native = both
    prompt = _prompt_of(wasm, wasm.info.seq_len)
    params = GenerationParams(temperature=0.0)
    assert _run(wasm, prompt, params) == _run(native, prompt, params)


PARAMS = GenerationParams(temperature=1.0, top_p=0.9, seed=5, max_positions=300)
PROMPT = "Once upon a time, there was a little"


def _hint_cases(ids: list[int], seq_len: int) -> dict[str, list[int]]:
    def changed(at: int) -> list[int]:
        wrong = list(ids)
        wrong[at] = (wrong[at] + 1) % 512
        return wrong

    return {
        "right": ids,
        "wrong first": changed(0),
        "wrong middle": changed(len(ids) // 2),
        "wrong last": changed(len(ids) - 1),
        "too few": ids[:7],
        "too many": ids + ids,
        "past the context": ids + [1] * seq_len,
        "none": [],
        "outside the vocabulary": [ids[0], 9999, *ids[2:]],
        "beyond u32": [ids[0], 2**40, *ids[2:]],
    }


def test_hints_never_change_the_output(model: LoadedModel) -> None:
    plain = _run(model, PROMPT, PARAMS)
    assert len(plain[0]) > 100
    for name, hint in _hint_cases(plain[0], model.info.seq_len).items():
        assert _run(model, PROMPT, PARAMS, hint) == plain, name


@pytest.mark.parametrize(
    "limits",
    [
        {"max_tokens": 9},
        {"stop": ["Lily"]},
        {"max_positions": 40},
        {"stop": ["."], "max_tokens": 60},
    ],
)
def test_hints_respect_stop_strings_and_limits(model: LoadedModel, limits: dict[str, Any]) -> None:
    full = _run(model, PROMPT, PARAMS)[0]
    params = GenerationParams(**{**PARAMS.__dict__, **limits})
    plain = _run(model, PROMPT, params)
    for name, hint in _hint_cases(full, model.info.seq_len).items():
        assert _run(model, PROMPT, params, hint) == plain, name


def test_hints_must_be_a_list_of_integers(model: LoadedModel) -> None:
    for bad in ("12", [1, "2"], [True], 3):
        with pytest.raises(InvalidParameter, match="hint"):
            model.generate(PROMPT, PARAMS, hint=bad)  # type: ignore[arg-type]


def _session(model: LoadedModel, prompt: str, params: GenerationParams) -> Generation:
    """A generation whose backend session (``_driver``) the test steps itself."""
    return model.generate(prompt, params)


def _solo(model: LoadedModel, prompt: str, params: GenerationParams) -> list[Step]:
    gen = _session(model, prompt, params)
    steps = []
    while True:
        steps.append(gen._driver.step(None))
        if steps[-1].produced is None:
            gen.cancel()
            return steps


SESSIONS = [
    ("Once upon a time", GenerationParams(temperature=0.0, max_tokens=40)),
    ("Lily", GenerationParams(temperature=1.0, seed=3, max_positions=60)),
    ("The cat sat on the mat and", GenerationParams(temperature=0.8, seed=4, max_tokens=3)),
    ("", GenerationParams(temperature=1.0, seed=9, stop=["."], max_tokens=70)),
    ("A dog", GenerationParams(temperature=1.0, seed=2, repeat_penalty=1.3, max_tokens=50)),
]


def _batched(model: LoadedModel) -> list[list[Step]]:
    """SESSIONS stepped together: 2 joins at step 5, 0 leaves (freed) after step 12."""
    live = {i: _session(model, *SESSIONS[i]) for i in (0, 1, 3, 4)}
    steps: list[list[Step]] = [[] for _ in SESSIONS]
    for step in range(90):
        if step == 5:
            live[2] = _session(model, *SESSIONS[2])
        if step == 12:
            live.pop(0).cancel()
        order = sorted(live)
        outcomes = model.step_batch([live[i]._driver for i in order], None)  # type: ignore[attr-defined]
        for i, outcome in zip(order, outcomes, strict=True):
            steps[i].append(outcome)
            if outcome.produced is None:
                live.pop(i).cancel()
    assert not live
    return steps


def test_sessions_stepped_together_match_their_solo_runs(
    both: tuple[LoadedModel, LoadedModel],
) -> None:
    wasm, native = both
    assert wasm.steps_in_one_call  # type: ignore[attr-defined]  # ec_batch_step, not a loop
    wasm_steps = _batched(wasm)
    for i, (prompt, params) in enumerate(SESSIONS):
        solo = _solo(wasm, prompt, params)
        assert wasm_steps[i] == (solo[:12] if i == 0 else solo), i
    assert _batched(native) == wasm_steps


def test_a_batch_step_refuses_a_closed_or_repeated_session(model: LoadedModel) -> None:
    a, b = _session(model, *SESSIONS[0]), _session(model, *SESSIONS[1])
    step_batch = model.step_batch  # type: ignore[attr-defined]
    with pytest.raises(InvalidParameter, match="twice"):
        step_batch([a._driver, a._driver], None)
    assert step_batch([], None) == []
    first = step_batch([a._driver, b._driver], None)
    assert first == [_solo(model, *SESSIONS[0])[0], _solo(model, *SESSIONS[1])[0]]
    driver_a = a._driver
    a.cancel()
    with pytest.raises(EngineInternalError, match="closed"):
        step_batch([driver_a, b._driver], None)
    b.cancel()
