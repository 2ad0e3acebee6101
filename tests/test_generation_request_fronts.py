"""The generation request is declared once (contract/generation_request.py): every front lists
exactly its fields with its defaults, the CLI, GraphQL, SSE, the receipt codec, MintStory's
checks, the engine's JSON and the Rust side (rust_guest's defaults, linera_app's ``generate``);
out-of-range values are refused at the door with the real range (issue 26, item 6)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from edgechain.cli import build_parser
from edgechain.contract.generation_request import (
    F32_MAX,
    MAX_PROMPT_BYTES,
    ROLES,
    GenerationRequest,
    decode_parameters,
    defaults,
    parameters,
    parameters_problem,
    required,
    sampling_parameters,
)
from edgechain.errors import InvalidParameter, OperationRejected
from edgechain.node.query_params import GENERATE_PARAMETERS
from edgechain.node.schema import REGISTRY_SCHEMA
from edgechain.service.engine.base import GenerationParams
from edgechain.service.query import GenerateQuery
from edgechain.service.receipt import _SCHEMA, query_from_parameters, query_parameters

REPO = Path(__file__).resolve().parents[1]
#: The engine's own fields beyond the request's: run.c's -n (`edgechain run`).
ENGINE_ONLY = {"max_positions"}
#: The sampling fields whose engine default is the request's (the engine's ``max_tokens``
#: default is "unset: the context decides"; a request always gives its budget).
ENGINE_DEFAULTS = [name for name in sampling_parameters() if name != "max_tokens"]


def _cli_actions() -> dict[str, object]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["generate"]
    return {a.dest: a for a in sub._actions}


def test_the_cli_graphql_and_sse_list_exactly_the_declared_fields() -> None:
    names = list(parameters())
    actions = _cli_actions()
    assert [name for name in actions if name in parameters()] == names
    assert {a.dest for a in actions.values() if a.required} == set(required())
    for root in (REGISTRY_SCHEMA._schema.query_type, REGISTRY_SCHEMA._schema.subscription_type):
        args = root.fields["generate"].args
        assert [re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), a) for a in args] == names
        for name, default in defaults().items():
            camel = re.sub(r"_(.)", lambda m: m[1].upper(), name)
            shown = list(default) if isinstance(default, tuple) else default
            assert args[camel].default_value == shown, name
    assert [re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), p) for p in GENERATE_PARAMETERS] == (
        names
    )


def test_the_query_is_the_request_with_its_defaults() -> None:
    query = GenerateQuery(model="m")
    assert isinstance(query, GenerationRequest)
    assert {f.name for f in dataclasses.fields(GenerateQuery)} == set(parameters())
    assert all(getattr(query, name) == value for name, value in defaults().items())


def test_the_receipt_and_mint_story_record_exactly_the_sampling_fields() -> None:
    query = GenerateQuery(model="m", temperature=0.7, stop=("x",), max_tokens=9)
    encoded = query_parameters(query)
    assert list(encoded) == list(sampling_parameters()) == list(_SCHEMA["parameters"])
    assert encoded["temperature"] == "0.7" and encoded["max_tokens"] == 9
    assert query_from_parameters("m", "1", "", encoded, None) == GenerateQuery(
        model="m", version="1", temperature=0.7, stop=("x",), max_tokens=9
    )
    assert decode_parameters(encoded)["stop"] == ("x",)
    assert parameters_problem(encoded) is None
    assert "exactly the fields" in str(parameters_problem({**encoded, "extra": 1}))
    assert "canonical" in str(parameters_problem({**encoded, "top_p": "0.90"}))
    from edgechain.contract.story_book import MintStory

    with pytest.raises(OperationRejected, match="parameters.max_tokens must be a int"):
        MintStory("m", "1", "p", {**encoded, "max_tokens": "9"}, None, {}).validate()


def test_the_engine_json_lists_the_sampling_fields_and_the_seed_with_their_defaults() -> None:
    data = json.loads(GenerationParams().to_json())
    assert set(data) == set(sampling_parameters()) | {"seed"} | ENGINE_ONLY
    for name in ENGINE_DEFAULTS:
        shown = list(defaults()[name]) if name == "stop" else defaults()[name]
        assert data[name] == shown, name


def _rust_defaults(path: Path) -> dict[str, str]:
    source = path.read_text()
    return dict(re.findall(r"fn default_(\w+)\(\) -> [^{]+\{\s*([^}]+?)\s*\}", source))


def _same(rust: str, value: object) -> bool:
    return float(rust) == value if isinstance(value, float) else int(rust) == value


def test_rust_guest_defaults_are_the_declared_ones() -> None:
    rust = _rust_defaults(REPO / "rust_guest" / "src" / "generation.rs")
    for name in ENGINE_DEFAULTS:
        if name == "stop":
            continue  # `#[serde(default)]`: an empty list
        assert _same(rust[name], defaults()[name]), name
    assert int(rust["seed"]) == GenerationParams().seed  # both engines agree
    sampler = (REPO / "rust_guest" / "src" / "sampler.rs").read_text()
    fields = re.search(r"pub struct SamplerParams \{(.*?)\}", sampler, re.S)
    assert fields is not None
    named = set(re.findall(r"pub (\w+):", fields[1]))
    assert named == {name for name in ENGINE_DEFAULTS if name != "stop"} | {"seed"}


def test_linera_app_generate_takes_the_declared_fields_and_defaults() -> None:
    source = (REPO / "linera_app" / "src" / "service.rs").read_text()
    signature = re.search(r"async fn generate\(\s*&self,(.*?)\)\s*->", source, re.S)
    assert signature is not None
    arguments = re.findall(r"(?:#\[graphql\(([^)]*)\)\]\s*)?(\w+): [\w<>]+,", signature[1])
    assert [name for _, name in arguments] == list(parameters())
    for attribute, name in arguments:
        default = defaults().get(name)
        if default is None:
            assert attribute == "", name  # an Option: the declared "derived"/"latest"
        elif default in ("", ()):
            assert attribute in ("default", 'default = ""'), name
        else:
            given = attribute.removeprefix("default = ")
            assert _same(given, default), name


def test_linera_app_takes_the_declared_roles_and_prompt_bound() -> None:
    source = (REPO / "linera_app" / "src" / "rules.rs").read_text()
    roles = re.search(r"pub const ROLES: \[&str; (\d+)\] = \[([^\]]*)\];", source)
    bound = re.search(r"pub const MAX_PROMPT_BYTES: usize = ([\d *]+);", source)
    assert roles is not None and bound is not None
    assert tuple(re.findall(r'"(\w+)"', roles[2])) == ROLES and int(roles[1]) == len(ROLES)
    assert eval(bound[1], {}) == MAX_PROMPT_BYTES  # digits and '*' only, by the pattern
    # service.rs takes both from rules.rs instead of restating them.
    service = (REPO / "linera_app" / "src" / "service.rs").read_text()
    assert "rules::{MAX_PROMPT_BYTES, ROLES}" in service
    assert "const ROLES" not in service and "const MAX_PROMPT_BYTES" not in service


# --- issue 26, item 6: out-of-range values are refused with the real range ---------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["-n", "99999999999999999999"], "max_tokens must be >= 1 and <= 2147483647"),
        (["-n", "2147483648"], "max_tokens must be >= 1 and <= 2147483647"),
        (["--repeat-window", str(2**31)], "repeat_window must be >= 0 and <= 2147483647"),
        (["--repeat-window", str(2**63)], "repeat_window must be >= 0 and <= 2147483647"),
        (["--repeat-window", "1" + "0" * 20], "repeat_window must be >= 0 and <= 2147483647"),
        (["--repeat-penalty", "1e39"], f"repeat_penalty must be >= 1 and <= {F32_MAX!r}"),
        (["-t", "1e39"], f"temperature must be >= 0 and <= {F32_MAX!r}"),
    ],
)
def test_generate_names_the_real_range(flags: list[str], expected: str) -> None:
    from edgechain.cli.generate import query_from_args

    args = build_parser().parse_args(["generate", "--model", "m", *flags])
    with pytest.raises(InvalidParameter) as caught:
        query_from_args(args)
    assert str(caught.value).startswith(expected), caught.value


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"temperature": 1e308}, f"temperature must be >= 0 and <= {F32_MAX!r}, got 1e+308"),
        ({"repeat_penalty": 1e39}, f"repeat_penalty must be >= 1.0 and <= {F32_MAX!r}"),
        ({"max_positions": 2**31}, "max_positions must be >= 1 and <= 2147483647"),
        ({"repeat_window": 2**63}, "repeat_window must be >= 0 and <= 2147483647"),
    ],
)
def test_the_engine_guard_names_the_real_range(changes: dict, expected: str) -> None:
    # `edgechain run -t 1e308` goes straight to the engine's guard.
    with pytest.raises(InvalidParameter) as caught:
        GenerationParams(**changes).validate()
    assert str(caught.value).startswith(expected), caught.value


def test_the_largest_f32_is_accepted_everywhere() -> None:
    query = GenerateQuery(model="m", temperature=F32_MAX, repeat_penalty=F32_MAX)
    assert json.loads(query.params(1).to_json())["temperature"] == F32_MAX  # the engine's guard
