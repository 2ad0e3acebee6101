"""A one-line progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
from typing import TextIO

_WIDTH = 30


class ProgressBar:
    """Call as ``bar(label, done_bytes, total_bytes)``; :meth:`close` ends the line.

    Silent when ``stream`` is not a tty, so scripts and tests that capture stderr see only the
    result, never carriage-return noise.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self._label: str | None = None

    def __call__(self, label: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._label is not None and label != self._label:
            self.stream.write("\n")
        self._label = label
        fraction = done / total if total > 0 else 1.0
        filled = int(fraction * _WIDTH)
        bar = "#" * filled + "." * (_WIDTH - filled)
        self.stream.write(
            f"\rhashing {label:<10} [{bar}] {fraction:4.0%} {done / (1 << 20):8.1f} MiB"
        )
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line (if one was drawn)."""
        if self.enabled and self._label is not None:
            self.stream.write("\n")
            self.stream.flush()
        self._label = None
