"""The import graph has no circles: a module never imports (even for typing) a module that imports it back.

Every ``import`` and ``from ... import`` of ``rlx2`` and ``baselines`` modules, also inside
functions and under ``TYPE_CHECKING``, is an edge. ``python tests/test_architecture.py``
prints the graph's size, its circles and the longest functions.
"""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def modules() -> dict[str, Path]:
    """Module name -> file, for the package and the baselines (installed as ``rlx2.baselines``)."""
    found = {}
    for folder, prefix in (("rlx2", "rlx2"), ("baselines", "rlx2.baselines")):
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((prefix, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> tuple[dict[str, set[str]], list[tuple[int, str]]]:
    """``(edges, function lengths)``: each module's imports of other project modules."""
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    lengths = []
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            edges[name] |= {t for t in targets if t in mods and t not in (name, "rlx2")}
    return edges, sorted(lengths, reverse=True)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circles():
    edges, _ = import_graph()
    assert len(edges) > 30  # the walk found the package
    assert circles(edges) == []


def test_nothing_imports_the_baselines_by_a_top_level_name():
    for path in [*ROOT.joinpath("rlx2").rglob("*.py"), *ROOT.joinpath("baselines").rglob("*.py"),
                 *ROOT.joinpath("tests").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                assert node.module.split(".")[0] != "baselines", f"{path}: import rlx2.baselines instead"


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    graph, functions = import_graph()
    print(f"modules {len(graph)}, imports {sum(map(len, graph.values()))}, circles {circles(graph)}")
    print("longest functions:", ", ".join(f"{name} ({n} lines)" for n, name in functions[:5]))
