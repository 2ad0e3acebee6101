"""What a contract may not do, checked before a module is published and again when it loads.

Validators each execute every block and certify it only when a quorum computes the same state:
a contract that reads a clock, draws random numbers or does I/O makes honest validators disagree,
and its block is not certified. The import check below catches the usual ways in before anything
is published; it is a lint, not a sandbox (Python cannot be sandboxed in-process), and the
validators' agreement catches the rest (docs/sdk.md).
"""

from __future__ import annotations

import ast

from edgechain.errors import InputError

__all__ = ["FORBIDDEN_IN_CONTRACTS", "check_sources"]

#: Modules whose use makes execution nondeterministic or reaches outside the chain.
FORBIDDEN_IN_CONTRACTS = frozenset(
    {
        "asyncio", "ctypes", "datetime", "http", "httpx", "importlib", "io", "multiprocessing",
        "os", "pathlib", "random", "requests", "secrets", "shutil", "socket", "subprocess",
        "sys", "tempfile", "threading", "time", "urllib", "uuid",
    }
)  # fmt: skip
#: The files of a module that contract code may import (the service's may do I/O through its
#: runtime only, but may import what it likes).
_SERVICE_FILES = ("service.py",)


def check_sources(sources: dict[str, bytes]) -> None:
    """Refuse a module whose files are not UTF-8 Python, or whose non-service files import a
    forbidden module (InputError naming the file and line)."""
    for path, data in sorted(sources.items()):
        try:
            text = data.decode("utf-8")
            tree = ast.parse(text, filename=path)
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text") from None
        except SyntaxError as exc:
            raise InputError(f"{path}:{exc.lineno}: {exc.msg}") from None
        if path.rsplit("/", 1)[-1] in _SERVICE_FILES:
            continue
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_IN_CONTRACTS:
                    raise InputError(
                        f"{path}:{node.lineno}: imports {name}, which a contract may not use "
                        "(clocks, randomness and I/O make validators disagree; docs/sdk.md)"
                    )
