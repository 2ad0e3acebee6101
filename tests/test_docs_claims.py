"""What the docs claim about the JSON the project writes is what it writes (issue 26, item 7)."""

from __future__ import annotations

import re
from pathlib import Path

from edgechain.contract import FileRef
from edgechain.service import receipt

ROOT = Path(__file__).resolve().parents[1]


def _documented_receipt_fields() -> list[str]:
    """The field names of docs/receipts.md's table of the receipt body."""
    text = (ROOT / "docs" / "receipts.md").read_text()
    table = text.split("| field | meaning |", 1)[1].split("\n\n", 1)[0]
    fields = []
    for line in table.splitlines()[2:]:
        first_cell = line.split("|")[1]
        fields += re.findall(r"`([a-z_.]+)`", first_cell)
    return fields


def _in_schema(path: str) -> bool:
    node: object = receipt._SCHEMA
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_every_receipt_field_the_docs_list_is_one_receipt_verify_accepts() -> None:
    fields = _documented_receipt_fields()
    assert "seed.value" in fields and "output.token_ids" in fields  # the table was found
    assert [f for f in fields if not _in_schema(f)] == []


def test_the_readme_says_sizes_are_numbers_in_json_and_sse() -> None:
    assert isinstance(FileRef("ab" * 32, 5, ("http://h/x",)).to_json()["size"], int)
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "sizes are `U64` decimal strings in GraphQL and plain JSON numbers" in readme
    assert "(seeds, sizes: GraphQL's `U64`, the SSE `done` record" not in readme
