"""A benchmark's rows: one per case, a failing case shown as its row, not raised; rates
rounded alike."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["per_second", "row_or_error"]

Row = dict[str, object]


def row_or_error(keys: Row, measure: Callable[[], Row]) -> Row:
    """``measure()``'s row, or the case's ``keys`` with an ``error`` entry when it fails: a
    table of engines and shapes goes on past one that cannot run, and says why."""
    try:
        return measure()
    except Exception as err:  # noqa: BLE001 - shown in the row, the others go on
        return {**keys, "error": str(err)}


def per_second(count: float, seconds: float) -> float:
    """A row's rate: ``count`` (tokens) per second, to a tenth."""
    return round(count / seconds, 1)
