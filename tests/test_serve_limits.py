"""GraphQL limits and malformed requests: depth, size, aliases, ``generate`` fields and tokens
per request are bounded before anything runs; a malformed body is HTTP 400 with a typed error,
never HTTP 500 or InternalError."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from graphql import parse
from graphql.language import FieldNode, OperationDefinitionNode
from serve_helpers import NodeProcess, start_node, stop_node

from edgechain.client import Client
from edgechain.node import limits

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    directory = tmp_path_factory.mktemp("limits") / "net"
    Client.up(directory, validators=4).close()
    node = start_node(directory)
    yield node
    stop_node(node)


def post(node: NodeProcess, body: bytes | str) -> httpx.Response:
    return httpx.post(node.graphql_url, content=body, headers=JSON, timeout=60)


def generations(node: NodeProcess) -> dict[str, int]:
    return httpx.get(node.base_url + "/").json()["generations"]


def the_error(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] != "InternalError"
    return error


def test_64_aliased_generate_fields_are_refused_before_any_runs(node: NodeProcess) -> None:
    before = generations(node)
    fields = " ".join(
        f'g{i}: generate(model: "m", prompt: "p", maxTokens: 32) {{ text }}' for i in range(64)
    )
    error = the_error(post(node, json.dumps({"query": "{ " + fields + " }"})))
    assert error["extensions"]["code"] == "LimitExceeded"
    assert generations(node) == before


def test_generate_fields_over_the_cap_are_refused_even_without_aliases_limit(
    node: NodeProcess,
) -> None:
    count = limits.MAX_GENERATE_FIELDS + 1
    fields = " ".join(f'g{i}: generate(model: "m", prompt: "p") {{ text }}' for i in range(count))
    error = the_error(post(node, json.dumps({"query": "{ " + fields + " }"})))
    assert error["extensions"]["code"] == "LimitExceeded"
    assert f"{count} generate fields" in error["message"]


def test_the_token_budget_counts_variables_and_fragments(node: NodeProcess) -> None:
    query = """query Q($n: Int!) { ...F  b: generate(model: "m", prompt: "p", maxTokens: $n)
               { text } }
               fragment F on Query { a: generate(model: "m", prompt: "p", maxTokens: $n)
               { text } }"""
    body = {"query": query, "variables": {"n": limits.MAX_GENERATED_TOKENS}}
    error = the_error(post(node, json.dumps(body)))
    assert error["extensions"]["code"] == "LimitExceeded"
    assert f"{2 * limits.MAX_GENERATED_TOKENS} generated tokens" in error["message"]


def test_within_the_budget_the_query_runs(node: NodeProcess) -> None:
    fields = " ".join(
        f'g{i}: generate(model: "nope", prompt: "p", maxTokens: 8) {{ text }}'
        for i in range(limits.MAX_GENERATE_FIELDS)
    )
    body = post(node, json.dumps({"query": "{ " + fields + " }"})).json()
    assert {e["extensions"]["code"] for e in body["errors"]} == {"ModelNotFound"}


def budget_fields(query: str) -> list[FieldNode]:
    [operation] = parse(query).definitions
    assert isinstance(operation, OperationDefinitionNode)
    return [f for f in operation.selection_set.selections if isinstance(f, FieldNode)]


def test_the_budget_finds_max_tokens_in_an_input_object() -> None:
    fields = budget_fields('{ generate(input: {model: "m", prompt: "p", maxTokens: 5000}) { t } }')
    with pytest.raises(Exception, match="5000 generated tokens"):
        limits.check_budget(fields, {})
    fields = budget_fields("query($q: In) { generate(input: $q) { t } }")
    with pytest.raises(Exception, match="9999 generated tokens"):
        limits.check_budget(fields, {"q": {"maxTokens": "9999"}})
    limits.check_budget(budget_fields('{ generate(model: "m", prompt: "p") { t } }'), {})


def test_a_deep_query_is_refused(node: NodeProcess) -> None:
    deep = "{ blocks " * (limits.MAX_DEPTH + 1) + "{ name }" + " }" * (limits.MAX_DEPTH + 1)
    response = post(node, json.dumps({"query": deep}))
    errors = response.json()["errors"]
    assert any(
        e["extensions"]["code"] == "LimitExceeded" and "depth" in e["message"] for e in errors
    ), errors
    nested = "{ a " * 100_000 + "}" * 100_000
    error = the_error(post(node, json.dumps({"query": nested})))
    assert error["extensions"]["code"] == "LimitExceeded"
    long = "{ " + "models { name } " * 1000 + "}"
    error = the_error(post(node, json.dumps({"query": long})))
    assert error["extensions"]["code"] == "LimitExceeded"
    assert f"{limits.MAX_TOKENS} tokens" in error["message"]


def test_many_aliases_are_refused(node: NodeProcess) -> None:
    fields = " ".join(f"m{i}: models {{ name }}" for i in range(limits.MAX_ALIASES + 1))
    error = the_error(post(node, json.dumps({"query": "{ " + fields + " }"})))
    assert error["extensions"]["code"] == "LimitExceeded"


def test_the_chain_level_graphql_has_the_same_limits(node: NodeProcess) -> None:
    fields = " ".join(f"c{i}: chains {{ name }}" for i in range(limits.MAX_ALIASES + 1))
    response = httpx.post(
        node.base_url + "/", content=json.dumps({"query": "{ " + fields + " }"}), headers=JSON
    )
    error = the_error(response)
    assert error["extensions"]["code"] == "LimitExceeded"


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        (b"\xff\xfe not utf-8", "UsageError", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "UsageError", "nested too deeply"),
        (b'{"query": 5}', "UsageError", '"query" string'),
        (b'{"query": "{ models { name } }", "operationName": 5}', "UsageError", '"operationName"'),
        (b'{"query": "{ models { name } }", "variables": "x"}', "UsageError", '"variables"'),
        (b'{"query": "{ model(name: \\"\\ud800\\") { name } }"}', "InvalidText",
         "query is not valid Unicode"),
        (b'{"query": "query($n: String!) { model(name: $n) { name } }", '
         b'"variables": {"n": "\\udfff"}}', "InvalidText", "variables.n is not valid Unicode"),
        (b"", "UsageError", "not valid JSON"),
    ],
)  # fmt: skip
def test_malformed_bodies_are_400_with_a_typed_error(
    node: NodeProcess, body: bytes, code: str, fragment: str
) -> None:
    error = the_error(post(node, body), 400)
    assert error["extensions"]["code"] == code
    assert fragment in error["message"]


def test_deeply_nested_variables_are_400(node: NodeProcess) -> None:
    body = '{"query": "{ models { name } }", "variables": {"x": ' + "[" * 5000 + "]" * 5000 + "}}"
    response = post(node, body)
    assert response.status_code in (200, 400)
    assert "InternalError" not in response.text


@pytest.mark.parametrize(
    "variables",
    [{"n": 5}, {"n": None}, {"n": ["a"]}, {"n": {"a": 1}}, {"n": 1e308}, {"n": "x" * 10_000}],
)
def test_wrong_variable_types_are_typed_errors(node: NodeProcess, variables: dict) -> None:
    body = {"query": "query($n: String!) { model(name: $n) { name } }", "variables": variables}
    response = post(node, json.dumps(body))
    assert response.status_code in (200, 400)
    for error in response.json()["errors"]:
        assert error["extensions"]["code"] not in ("InternalError", None)


def test_a_syntax_error_is_typed(node: NodeProcess) -> None:
    error = the_error(post(node, json.dumps({"query": "{ models { "})))
    assert error["extensions"]["code"] == "InvalidQuery"


def test_the_full_introspection_query_is_within_the_limits(node: NodeProcess) -> None:
    from graphql import get_introspection_query

    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    body = post(node, json.dumps({"query": query})).json()
    assert "errors" not in body and body["data"]["__schema"]["queryType"]["name"] == "Query"


def test_a_subscription_over_the_token_budget_is_refused(node: NodeProcess) -> None:
    from serve_helpers import subscribe

    tokens = limits.MAX_GENERATED_TOKENS + 1
    messages = subscribe(
        node,
        f'subscription {{ generate(model: "m", prompt: "p", maxTokens: {tokens}) '
        "{ __typename } }",
    )
    first = messages[0]
    errors = first["payload"] if first["type"] == "error" else first["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "LimitExceeded", messages
    assert messages[-1]["type"] in ("complete", "error")
