"""The package's import graph: no circles, and every arrow points down.

Every ``import`` in ``dbos_async/`` counts, including those under ``if TYPE_CHECKING:``
and inside functions: a deferred import hides a circle from the interpreter, not from a
reader. The layers (``docs/architecture.md``) are checked as rules on that graph: the
storage layer never imports the engine, only backend modules import a database driver,
and the engine reaches storage only through the ``dbos_async.sysdb`` package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "dbos_async"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
DRIVERS = {"asyncpg", "aiosqlite", "sqlite3"}
#: Optional libraries that wrap a driver, and the one module each may be imported by
#: (the ``sqlalchemy`` extra: ``DBOS.sql_session``'s sessions on a transaction's own
#: connection; imported lazily, so the package works without it).
WRAPPERS = {
    "sqlalchemy": f"{PACKAGE}.sysdb._sqlalchemy",
    "greenlet": f"{PACKAGE}.sysdb._sqlalchemy",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute name a ``from ... import`` reads from."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> Iterator[str]:
    """Every module ``module`` imports (package modules by name, others by top name)."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            for alias in node.names:
                # ``from . import x`` imports the submodule x when there is one.
                submodule = f"{source}.{alias.name}"
                yield submodule if submodule in MODULES else source


def graph() -> dict[str, set[str]]:
    return {m: {i for i in imports_of(m) if i in MODULES and i != m} for m in MODULES}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _in_storage(module: str) -> bool:
    return module == f"{PACKAGE}.sysdb" or module.startswith(f"{PACKAGE}.sysdb.")


def _is_backend(module: str) -> bool:
    name = module.rsplit(".", 1)[-1]
    return _in_storage(module) and name.startswith(("_pg", "_postgres", "_sqlite"))


def test_imports__the_walk_sees_every_kind_of_import() -> None:
    """The walk itself: relative, deferred and TYPE_CHECKING imports all count."""
    edges = graph()
    assert f"{PACKAGE}._runtime" in edges[f"{PACKAGE}._dbos"]
    assert f"{PACKAGE}.sysdb" in edges[f"{PACKAGE}._journal"]
    # A TYPE_CHECKING import (the handle types its runtime without importing it at run
    # time) is an arrow all the same.
    assert f"{PACKAGE}._runtime" in edges[f"{PACKAGE}._handle"]


def test_imports__a_circle_is_found() -> None:
    """The cycle finder finds a planted circle (so an empty answer means something)."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]


def test_imports__no_circles_in_the_package() -> None:
    found = cycles(graph())
    assert found == [], "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports__storage_never_imports_the_engine() -> None:
    """``dbos_async.sysdb`` sits under the engine: it may use only the package's leaf
    modules (errors, clock, URLs), never the runtime, workflows or the facade."""
    leaves = {f"{PACKAGE}._errors", f"{PACKAGE}._clock", f"{PACKAGE}._urls"}
    upward = {
        (m, target)
        for m, targets in graph().items()
        if _in_storage(m)
        for target in targets
        if not _in_storage(target) and target not in leaves
    }
    assert upward == set()


def test_imports__only_backend_modules_import_a_driver() -> None:
    offenders = {
        (m, name.split(".")[0])
        for m in MODULES
        for name in imports_of(m)
        if name.split(".")[0] in DRIVERS and not _is_backend(m)
    }
    assert offenders == set()


def test_imports__only_their_module_imports_a_driver_wrapper() -> None:
    """SQLAlchemy (an optional extra) is imported by one storage module only, which the
    backends import when the first ``DBOS.sql_session`` is asked for."""
    offenders = {
        (m, name.split(".")[0])
        for m in MODULES
        for name in imports_of(m)
        if WRAPPERS.get(name.split(".")[0], m) != m
    }
    assert offenders == set()
    assert f"{PACKAGE}.sysdb._sqlalchemy" in MODULES


def test_imports__the_engine_reaches_storage_through_its_package() -> None:
    """Outside ``sysdb`` nothing imports a storage module directly: the engine and the
    CLI see the storage interface that ``dbos_async.sysdb`` exports, never a backend."""
    offenders = {
        (m, target)
        for m, targets in graph().items()
        if not _in_storage(m)
        for target in targets
        if _in_storage(target) and target != f"{PACKAGE}.sysdb"
    }
    assert offenders == set()


#: The layers of docs/architecture.md, lowest first. A module may import only from its
#: own layer or lower ones; a new module must be placed here.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "leaves",
        {
            "_errors",
            "errors",
            "_clock",
            "_urls",
            "_status",
            "_ids",
            "_cron",
            "_failpoints",
            "_host",
            "_loop",
        },
    ),
    ("storage", {"sysdb"}),
    ("foundations", {"_context", "_registry", "_classes", "_serialization", "_config", "_txguard"}),
    ("runtime", {"_journal", "_notifier", "_live", "_runtime", "_tracing"}),
    (
        "engine",
        {"_deadlines", "_handle", "_management", "_timeouts", "_runner", "_checkpoint", "_steps"}
        | {"_patching", "_versions"},
    ),
    (
        "features",
        {"_decorators", "_queue", "_queue_admin", "_queue_worker", "_scheduler", "_recovery"}
        | {"_schedules"}
        | {"_watcher"}
        | {"_messaging", "_leases", "_debouncer"}
        | {"_send_bulk", "_run_step", "_bulk_management", "_management_steps"},
    ),
    ("lifecycle", {"_lifecycle"}),
    ("facade", {"", "_dbos", "client", "cli", "_debouncer_client", "dashboard"}),
    # Optional integrations, each on the public API only.
    ("integrations", {"asgi", "testing", "_pytest_plugin", "encryption", "_crash_child"}),
]


def layer_of(module: str) -> int:
    """The layer of a package module, by its first name under the package."""
    first = module.split(".")[1] if "." in module else ""
    for number, (_, names) in enumerate(LAYERS):
        if first in names:
            return number
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and the docs)")


def test_imports__every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_imports__no_upward_arrows() -> None:
    upward = sorted(
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
        for m, targets in graph().items()
        for t in targets
        if layer_of(t) > layer_of(m)
    )
    assert upward == []
