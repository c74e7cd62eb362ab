"""The engine's import graph has no cycle, counting imports inside functions (hidden cycles count too)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "app" / "engine"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def engine_graph() -> dict[str, set[str]]:
    """module -> the engine modules it imports anywhere in its body (top level or inside functions)."""
    modules = {module_name(p): p for p in ENGINE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for n in names:
                # "from app.engine import jobs" names a module; "from app.engine.jobs import run" names its module
                while n and n not in modules:
                    n = n.rpartition(".")[0]
                if n and n != mod and n.startswith("app.engine") and n != "app.engine":
                    graph[mod].add(n)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_cycle_hidden_inside_a_function():
    graph = {"app.engine.a": {"app.engine.b"}, "app.engine.b": {"app.engine.a"}, "app.engine.c": set()}
    assert cycles(graph) == [["app.engine.a", "app.engine.b"]]


def test_the_engine_has_no_import_cycle_counting_imports_inside_functions():
    found = cycles(engine_graph())
    assert found == [], "import cycles in app/engine:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_spec_layer_imports_only_itself_and_the_errors_leaf():
    graph = engine_graph()
    for mod, deps in graph.items():
        if mod.startswith("app.engine.specs"):
            assert all(d.startswith("app.engine.specs") or d == "app.engine.errors" for d in deps), (mod, deps)
