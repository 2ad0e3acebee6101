"""Running the ``edgechain`` CLI as a subprocess, and networks to run it against."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgechain.client import Client
from edgechain.testing.models import ModelFiles

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def assert_user_error(self, code: int, *fragments: str) -> None:
        """Exit ``code``, one ``error: ...`` line on stderr naming ``fragments``, no traceback."""
        assert self.code == code, f"exit {self.code}, wanted {code}; stderr: {self.err}"
        lines = self.err.strip().splitlines()
        assert lines and lines[-1].startswith("error: "), self.err
        assert "Traceback" not in self.err, self.err
        for fragment in fragments:
            assert fragment in lines[-1], f"{fragment!r} not in {lines[-1]!r}"


def run_edgechain(
    args: tuple[str | os.PathLike[str], ...],
    *,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    text: bool = False,
    timeout: float = 120,
) -> subprocess.CompletedProcess[Any]:
    """``python -m edgechain.cli ARGS`` from the checkout with ``env`` added and no network
    default ($EDGECHAIN_DIR unset); ``stdin`` is all it reads (None: this process's stdin);
    its output as bytes, or as text when ``text``."""
    environment = {k: v for k, v in os.environ.items() if k != "EDGECHAIN_DIR"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "edgechain.cli", *map(str, args)],
        capture_output=True,
        text=text,
        env=environment,
        cwd=REPO_ROOT,
        timeout=timeout,
        input=stdin,
    )


def edgechain(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> Result:
    """``python -m edgechain.cli ARGS`` (see run_edgechain), its output as text."""
    done = run_edgechain(args, env=env, text=True)
    return Result(done.returncode, done.stdout, done.stderr)


def make_network(path: Path, validators: int = 4, faulty: str | None = None) -> Path:
    """A network in ``path`` (created in-process: the `net up` tests cover the command)."""
    Client.up(path, validators=validators, faulty=faulty).close()
    return path


def serve_copies(files: ModelFiles, served_dir: Path) -> None:
    """Put the model files where the weight server fixture serves them."""
    (served_dir / "stories260K.bin").write_bytes(files.weights.read_bytes())
    (served_dir / "tok512.bin").write_bytes(files.tokenizer.read_bytes())
