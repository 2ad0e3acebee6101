"""The layer rule (ARCHITECTURE.md, "Layers"): chain/ names nothing above it, the SDK
(edgechain/sdk/) names only the chain, contract/ names no service, and service/ names no client,
applications wiring, CLI, node, benchmark or test code; the built-in applications name nothing of
the chain but the SDK. "Names" is an import anywhere in a module (also under TYPE_CHECKING or
in a function) or a string holding a module's dotted name
(``importlib.import_module("edgechain.contract...")``, a docstring cross-reference)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: folder -> (its package, the top-level edgechain modules it may name besides its own).
#: The modules below every layer, which any layer may name (and which name no other).
SHARED = {"chat_message", "errors", "files", "processes"}
LAYERS = {
    "chain": ("edgechain.chain", {"chain"} | SHARED),
    "edgechain/sdk": ("edgechain.sdk", {"chain", "sdk"} | SHARED),
    "contract": ("edgechain.contract", {"chain", "sdk", "contract"} | SHARED),
    "service": ("edgechain.service", {"chain", "sdk", "contract", "service"} | SHARED),
}

#: The built-in applications (issue 21): SDK applications like a user's, so besides the SDK and
#: the shared modules they name only the contract layer's data (operations, the generation
#: request, a certified model), never the chain layer or another application's internals.
BUILT_IN_APPLICATIONS = ("contract/registry.py", "contract/story_book.py")
BUILT_INS_MAY_NAME = {
    "edgechain.sdk",
    "edgechain.errors",
    "edgechain.contract.operations",
    "edgechain.contract.generation_request",
    "edgechain.contract.certified_model",
}

_DOTTED = re.compile(r"\bedgechain\.([A-Za-z_][A-Za-z0-9_]*)")
_FULL_DOTTED = re.compile(r"\bedgechain(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def _module_name(package: str, folder: Path, path: Path) -> str:
    parts = list(path.relative_to(folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The absolute module names an import statement reaches."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    # ``from edgechain import errors`` reaches edgechain.errors.
    return [f"{target}.{alias.name}" for alias in node.names] if target == "edgechain" else [target]


def _top(name: str) -> str:
    """The top-level edgechain module of ``name`` ("" for the package root itself)."""
    return (name.split(".") + [""])[1]


def named(source: str, module: str, is_package: bool = False) -> list[tuple[int, str, str]]:
    """(line, "imports" or "names", module) for each edgechain module ``source`` names."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for name in _imported(node, module, is_package):
                if name == "edgechain" or name.startswith("edgechain."):
                    found.append((node.lineno, "imports", name))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            for match in _DOTTED.finditer(node.value):
                found.append((node.lineno, "names", match.group(0)))
    return found


def violations(source: str, module: str, allowed: set[str], is_package: bool = False) -> list[str]:
    """Each place ``source`` (module ``module``) names an edgechain module outside ``allowed``."""
    return [
        f"line {line}: {how} {name}"
        for line, how, name in named(source, module, is_package)
        if _top(name) not in allowed
    ]


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_a_layer_names_nothing_above_it(folder: str) -> None:
    package, allowed = LAYERS[folder]
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    problems = []
    for path in files:
        module = _module_name(package, ROOT / folder, path)
        source = path.read_text(encoding="utf-8")
        for problem in violations(source, module, allowed, path.name == "__init__.py"):
            problems.append(f"{path.relative_to(ROOT)} {problem}")
    assert problems == []


@pytest.mark.parametrize("path", BUILT_IN_APPLICATIONS)
def test_the_built_in_applications_name_only_the_sdk_and_contract_data(path: str) -> None:
    source = (ROOT / path).read_text(encoding="utf-8")
    module = _module_name("edgechain.contract", ROOT / "contract", ROOT / path)
    assert "edgechain.sdk" in {name for _, _, name in named(source, module)}  # written with it
    assert outside_the_built_ins_rule(source, module) == []


def outside_the_built_ins_rule(source: str, module: str) -> list[str]:
    """The modules ``source`` names that a built-in application may not."""
    return sorted(
        name
        for _, _, name in named(source, module)
        if not any(name == ok or name.startswith(ok + ".") for ok in BUILT_INS_MAY_NAME)
    )


def test_the_built_in_check_catches_the_chain_and_other_contract_modules() -> None:
    source = (
        "from edgechain.chain.application import ContractState\n"
        "from edgechain.sdk import Abi\n"
        "from . import story_book\n"
        '"""uses edgechain.chain.encoding"""\n'
    )
    assert outside_the_built_ins_rule(source, "edgechain.contract.registry") == [
        "edgechain.chain",  # the docstring (strings are read to their top-level module)
        "edgechain.chain.application",
        "edgechain.contract",  # from . import story_book
    ]


def test_the_check_finds_each_kind_of_upward_edge() -> None:
    source = '''
"""See :class:`~edgechain.client.Client`."""
import importlib
from typing import TYPE_CHECKING
from edgechain.chain.block import Block
from edgechain import errors, client
from .. import contract
if TYPE_CHECKING:
    from edgechain.node.app import App

def kind():
    from edgechain.service.runtime import ModelService
    return importlib.import_module("edgechain.contract.registry")
'''
    found = violations(source, "edgechain.chain.application", {"chain", "errors"})
    assert sorted(f.split(": ", 1)[1] for f in found) == [
        "imports edgechain.client",  # from edgechain import errors, client: only client
        "imports edgechain.contract",  # the relative import
        "imports edgechain.node.app",  # under TYPE_CHECKING
        "imports edgechain.service.runtime",  # inside a function
        "names edgechain.client",  # the docstring
        "names edgechain.contract",  # importlib's argument
    ]


def test_only_the_bench_command_names_the_benchmarks() -> None:
    problems = []
    for path in sorted((ROOT / "edgechain").rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[1] == "bench" or relative == Path("edgechain/cli/bench.py"):
            continue
        module = _module_name("edgechain", ROOT / "edgechain", path)
        for line, how, name in named(path.read_text(encoding="utf-8"), module):
            if _top(name) == "bench":
                problems.append(f"{relative} line {line}: {how} {name}")
    assert problems == []


def test_the_engine_is_a_leaf() -> None:
    """service/engine/ names only itself and the shared modules: not the rest of service/,
    nor contract/ or chain/ (its callers hand it bytes, paths and parameters)."""
    folder = ROOT / "service" / "engine"
    problems = []
    for path in sorted(folder.rglob("*.py")):
        module = _module_name("edgechain.service.engine", folder, path)
        source = path.read_text(encoding="utf-8")
        found = [
            (line, how, name)
            for line, how, name in named(source, module, path.name == "__init__.py")
            if how == "imports"
        ]
        for node in ast.walk(ast.parse(source)):  # dotted names in strings, in full
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [(node.lineno, "names", m) for m in _FULL_DOTTED.findall(node.value)]
        for line, how, name in found:
            inside = name == "edgechain.service.engine" or name.startswith(
                "edgechain.service.engine."
            )
            if not inside and _top(name) not in SHARED:
                problems.append(f"{path.relative_to(ROOT)} line {line}: {how} {name}")
    assert problems == []


@pytest.mark.parametrize("shared", sorted(SHARED))
def test_the_shared_modules_import_no_other_edgechain_module(shared: str) -> None:
    path = ROOT / "edgechain" / f"{shared}.py"
    found = named(path.read_text(encoding="utf-8"), f"edgechain.{shared}")
    # The error hierarchy is all a shared module may import (files.py raises errors).
    imported = [n for _, how, n in found if how == "imports"]
    assert [n for n in imported if _top(n) not in (shared, "errors")] == []
