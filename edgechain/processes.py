"""Whether the process that left a temporary file behind still runs (the network's and the
cache's temporaries are named with their writer's pid, so a killed writer's can be removed).

Shared by every layer, like ``edgechain.errors``: it names no other edgechain module."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists (another user's counts; pid 0 never does)."""
    if pid == 0:
        return False  # os.kill(0, ...) signals our own process group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
