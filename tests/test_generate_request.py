"""One generate request (service/query.py): every front door derives its parameters from it.

The CLI flags, the GraphQL query and subscription arguments and the SSE URL parameters are
checked against the definition (names, defaults, reachability of every engine parameter);
validation happens once, when the query is built; the derived seed ignores the token budget,
so a shorter generation is a prefix of a longer one, on both engines.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from graphql import GraphQLSchema
from service_helpers import publish_stories
from starlette.datastructures import QueryParams

from edgechain.cli import build_parser
from edgechain.cli.generate import query_from_args
from edgechain.client import Client
from edgechain.errors import InvalidParameter, InvalidText, UsageError
from edgechain.node.query_params import GENERATE_PARAMETERS, generate_query_from_params
from edgechain.node.schema import REGISTRY_SCHEMA
from edgechain.service import runtime
from edgechain.service.engine import open_engine
from edgechain.service.engine.base import GenerationParams
from edgechain.service.query import (
    GenerateQuery,
    Parameter,
    defaults,
    parameters,
    seed_parameters,
)
from edgechain.testing.weight_server import WeightServer

REPO = Path(__file__).resolve().parents[1]

# --- the definition reaches every door -----------------------------------------------------


def test_every_engine_parameter_is_a_query_field() -> None:
    engine_fields = {f.name for f in dataclasses.fields(GenerationParams)}
    # max_positions is run.c's -n (`edgechain run`); the service counts new tokens instead.
    assert engine_fields - {"max_positions", "seed"} <= set(parameters())
    assert "repeat_window" in parameters()


def test_runtime_re_exports_the_query() -> None:
    assert runtime.GenerateQuery is GenerateQuery


def _generate_parser_actions() -> dict[str, object]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["generate"]
    return {a.dest: a for a in sub._actions}


def test_the_cli_has_one_flag_per_field_with_run_c_letters() -> None:
    actions = _generate_parser_actions()
    for name, spec in parameters().items():
        action = actions[name]
        assert Parameter.flag(name) in action.option_strings
        if spec.short:
            assert f"-{spec.short}" in action.option_strings
        assert action.help == spec.describe(defaults().get(name))  # range and default
        assert action.default is None  # unset: the query's own default applies
    assert actions["max_tokens"].option_strings == ["-n", "--max-tokens"]
    assert actions["repeat_window"].option_strings == ["--repeat-window"]


def test_unset_cli_flags_take_the_query_defaults() -> None:
    args = build_parser().parse_args(["generate", "--model", "m"])
    assert query_from_args(args) == GenerateQuery(model="m")
    args = build_parser().parse_args(
        ["generate", "--model", "m", "--repeat-window", "8", "--stop", "a", "--stop", "b",
         "-s", str(2**64 - 1), "-n", "20", "-t", "1"]
    )  # fmt: skip
    query = query_from_args(args)
    assert (query.repeat_window, query.stop, query.seed) == (8, ("a", "b"), 2**64 - 1)
    assert (query.max_tokens, query.temperature) == (20, 1.0)


def _graphql_arguments(schema: GraphQLSchema, root: str) -> dict[str, object]:
    root_type = schema.query_type if root == "query" else schema.subscription_type
    return root_type.fields["generate"].args


@pytest.mark.parametrize("root", ["query", "subscription"])
def test_graphql_arguments_are_the_fields_with_their_defaults(root: str) -> None:
    args = _graphql_arguments(REGISTRY_SCHEMA._schema, root)
    assert list(args) == [Parameter.camel(name) for name in parameters()]
    for name, default in defaults().items():
        argument = args[Parameter.camel(name)]
        expected = list(default) if isinstance(default, tuple) else default
        assert argument.default_value == expected, name
        assert argument.description.startswith(parameters()[name].help)
    assert str(args["model"].type) == "String!"
    assert str(args["seed"].type) == "U64"
    assert str(args["repeatWindow"].type) == "Int!"


def test_sse_parameters_are_the_fields_in_camel_case() -> None:
    assert tuple(Parameter.camel(name) for name in parameters()) == GENERATE_PARAMETERS
    query = generate_query_from_params(QueryParams("model=m"))
    assert query == GenerateQuery(model="m")  # the same defaults as every other door
    query = generate_query_from_params(
        QueryParams(
            "model=m&prompt=Hi&repeatWindow=8&stop=a&stop=b&seed=18446744073709551615"
            "&maxTokens=20&temperature=1&topP=0.5&repeatPenalty=1.1&version=2"
        )
    )
    assert query == GenerateQuery(
        model="m", prompt="Hi", repeat_window=8, stop=("a", "b"), seed=2**64 - 1,
        max_tokens=20, temperature=1.0, top_p=0.5, repeat_penalty=1.1, version="2",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("params", "error", "fragment"),
    [
        ("prompt=x", UsageError, "missing parameter 'model'"),
        ("model=m&colour=red", UsageError, "unknown parameter 'colour'"),
        ("model=m&seed=1&seed=2", UsageError, "given 2 times"),
        ("model=m&repeatWindow=-1", InvalidParameter, "repeat_window must be >= 0"),
        ("model=m&seed=-1", InvalidParameter, "seed must be in [0, 2^64 - 1]"),
        ("model=m&maxTokens=many", InvalidParameter, "maxTokens must be an integer"),
        ("model=m&stop=", InvalidParameter, "must not be empty"),
    ],
)
def test_bad_sse_parameters(params: str, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as caught:
        generate_query_from_params(QueryParams(params))
    assert fragment in str(caught.value)


# --- validation where the query is built -----------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "error", "fragment"),
    [
        ({"temperature": -0.1}, InvalidParameter, "temperature must be >= 0"),
        ({"top_p": 0}, InvalidParameter, "top_p must be in (0, 1]"),
        ({"top_p": float("nan")}, InvalidParameter, "top_p must be finite"),
        ({"max_tokens": 0}, InvalidParameter, "max_tokens must be >= 1"),
        ({"max_tokens": 2.5}, InvalidParameter, "max_tokens must be an integer"),
        ({"repeat_penalty": 0.9}, InvalidParameter, "repeat_penalty must be >= 1"),
        ({"repeat_window": -1}, InvalidParameter, "repeat_window must be >= 0"),
        ({"seed": 2**64}, InvalidParameter, "seed must be in [0, 2^64 - 1]"),
        ({"seed": True}, InvalidParameter, "seed must be an integer"),
        ({"stop": "."}, InvalidParameter, "stop must be a list of strings"),
        ({"prompt": "x" * (64 * 1024 + 1)}, InvalidParameter, "longer than 65536 bytes"),
        ({"prompt": "bad \udcff byte"}, InvalidText, "prompt is not valid UTF-8"),
        ({"stop": ["\ud800"]}, InvalidText, "stop is not valid UTF-8"),
        ({"model": None}, InvalidParameter, "model is required"),
    ],
)
def test_a_bad_query_fails_when_it_is_built(
    fields: dict[str, object], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as caught:
        GenerateQuery(**{"model": "m", **fields})
    assert fragment in str(caught.value)


def test_values_are_normalised() -> None:
    query = GenerateQuery(model="m", seed="12345678901234567890", stop=["a"], temperature=1)
    assert query.seed == 12345678901234567890 and query.stop == ("a",)
    assert isinstance(query.temperature, float)
    assert query.to_dict()["seed"] == "12345678901234567890"


def _cli(*args: bytes | str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "EDGECHAIN_DIR"}
    return subprocess.run(
        [sys.executable, "-m", "edgechain.cli", *args],
        capture_output=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip


def test_non_utf8_text_on_the_command_line_is_an_input_error(tmp_path: Path) -> None:
    # Checked when the query is built: before the network is even opened.
    for flags in (["-i", b"caf\xe9"], ["--stop", b"\xff"]):
        done = _cli("generate", "--model", "m", "--dir", str(tmp_path / "none"), *flags)
        assert done.returncode == 3, done.stderr
        assert b"not valid UTF-8" in done.stderr and b"Traceback" not in done.stderr


def test_a_bad_value_is_a_usage_error_naming_the_flag() -> None:
    done = _cli("generate", "--model", "m", "--repeat-window", "wide")
    assert done.returncode == 2
    assert b"--repeat-window: repeat_window must be an integer" in done.stderr


# --- seeds: the budget does not change the story ---------------------------------------------


def test_the_seed_covers_sampling_not_stopping() -> None:
    assert seed_parameters() == ("temperature", "top_p", "repeat_penalty", "repeat_window")


@pytest.fixture(params=["wasm", "native"])
def client(
    request: pytest.FixtureRequest, tmp_path: Path, stories_server: WeightServer
) -> Iterator[Client]:
    with Client.up(tmp_path / "net", engine=open_engine(request.param)) as c:
        publish_stories(c, stories_server.base_url)
        yield c


def test_a_shorter_budget_prints_a_prefix_of_a_longer_one(client: Client) -> None:
    base = GenerateQuery(model="stories260K", prompt="Lily", temperature=1.0)
    records = [
        client.generate(dataclasses.replace(base, max_tokens=n)).collect() for n in (20, 40, 60)
    ]
    assert len({r.seed for r in records}) == 1
    assert all(r.seed_source == "derived" for r in records)
    texts = [r.text for r in records]
    assert texts[2].startswith(texts[1]) and texts[1].startswith(texts[0])
    assert len(texts[0]) < len(texts[1]) < len(texts[2])
    # Stop strings do not change the seed either: the stopped text is a prefix too.
    stopped = client.generate(dataclasses.replace(base, max_tokens=60, stop=(".",))).collect()
    assert stopped.seed == records[0].seed and texts[2].startswith(stopped.text)
    # A sampling parameter does change it.
    hotter = client.generate(dataclasses.replace(base, max_tokens=20, temperature=1.1)).collect()
    assert hotter.seed != records[0].seed
