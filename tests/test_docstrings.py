"""Every public name has a docstring, and the API reference (docs/reference/) renders it.

The reference site is built from docstrings by mkdocstrings, so a public name without a
docstring is a hole in the documentation. "Public" means: each name in the ``__all__`` of
the modules in ``PUBLIC_MODULES``; for an exported class, its public methods and
properties (its metaclass's too, for ``DBOS.workflow_id`` and friends); for an exported
dataclass or ``TypedDict``, each field, documented by a string right after it (the
attribute docstrings mkdocstrings shows).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any, is_typeddict

import pytest

#: The modules whose ``__all__`` users import from: the one list of the public surface.
PUBLIC_MODULES = [
    "dbos_async",
    "dbos_async.errors",
    "dbos_async.client",
    "dbos_async.asgi",
    "dbos_async.testing",
    "dbos_async.encryption",
    "dbos_async.dashboard",
]

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference"


def _module(name: str) -> ModuleType:
    module = importlib.import_module(name)
    assert isinstance(getattr(module, "__all__", None), list), f"{name} has no __all__ list"
    return module


def _has_doc(obj: object) -> bool:
    return bool((getattr(obj, "__doc__", None) or "").strip())


def _own_classes(cls: type) -> list[type]:
    """The classes of ``cls``'s MRO (and of its metaclass's) defined in this package."""
    classes = [c for c in cls.__mro__ if c.__module__.startswith("dbos_async")]
    meta = type(cls)
    classes += [c for c in meta.__mro__ if c.__module__.startswith("dbos_async")]
    return classes


def _members_without_doc(qualname: str, cls: type) -> list[str]:
    missing: list[str] = []
    seen: set[str] = set()
    for klass in _own_classes(cls):
        for attr, value in vars(klass).items():
            if attr.startswith("_") or attr in seen:
                continue
            seen.add(attr)
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if (callable(value) or isinstance(value, property)) and not _has_doc(value):
                missing.append(f"{qualname}.{attr}")
    return missing


def _fields_without_doc(qualname: str, cls: type) -> list[str]:
    """Fields of a dataclass or TypedDict not followed by a docstring in the source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef)).body
    missing: list[str] = []
    for node, following in zip(body, [*body[1:], None], strict=True):
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        name = node.target.id
        if name.startswith("_"):
            continue
        documented = (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
            and following.value.value.strip()
        )
        if not documented:
            missing.append(f"{qualname}.{name}")
    return missing


def _undocumented(module_name: str) -> list[str]:
    module = _module(module_name)
    missing = [] if _has_doc(module) else [module_name]
    for name in module.__all__:
        obj: Any = getattr(module, name)
        qualname = f"{module_name}.{name}"
        if not _has_doc(obj) or (inspect.isclass(obj) and obj.__doc__ is type.__doc__):
            missing.append(qualname)
        if inspect.isclass(obj):
            missing += _members_without_doc(qualname, obj)
            if dataclasses.is_dataclass(obj) or is_typeddict(obj):
                missing += _fields_without_doc(qualname, obj)
    return missing


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_docstrings__every_public_name_has_one(module_name: str) -> None:
    missing = _undocumented(module_name)
    assert not missing, "public names without a docstring: " + ", ".join(missing)


def test_docstrings__the_checker_finds_a_missing_one() -> None:
    """The checks above can fail: an undocumented method, field or class is reported."""

    @dataclasses.dataclass
    class Sample:
        """Documented."""

        documented: int
        """A documented field."""
        bare: int

        def method(self) -> None:
            pass

    assert _fields_without_doc("Sample", Sample) == ["Sample.bare"]
    Sample.__module__ = "dbos_async.sample"
    assert _members_without_doc("Sample", Sample) == ["Sample.method"]


def test_docstrings__reference_renders_every_public_name() -> None:
    """Each public name has a ``::: module.name`` block in docs/reference/ (under any
    public module that exports it), or its whole module is rendered there."""
    blocks = set()
    for page in REFERENCE.glob("*.md"):
        # A block is its ``::: path`` line and the indented options under it; one with
        # ``members: false`` renders only the object's own docstring.
        for path, options in re.findall(
            r"^::: ([\w.]+)[ \t]*\n((?:[ \t]+.*\n)*)", page.read_text(), flags=re.MULTILINE
        ):
            blocks.add(path if "members: false" not in options else f"{path} (members: false)")
    exporters: dict[str, set[str]] = {}
    for module_name in PUBLIC_MODULES:
        for name in _module(module_name).__all__:
            exporters.setdefault(name, set()).add(module_name)
    missing = []
    for name, modules in sorted(exporters.items()):
        covered = any(f"{m}.{name}" in blocks for m in modules)
        whole = any(m in blocks and m != "dbos_async" for m in modules)
        if not covered and not whole:
            missing.append(name)
    assert not missing, "public names missing from docs/reference/: " + ", ".join(missing)
