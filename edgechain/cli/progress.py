"""A one-line progress bar on stderr (bytes, rate, time left), drawn only when stderr is a
terminal: hashing a file, downloading one to publish it, a model's first download."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

_WIDTH = 24
_MIB = 1 << 20
#: Redraws at most this often (seconds); the last piece of a file is always drawn.
_REDRAW_S = 0.1


class ProgressBar:
    """Call as ``bar(label, done_bytes, total_bytes)`` (total None when unknown);
    :meth:`close` ends the line. Thread-safe (a download reports from its own thread).

    Silent when ``stream`` is not a tty, so scripts and tests that capture stderr see only the
    result, never carriage-return noise.
    """

    def __init__(self, stream: TextIO | None = None, *, force: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or self.stream.isatty()
        self._label: str | None = None
        self._started = 0.0
        self._drawn_at = 0.0
        self._lock = threading.Lock()

    def __call__(self, label: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        with self._lock:
            now = time.monotonic()
            if label != self._label:
                if self._label is not None:
                    self.stream.write("\n")
                self._label, self._started, self._drawn_at = label, now, 0.0
            finished = total is not None and done >= total
            if not finished and now - self._drawn_at < _REDRAW_S:
                return
            self._drawn_at = now
            self.stream.write("\r" + render(label, done, total, now - self._started))
            self.stream.flush()

    def close(self) -> None:
        """End the bar's line (if one was drawn)."""
        with self._lock:
            if self.enabled and self._label is not None:
                self.stream.write("\n")
                self.stream.flush()
            self._label = None


def render(label: str, done: int, total: int | None, elapsed: float) -> str:
    """One line: ``label [#####.....] 42% 1.2/3.0 MiB 5.1 MiB/s 0:01 left``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    speed = f"{rate / _MIB:6.1f} MiB/s"
    if total is None or total <= 0:
        return f"{label:<20} {done / _MIB:8.1f} MiB {speed}"
    fraction = min(done / total, 1.0)
    filled = int(fraction * _WIDTH)
    bar = "#" * filled + "." * (_WIDTH - filled)
    left = (total - done) / rate if rate > 0 else None
    eta = "--:--" if left is None else _clock(left)
    return (
        f"{label:<20} [{bar}] {fraction:4.0%} {done / _MIB:7.1f}/{total / _MIB:.1f} MiB "
        f"{speed} {eta} left"
    )


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
