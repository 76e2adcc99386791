"""The package's layers (docs/architecture.md, "Layers"): a module imports, at module level or
inside a function, only from its own layer or the layers below it, and no modules import each
other in a cycle. Imports under ``if TYPE_CHECKING:`` are annotations only and are not checked."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "automl_pt"

#: bottom to top; a module belongs to the first entry that names it or a package above it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("automl_pt.errors", "automl_pt.core")),
    ("contracts", ("automl_pt.registry", "automl_pt.hookspecs", "automl_pt.plugins",
                   "automl_pt.heads", "automl_pt.model", "automl_pt.tasks")),
    ("spec", ("automl_pt.spec",)),
    ("train", ("automl_pt.train",)),
    ("storage", ("automl_pt.storage",)),
    ("export", ("automl_pt.export",)),
    ("engine", ("automl_pt.engine",)),
    ("report", ("automl_pt.report",)),
    ("app", ("automl_pt.cli", "automl_pt.autofit", "automl_pt.efficiency", "automl_pt.testing",
             "automl_pt.builtin", "automl_pt.__main__", "automl_pt")),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def layer_of(module: str) -> int | None:
    for i, (_, names) in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names if n != "automl_pt"):
            return i
    return len(LAYERS) - 1 if module == "automl_pt" else None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports(module: str, path: Path, known: dict[str, Path]) -> list[tuple[int, str]]:
    """``(line, imported automl_pt module)`` for every import in ``path``, relative ones
    resolved; ``from pkg import name`` names the submodule where ``name`` is one."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_nodes(tree)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).rstrip(".")
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            if target == "automl_pt" or target.startswith("automl_pt."):
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != module and (node.lineno, target) not in found:
                    found.append((node.lineno, target))
    return found


def graph() -> dict[str, list[tuple[int, str]]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def where(module: str) -> str:
    return str(modules()[module].relative_to(PACKAGE.parent))


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer_of(m) is None] == []


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for module, found in graph().items():
        mine = layer_of(module)
        for line, target in found:
            theirs = layer_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{where(module)}:{line}: {module} ({LAYERS[mine][0]}) imports "
                              f"{target} ({LAYERS[theirs][0]})")
    assert upward == [], "imports from a layer above:\n" + "\n".join(upward)


def cycles(edges: dict[str, list[tuple[int, str]]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for _, w in edges.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


#: cycles left to break (issue 14 broke the last ones): the check fails on any other cycle, and on
#: one of these once it is gone, so that this list only shrinks
KNOWN_CYCLES: list[set[str]] = []


def test_no_import_cycles():
    edges = graph()
    problems = []
    found = cycles(edges)
    for component in found:
        if set(component) in KNOWN_CYCLES:
            continue
        inside = set(component)
        lines = [f"  {where(m)}:{line}: imports {t}" for m in component for line, t in edges[m]
                 if t in inside]
        problems.append("cycle " + " <-> ".join(component) + "\n" + "\n".join(lines))
    gone = [sorted(c) for c in KNOWN_CYCLES if sorted(c) not in found]
    assert problems == [], "\n".join(problems)
    assert gone == [], f"no longer cycles, remove them from KNOWN_CYCLES: {gone}"


def test_the_check_sees_function_local_and_relative_imports(tmp_path):
    pkg = tmp_path / "automl_pt"
    (pkg / "engine").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "engine" / "__init__.py").write_text("")
    (pkg / "engine" / "a.py").write_text("def f():\n    from ..report import page\n")
    (pkg / "report").mkdir()
    (pkg / "report" / "__init__.py").write_text("")
    (pkg / "report" / "page.py").write_text("from typing import TYPE_CHECKING\n"
                                            "if TYPE_CHECKING:\n    from ..cli import x\n")
    known = {"automl_pt": pkg / "__init__.py", "automl_pt.engine": pkg / "engine" / "__init__.py",
             "automl_pt.engine.a": pkg / "engine" / "a.py", "automl_pt.report": pkg / "report",
             "automl_pt.report.page": pkg / "report" / "page.py", "automl_pt.cli": pkg / "cli.py"}
    assert imports("automl_pt.engine.a", known["automl_pt.engine.a"], known) == [(2, "automl_pt.report.page")]
    assert imports("automl_pt.report.page", known["automl_pt.report.page"], known) == []
    assert layer_of("automl_pt.engine.a") < layer_of("automl_pt.report.page")
    assert cycles({"x": [(1, "y")], "y": [(3, "x")], "z": [(1, "x")]}) == [["x", "y"]]


@pytest.mark.parametrize("module", ["automl_pt.model", "automl_pt.errors", "automl_pt.tasks",
                                    "automl_pt.registry", "automl_pt.hookspecs",
                                    "automl_pt.testing", "automl_pt.plugins"])
def test_public_modules_stay_where_plugins_import_them(module):
    assert module in modules()
