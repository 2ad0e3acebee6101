"""Every example in a docstring or a doc runs as written.

- Docstrings: every ``::`` literal block of the package's modules that parses as Python is an
  example (layouts and encodings do not parse). Each runs with the few names its prose leaves
  to the reader (``tmp_path``, a ``server``, ...) supplied by :data:`CONTEXTS`; a new example
  without a context fails here until it gets one. The pytest plugin's example runs under pytest.
- README: the five-minute tour runs in a shell, from the repository root as its relative paths
  expect; only its network directory and HTTP port are replaced (by a temporary directory and
  a free port), and ``serve``, which runs until stopped, is left out (``--help`` examples run it).
  The "Use it from Python" section runs as a script.

``--help`` examples are run by ``tests/test_cli_help_examples.py``.
"""

from __future__ import annotations

import ast
import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import GOLDEN, STORIES_DIR

from edgechain.testing.weight_server import WeightServer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PACKAGE_DIRS = ("edgechain", "chain", "contract", "service")


def docstring_examples() -> Iterator[tuple[str, str]]:
    """(``module path:line``, code) for every literal block in a module docstring or a
    function's or class's docstring that parses as Python."""
    for folder in PACKAGE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(
                    node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
                ):
                    continue
                doc = ast.get_docstring(node, clean=False)
                for code in literal_blocks(doc or ""):
                    try:
                        ast.parse(code)
                    except SyntaxError:
                        continue  # a layout or an encoding, not code
                    yield f"{path.relative_to(ROOT)}", code


def literal_blocks(doc: str) -> Iterator[str]:
    """The indented blocks that follow a line ending in ``::``."""
    lines = textwrap.dedent(doc).splitlines()
    for index, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        block: list[str] = []
        for item in lines[index + 1 :]:
            if item.strip() and not item.startswith((" ", "\t")):
                break
            block.append(item)
        code = textwrap.dedent("\n".join(block)).strip("\n")
        if code:
            yield code


def _client_context(tmp_path: Path) -> Iterator[dict[str, Any]]:
    from edgechain import Client, GenerateQuery

    yield {"Client": Client, "GenerateQuery": GenerateQuery, "WeightServer": WeightServer,
           "Path": Path, "tmp_path": tmp_path, "print": lambda *a, **k: None}  # fmt: skip


def _network_context(tmp_path: Path) -> Iterator[dict[str, Any]]:
    from edgechain.applications import register_applications
    from edgechain.chain import Network
    from edgechain.contract.operations import FileRef, RegisterModel

    yield {"Network": Network, "FileRef": FileRef, "RegisterModel": RegisterModel,
           "register_applications": register_applications, "tmp_path": tmp_path}  # fmt: skip


def _fetch_context(tmp_path: Path) -> Iterator[dict[str, Any]]:
    import blake3

    from edgechain.service.fetch import Fetcher, FetchPolicy

    weights = STORIES_DIR / "stories260K.bin"
    with WeightServer(STORIES_DIR) as server:
        yield {"Fetcher": Fetcher, "FetchPolicy": FetchPolicy,
               "urls": [server.url("missing.bin"), server.url("stories260K.bin")],
               "digest": blake3.blake3(weights.read_bytes()).hexdigest(),
               "size": weights.stat().st_size}  # fmt: skip


def _weight_server_context(tmp_path: Path) -> Iterator[dict[str, Any]]:
    import httpx

    from edgechain.testing.weight_server import Fault

    yield {"WeightServer": WeightServer, "Fault": Fault, "httpx": httpx, "Path": Path}


def _no_context(tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield {}


#: Per module: the names its example leaves to the reader. The plugin's runs under pytest.
CONTEXTS: dict[str, Callable[[Path], Iterator[dict[str, Any]]] | None] = {
    "edgechain/__init__.py": _no_context,
    "edgechain/client.py": _client_context,
    "chain/network.py": _network_context,
    "service/fetch.py": _fetch_context,
    "edgechain/testing/weight_server.py": _weight_server_context,
    "edgechain/testing/pytest_plugin.py": None,
}

EXAMPLES = list(docstring_examples())


def test_every_docstring_example_has_a_context() -> None:
    found = {where for where, _ in EXAMPLES}
    assert found == set(CONTEXTS), (
        "a docstring example without a context in CONTEXTS, or a context without an example"
    )


@pytest.mark.parametrize(("where", "code"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_docstring_example_runs(
    where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Relative paths in examples are written from the repository root ("../shared/...").
    monkeypatch.chdir(ROOT)
    context = CONTEXTS[where]
    if context is None:  # the pytest plugin's: a test file of its own, run by pytest
        test_file = tmp_path / "test_plugin_example.py"
        test_file.write_text(code + "\n", encoding="utf-8")
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
            capture_output=True, text=True, cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.search(r"\b1 passed\b", result.stdout), result.stdout
        return
    for namespace in context(tmp_path):
        exec(compile(code, where, "exec"), {"__name__": "example", **namespace})  # noqa: S102


# --- the README ----------------------------------------------------------------------------


def readme_section(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    end = text.find("\n#", start)
    return text[start:] if end < 0 else text[start:end]


def indented_block(section: str) -> str:
    """The first block of lines indented by four spaces (a Markdown code block)."""
    lines, block = section.splitlines(), []
    for line in lines:
        if line.startswith("    ") or (block and not line.strip()):
            block.append(line[4:])
        elif block:
            break
    return "\n".join(block).strip("\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    tour = indented_block(readme_section("## A five-minute tour"))
    assert "chain verify --expect-head" in tour and "--bind 127.0.0.1" in tour
    port = str(free_port())
    script = []
    tour = tour.replace("/tmp/edge", str(tmp_path / "edge")).replace("8000", port)
    for line in tour.splitlines():
        if line.startswith("edgechain serve"):
            continue
        script.append(line)
        if line.startswith("python -m http.server"):
            # A user types the next command after the server is up; the script waits for it.
            script.append(
                f"until python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", "
                f"{port}), 1)' 2>/dev/null; do :; done"
            )
    body = "\n".join(script)
    result = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n{body}"],
        capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # What the tour promises: the publish checked its URLs, generation ran, the recorded head
    # verified.
    assert f"checked      http://127.0.0.1:{port}/stories260K.bin" in result.stdout
    assert GOLDEN.read_text(encoding="utf-8")[:100] in result.stdout  # generate -t 0 -n 100
    assert re.search(r"^ok: the chain still holds the head \d+:[0-9a-f]{8}", result.stdout, re.M)


def test_the_readme_python_section_runs_as_written() -> None:
    section = readme_section("## Use it from Python")
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the section has a ```python block"
    result = subprocess.run(
        [sys.executable, "-c", match.group(1)],
        capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # It streamed the tokens, then printed the whole story (prompt + text) on the last line:
    # run.c's greedy text.
    *streamed, story = result.stdout.splitlines()
    assert story.startswith("Once upon a time, there was") and len(story) > 60
    assert GOLDEN.read_text(encoding="utf-8").startswith(story)
    assert story.removeprefix("Once upon a time") in "\n".join(streamed)
