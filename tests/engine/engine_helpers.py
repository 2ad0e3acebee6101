"""Helpers for the engine and CLI tests (imported by the tests and conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from network_cli_helpers import run_edgechain

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: bytes
    stderr: str


def run_cli(*args: str | Path, timeout: float = 300, stdin: bytes = b"") -> CliResult:
    """Run ``python -m edgechain.cli ARGS`` in a subprocess (``stdin`` is all it reads)."""
    proc = run_edgechain(args, stdin=stdin, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def assert_clean_error(result: CliResult, exit_code: int, *fragments: str) -> None:
    """A user error: the given exit code, one ``error: ...`` line on stderr, no traceback."""
    assert result.returncode == exit_code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment.lower() in error_lines[0].lower(), (fragment, error_lines[0])
