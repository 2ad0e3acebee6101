"""`LoadedModel.verify_claim`: the verdict on a claimed generation is always a full replay's
(valid, or the first position that differs with the model's token there), on both engines, f32
and int8, greedy and sampled, with top-p, repeat penalties, stop strings and limits."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from edgechain.errors import Cancelled, InvalidParameter
from edgechain.service.engine import Engine, GenerationParams, LoadedModel
from edgechain.service.engine.base import StopReason
from edgechain.testing.models import ModelFiles

PROMPTS = ("Once upon a time", "The cat", "")
LIMITS = (
    {"repeat_penalty": 1.0},
    {"repeat_penalty": 1.3, "max_tokens": 40},
    {"repeat_penalty": 1.1, "stop": ("Lily", ".")},
)


@pytest.fixture(scope="module", params=["f32", "int8"])
def model(
    request: pytest.FixtureRequest,
    engine: Engine,
    stories260k: ModelFiles,
    q8_260k: ModelFiles,
) -> Iterator[LoadedModel]:
    files = stories260k if request.param == "f32" else q8_260k
    with files.load(engine) as loaded:
        yield loaded


def _replay(model: LoadedModel, prompt: str, params: GenerationParams):
    generation = model.generate(prompt, params)
    ids = [t.id for t in generation]
    return ids, generation.text, generation.stop_reason


def _claims(ids: list[int]) -> list[list[int]]:
    if not ids:
        return [[], [7]]
    claims = [ids, ids[:-1], [*ids, 5], [*ids[: len(ids) // 2], 2**40]]
    for at in (0, len(ids) // 2, len(ids) - 1):
        forged = list(ids)
        forged[at] = (forged[at] + 1 + at % 5) % 512
        claims.append(forged)
    return claims


def _replay_verdict(ids: list[int], claimed: list[int]) -> tuple[bool, int, int | None]:
    matched = 0
    while matched < min(len(ids), len(claimed)) and ids[matched] == claimed[matched]:
        matched += 1
    expected = ids[matched] if matched < len(ids) else None
    return ids == claimed, matched, expected


@pytest.mark.parametrize("temperature", [0.0, 0.8, 1.0])
@pytest.mark.parametrize("top_p", [0.5, 0.9, 1.0])
def test_verdicts_equal_full_replays(model: LoadedModel, temperature: float, top_p: float) -> None:
    checked = 0
    for case, limits in enumerate(LIMITS):
        params = GenerationParams(
            temperature=temperature, top_p=top_p, seed=11 + case, max_positions=160, **limits
        )
        prompt = PROMPTS[case]
        ids, text, reason = _replay(model, prompt, params)
        for claimed in _claims(ids):
            verdict = model.verify_claim(prompt, params, claimed)
            valid, matched, expected = _replay_verdict(ids, claimed)
            assert (verdict.valid, verdict.matched, verdict.expected) == (
                valid,
                matched,
                expected,
            ), (case, len(claimed), len(ids))
            if valid:
                assert (verdict.text, verdict.stop_reason) == (text, reason)
            checked += 1
    assert checked >= 3 * 7


def test_the_engines_give_the_same_verdicts(
    wasm_260k: LoadedModel, native_260k: LoadedModel
) -> None:
    params = GenerationParams(temperature=0.8, top_p=0.9, seed=3, max_positions=200)
    ids, _, _ = _replay(native_260k, "Lily", params)
    for claimed in _claims(ids):
        verdicts = [m.verify_claim("Lily", params, claimed) for m in (wasm_260k, native_260k)]
        assert verdicts[0] == verdicts[1]


def test_a_valid_claim_ending_on_a_limit_or_a_stop_string(model_260k: LoadedModel) -> None:
    for params, reason in (
        (GenerationParams(temperature=0, max_tokens=9), StopReason.MAX_TOKENS),
        (GenerationParams(temperature=0, max_positions=20), StopReason.MAX_TOKENS),
        (GenerationParams(temperature=0, stop=("Lily",)), StopReason.STOP_STRING),
    ):
        ids, text, stopped = _replay(model_260k, "Once upon a time", params)
        verdict = model_260k.verify_claim("Once upon a time", params, ids)
        assert stopped is reason and verdict.valid and verdict.stop_reason is reason
        assert verdict.text == text


def test_claims_are_checked_and_a_cancelled_verification_stops(model_260k: LoadedModel) -> None:
    params = GenerationParams(temperature=0, max_positions=100)
    with pytest.raises(InvalidParameter, match="claimed token ids must be integers"):
        model_260k.verify_claim("x", params, [1, "2"])  # type: ignore[list-item]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        model_260k.verify_claim("x", params, [1, 2, 3], cancel=cancel)
    ids, _, _ = _replay(model_260k, "x", params)
    assert model_260k.verify_claim("x", params, ids).valid
