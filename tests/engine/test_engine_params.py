"""GenerationParams validation and its ABI JSON; the shared error-code table."""

from __future__ import annotations

import json

import pytest

from edgechain import errors
from edgechain.service.engine import GenerationParams
from edgechain.service.engine.codes import ERROR_CLASSES, error_from_code


def test_defaults_serialise_to_the_abi_json() -> None:
    assert json.loads(GenerationParams().to_json()) == {
        "temperature": 0.8,
        "top_p": 0.9,
        "seed": 0,
        "max_tokens": None,
        "max_positions": None,
        "repeat_penalty": 1.0,
        "repeat_window": 64,
        "stop": [],
    }


def test_values_and_stop_strings_round_trip_through_json() -> None:
    params = GenerationParams(
        temperature=0.0, top_p=1.0, seed=2**64 - 1, max_tokens=5, max_positions=9, stop=("é", "\n")
    )
    data = json.loads(params.to_json())
    assert data["seed"] == 2**64 - 1
    assert data["stop"] == ["é", "\n"]
    assert (data["max_tokens"], data["max_positions"], data["top_p"]) == (5, 9, 1.0)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"temperature": -0.1}, "temperature must be >= 0"),
        ({"temperature": float("nan")}, "temperature must be finite"),
        ({"top_p": 0.0}, "top_p must be in (0, 1]"),
        ({"top_p": 1.5}, "top_p must be in (0, 1]"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"max_tokens": 0}, "max_tokens must be >= 1"),
        ({"max_positions": -3}, "max_positions must be >= 1"),
        ({"repeat_penalty": 0.5}, "repeat_penalty must be >= 1.0"),
        ({"repeat_window": -1}, "repeat_window must be >= 0"),
        ({"stop": "abc"}, "stop must be a list"),
        ({"stop": ("",)}, "non-empty"),
    ],
)
def test_invalid_values_raise_invalid_parameter(changes: dict, fragment: str) -> None:
    params = GenerationParams(**changes)
    with pytest.raises(errors.InvalidParameter, match=None) as info:
        params.validate()
    assert fragment in str(info.value)
    assert info.value.exit_code == 2
    with pytest.raises(errors.InvalidParameter):
        params.to_json()


def test_every_abi_code_maps_to_an_edgechain_error_keeping_the_message() -> None:
    expected = {
        -1: errors.InvalidParameter,
        -2: errors.InvalidCheckpoint,
        -3: errors.InvalidTokenizer,
        -4: errors.VocabMismatch,
        -5: errors.PromptTooLong,
        -6: errors.ContextFull,
        -8: errors.InvalidText,
        -9: errors.EngineInternalError,
        -10: errors.UnsupportedModel,
        -11: errors.ChatTemplateError,
    }
    for code, cls in expected.items():
        err = error_from_code(code, "the guest's words")
        assert type(err) is cls
        assert str(err) == "the guest's words"
    assert set(ERROR_CLASSES) == set(range(-11, 0))


def test_unknown_code_is_an_internal_error_naming_the_code() -> None:
    err = error_from_code(-42, "odd")
    assert isinstance(err, errors.EngineInternalError)
    assert "-42" in str(err) and "odd" in str(err)
