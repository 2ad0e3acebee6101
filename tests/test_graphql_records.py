"""The node's GraphQL types re-state the records field by field (node/schema.py): this fails
when one side gains, loses or renames a field the other does not."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap

from edgechain.contract.registry import CertifiedModel
from edgechain.node import schema
from edgechain.service.records import GenerationRecord, Timings


def _graphql_fields(kind: type) -> list[str]:
    return [f.python_name for f in kind.__strawberry_definition__.fields]  # type: ignore[attr-defined]


def _json_keys(method: object) -> list[str]:
    """The keys of the dict literal ``method`` returns."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(method)))  # type: ignore[arg-type]
    returned = [n.value for n in ast.walk(tree) if isinstance(n, ast.Return)]
    [literal] = [r for r in returned if isinstance(r, ast.Dict)]
    return [k.value for k in literal.keys if isinstance(k, ast.Constant)]


def test_timings_are_the_records_timings() -> None:
    assert _graphql_fields(schema.Timings) == [f.name for f in dataclasses.fields(Timings)]


def test_a_generation_result_is_the_record_and_its_receipt() -> None:
    record = [f.name for f in dataclasses.fields(GenerationRecord) if f.name != "token_ids"]
    assert sorted(_graphql_fields(schema.GenerationResult)) == sorted([*record, "receipt"])
    assert sorted(_json_keys(GenerationRecord.to_dict)) == sorted(record)


def test_a_model_is_the_certified_models_json() -> None:
    # The documented renames (CertifiedModel.to_json): GraphQL says height and retired.
    renamed = {"certificate_height": "height", "status": "retired"}
    json_keys = [renamed.get(k, k) for k in _json_keys(CertifiedModel.to_json)]
    assert sorted(_graphql_fields(schema.Model)) == sorted(json_keys)
