"""``edgechain app new NAME``: a project to start from, as ``linera project new`` writes one.

The project is a package: ``NAME/__init__.py`` (the ABI), ``state.py``, ``contract.py``,
``service.py`` and ``tests/test_NAME.py`` (a test that passes, with the pytest plugin).
"""

from __future__ import annotations

import keyword
from importlib.resources import files
from pathlib import Path

from edgechain.errors import InputError, InvalidParameter

__all__ = ["new_project"]

_FILES = {
    "__init__.py": "__init__.py.tmpl",
    "state.py": "state.py.tmpl",
    "contract.py": "contract.py.tmpl",
    "service.py": "service.py.tmpl",
}


def new_project(name: str, parent: str | Path = ".") -> Path:
    """Write the project ``name`` under ``parent``; its package directory. Nothing is
    overwritten: an existing directory is refused."""
    if not name.isidentifier() or keyword.iskeyword(name) or not name.islower():
        raise InvalidParameter(
            f"project name {name!r}: a lowercase Python identifier, e.g. counter"
        )
    root = Path(parent) / name
    if root.exists():
        raise InputError(f"{root} already exists: choose another name or directory")
    templates = files("edgechain.sdk") / "template"
    title = "".join(part.capitalize() for part in name.split("_"))

    def render(template: str) -> str:
        return (templates / template).read_text(encoding="utf-8").format(name=name, Name=title)

    (root / "tests").mkdir(parents=True)
    for target, template in _FILES.items():
        (root / target).write_text(render(template), encoding="utf-8")
    (root / "tests" / f"test_{name}.py").write_text(render("test.py.tmpl"), encoding="utf-8")
    return root
