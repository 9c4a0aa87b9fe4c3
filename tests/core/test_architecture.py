"""The package's shape: no circle in its imports, state at the bottom, parts apart.

The graph is read from the source: every import that runs (at module level or in a
function), not those under ``if TYPE_CHECKING:``, which only the type checker sees.
"""

from __future__ import annotations

import ast
from pathlib import Path

import flask_resilience

PACKAGE = Path(flask_resilience.__file__).parent
# Modules every part may use: they import no part themselves.
SHARED = {
    "errors",
    "config",
    "log",
    "pipeline",
    "state",
    "server",
    "outages",
    "problems",
    "signals",
    "tracecontext",
}
# The top: they wire or check every part, and no part imports them.
TOP = {"__init__", "extension", "cli", "startup", "gunicorn"}


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE).with_suffix("")
    parts = [part for part in relative.parts if part != "__init__"] or ["__init__"]
    return ".".join(parts)


def runtime_imports(path: Path) -> set[str]:
    """The package's modules that ``path`` imports when it runs."""
    tree = ast.parse(path.read_text())
    name = module_name(path)
    package = [] if name == "__init__" else name.split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.level:
                base = package[: len(package) - (child.level - 1)]
                target = [*base, *(child.module.split(".") if child.module else [])]
                for alias in child.names:
                    candidate = ".".join([*target, alias.name])
                    found.add(candidate if _exists(candidate) else ".".join(target))
            visit(child)

    visit(tree)
    return {name or "__init__" for name in found}


def _exists(name: str) -> bool:
    path = PACKAGE.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    return {
        module_name(path): runtime_imports(path) - {module_name(path)}
        for path in PACKAGE.rglob("*.py")
    }


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every circle a depth-first walk of ``edges`` meets, as the modules along it."""
    state: dict[str, str] = {}
    found: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                found.append([*trail[trail.index(target) :], target])
            elif target not in state:
                walk(target, [*trail, target])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            walk(name, [name])
    return found


def test_a_circle_is_found_when_there_is_one() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert circles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_the_imports_have_no_circle() -> None:
    edges = graph()
    # A package's __init__ imports its own submodules to export them: that is no circle.
    for name, targets in edges.items():
        edges[name] = {t for t in targets if not t.startswith(f"{name}.")}
    edges.pop("__init__")
    assert circles(edges) == []


def test_shared_modules_import_no_part() -> None:
    edges = graph()
    for name in SHARED:
        assert edges[name] <= SHARED, (name, edges[name] - SHARED)


def test_a_part_imports_only_shared_modules_and_its_own_package() -> None:
    for name, targets in graph().items():
        part = name.split(".")[0]
        if part in TOP or part in SHARED:
            continue
        others = {t for t in targets if t.split(".")[0] not in SHARED and t.split(".")[0] != part}
        assert others == set(), (name, others)
