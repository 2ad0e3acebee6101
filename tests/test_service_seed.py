"""derive_seed / resolve_seed: a pinned test vector, the documented encoding, sensitivity."""

from __future__ import annotations

import dataclasses
import struct

import blake3
import pytest

from edgechain.errors import InvalidParameter
from edgechain.service.query import GenerateQuery
from edgechain.service.seed import SeedQuery, derive_seed, encode_seed_input, resolve_seed

CHAIN = "a" * 64
BLOCK = "b" * 64
APP = "c" * 64
PARAMS = {"temperature": 0.8, "top_p": 0.9, "max_tokens": 256, "repeat_penalty": 1.1}
QUERY = SeedQuery("stories260K", "1", "Once upon a time", PARAMS)

# Pinned: changing it changes every derived seed, which needs a new domain tag (seed/v3).
PINNED_SEED = 13323766160623551065


def test_pinned_test_vector() -> None:
    assert derive_seed(CHAIN, BLOCK, APP, QUERY) == PINNED_SEED


def test_encoding_matches_the_documented_layout() -> None:
    def field(b: bytes) -> bytes:
        return struct.pack("<Q", len(b)) + b

    expected = b"".join(
        [
            field(b"edgechain/seed/v2"),
            field(CHAIN.encode()),
            field(BLOCK.encode()),
            field(APP.encode()),
            field(b"stories260K"),
            field(b"1"),
            field(b"Once upon a time"),
            struct.pack("<Q", 4),
            field(b"max_tokens") + b"I" + field(b"256"),
            field(b"repeat_penalty") + b"F" + struct.pack("<d", 1.1),
            field(b"temperature") + b"F" + struct.pack("<d", 0.8),
            field(b"top_p") + b"F" + struct.pack("<d", 0.9),
        ]
    )
    assert encode_seed_input(CHAIN, BLOCK, APP, QUERY) == expected
    digest = blake3.blake3(expected).digest()
    assert derive_seed(CHAIN, BLOCK, APP, QUERY) == int.from_bytes(digest[:8], "little")


def test_seed_is_a_u64() -> None:
    seeds = {
        derive_seed(CHAIN, BLOCK, APP, dataclasses.replace(QUERY, prompt=str(i)))
        for i in range(200)
    }
    assert len(seeds) == 200
    assert all(0 <= s < 2**64 for s in seeds)
    assert max(seeds) >= 2**63  # the top bit is used: all 8 bytes go into the seed


# --- sensitivity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"chain_id": "d" * 64},
        {"block_hash": "e" * 64},
        {"application_id": "f" * 64},
        {"model": "stories15M"},
        {"version": "2"},
        {"prompt": "Once upon a time."},
        {"prompt": ""},
    ],
)
def test_every_field_changes_the_seed(change: dict[str, str]) -> None:
    ids = {"chain_id": CHAIN, "block_hash": BLOCK, "application_id": APP}
    query_fields = {"model": QUERY.model, "version": QUERY.version, "prompt": QUERY.prompt}
    for key, value in change.items():
        (ids if key in ids else query_fields)[key] = value
    query = SeedQuery(params=PARAMS, **query_fields)
    assert derive_seed(ids["chain_id"], ids["block_hash"], ids["application_id"], query) != (
        PINNED_SEED
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("temperature", 0.7),
        ("top_p", 1.0),
        ("max_tokens", 255),
        ("repeat_penalty", 1.0),
        ("stop", ["\n"]),
        ("stream", True),
    ],
)
def test_every_generation_parameter_changes_the_seed(name: str, value: object) -> None:
    query = dataclasses.replace(QUERY, params={**PARAMS, name: value})
    assert derive_seed(CHAIN, BLOCK, APP, query) != PINNED_SEED


def test_field_boundaries_are_unambiguous() -> None:
    a = SeedQuery("ab", "1", "c", {})
    b = SeedQuery("a", "1", "bc", {})
    assert derive_seed(CHAIN, BLOCK, APP, a) != derive_seed(CHAIN, BLOCK, APP, b)
    swapped = derive_seed(BLOCK, CHAIN, APP, QUERY)
    assert swapped != PINNED_SEED


def test_value_types_are_distinguished() -> None:
    def seed(value: object) -> int:
        return derive_seed(CHAIN, BLOCK, APP, SeedQuery("m", "1", "p", {"x": value}))

    values = [None, True, False, 0, 1, "1", 1.5, [1], (1, 2), [], ""]
    assert len({seed(v) for v in values}) == len(values)


# --- canonical forms -----------------------------------------------------------------------------


def test_the_seed_parameter_is_ignored() -> None:
    query = dataclasses.replace(QUERY, params={**PARAMS, "seed": 42})
    assert derive_seed(CHAIN, BLOCK, APP, query) == PINNED_SEED


def test_parameter_order_does_not_matter() -> None:
    reordered = dict(reversed(list(PARAMS.items())))
    query = dataclasses.replace(QUERY, params=reordered)
    assert derive_seed(CHAIN, BLOCK, APP, query) == PINNED_SEED


def test_integral_floats_equal_integers_and_negative_zero_is_zero() -> None:
    def seed(params: dict[str, object]) -> int:
        return derive_seed(CHAIN, BLOCK, APP, SeedQuery("m", "1", "p", params))

    assert seed({"max_tokens": 256.0}) == seed({"max_tokens": 256})
    assert seed({"temperature": -0.0}) == seed({"temperature": 0.0}) == seed({"temperature": 0})
    assert seed({"temperature": 0.5}) != seed({"temperature": 0.5000001})


def test_identifiers_as_bytes_or_any_case_hex_are_the_same() -> None:
    raw = bytes.fromhex(CHAIN)
    assert derive_seed(raw, BLOCK.upper(), APP, QUERY) == PINNED_SEED
    assert derive_seed("chain-1", BLOCK, APP, QUERY) != derive_seed("Chain-1", BLOCK, APP, QUERY)


def test_version_as_int_or_str_is_the_same() -> None:
    assert derive_seed(CHAIN, BLOCK, APP, dataclasses.replace(QUERY, version=1)) == PINNED_SEED


def test_dataclass_parameters_are_read_field_by_field() -> None:
    @dataclasses.dataclass
    class Params:
        temperature: float = 0.8
        top_p: float = 0.9
        max_tokens: int = 256
        repeat_penalty: float = 1.1
        seed: int | None = 7

    query = dataclasses.replace(QUERY, params=Params())
    assert derive_seed(CHAIN, BLOCK, APP, query) == PINNED_SEED


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object(), {"a": 1}])
def test_unencodable_parameters_are_rejected(value: object) -> None:
    query = SeedQuery("m", "1", "p", {"x": value})
    with pytest.raises(InvalidParameter):
        derive_seed(CHAIN, BLOCK, APP, query)


# --- what a generate query passes ------------------------------------------------------------


def test_a_generate_query_leaves_the_budget_and_stop_strings_out_of_its_seed() -> None:
    base = GenerateQuery(model="stories260K", prompt="Lily", temperature=1.0, max_tokens=20)
    longer = dataclasses.replace(base, max_tokens=60, stop=(".",))
    assert base.seed_query("1") == longer.seed_query("1")
    assert set(base.seed_query("1").params) == {
        "temperature",
        "top_p",
        "repeat_penalty",
        "repeat_window",
    }
    for change in ({"temperature": 0.9}, {"top_p": 0.5}, {"repeat_window": 8}):
        other = dataclasses.replace(base, **change)
        assert derive_seed(CHAIN, BLOCK, APP, other.seed_query("1")) != derive_seed(
            CHAIN, BLOCK, APP, base.seed_query("1")
        )


# --- resolve_seed --------------------------------------------------------------------------------


def test_a_user_seed_wins() -> None:
    assert resolve_seed(42, CHAIN, BLOCK, APP, QUERY) == 42
    assert resolve_seed(0, CHAIN, BLOCK, APP, QUERY) == 0
    assert resolve_seed(2**64 - 1, CHAIN, BLOCK, APP, QUERY) == 2**64 - 1


def test_without_a_user_seed_the_seed_is_derived() -> None:
    assert resolve_seed(None, CHAIN, BLOCK, APP, QUERY) == PINNED_SEED


@pytest.mark.parametrize("bad", [-1, 2**64, True, 1.5, "42"])
def test_invalid_user_seeds_are_rejected(bad: object) -> None:
    with pytest.raises(InvalidParameter):
        resolve_seed(bad, CHAIN, BLOCK, APP, QUERY)  # type: ignore[arg-type]
