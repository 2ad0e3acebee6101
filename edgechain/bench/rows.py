"""A benchmark's rows: one per case, a failing case shown as its row, not raised."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["row_or_error"]

Row = dict[str, object]


def row_or_error(keys: Row, measure: Callable[[], Row]) -> Row:
    """``measure()``'s row, or the case's ``keys`` with an ``error`` entry when it fails: a
    table of engines and shapes goes on past one that cannot run, and says why."""
    try:
        return measure()
    except Exception as err:  # noqa: BLE001 - shown in the row, the others go on
        return {**keys, "error": str(err)}
