"""What the benchmarks' command lines share: comma-separated lists, results as text or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any, Protocol


class BenchmarkResult(Protocol):
    def to_json(self) -> Any: ...

    def format(self) -> str: ...


def comma_separated(text: str) -> list[str]:
    """The non-empty items of a comma-separated list, stripped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def comma_separated_ints(text: str) -> list[int]:
    """An argparse ``type``: a comma-separated list of integers (a usage error otherwise)."""
    try:
        return [int(part) for part in comma_separated(text)]
    except ValueError:
        message = f"not a comma-separated list of integers: {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def print_result(result: BenchmarkResult, as_json: bool) -> None:
    """The result as indented JSON (``--json``), else as its text table."""
    print(json.dumps(result.to_json(), indent=2) if as_json else result.format())
