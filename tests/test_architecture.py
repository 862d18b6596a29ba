"""The import graph follows the README's layers: a module imports only from the layers below its own, so no circles.

Every ``import`` and ``from ... import`` of ``rlx2`` and ``baselines`` modules, also inside
functions and under ``TYPE_CHECKING``, is an edge. The layers are the lines of the README's
architecture diagram that start with a module (``rlx2/x.py``) or a package (``rlx2/sparse/``,
``baselines/``), top to bottom; a package's modules may import each other (no circles).
``python tests/test_architecture.py`` prints the graph's size, its circles, the imports
against the layers and the longest functions.
"""

import ast
import re
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


def readme_layers(text: str | None = None) -> list[str]:
    """The README's layers, top to bottom: ``rlx2/x.py``, ``rlx2/pkg/`` or ``baselines/``, from its architecture diagram."""
    text = (ROOT / "README.md").read_text() if text is None else text
    diagram = re.search(r"## Architecture\n.*?```\n(.*?)```", text, re.S).group(1)
    return [m.group(1) for line in diagram.splitlines() if (m := re.match(r"((?:rlx2|baselines)/\S*)", line))]


def layer_of(module: str, layers: list[str]) -> int | None:
    """The index of ``module``'s layer (0 = top), None if the diagram has no place for it."""
    for index, entry in enumerate(layers):
        if entry.endswith("/"):  # a package: the package and every module in it
            package = "rlx2.baselines" if entry == "baselines/" else entry.rstrip("/").replace("/", ".")
            if module == package or module.startswith(package + "."):
                return index
        elif entry.removesuffix(".py").removesuffix("/__init__").replace("/", ".") == module:
            return index
    return None


def against_layers(edges: dict[str, set[str]], layers: list[str]) -> list[str]:
    """One line per module the diagram does not place, per line of it that names no module, and per import of a
    higher layer's module."""
    problems = [f"{m}: not in the README's architecture diagram" for m in sorted(edges) if layer_of(m, layers) is None]
    placed = {layer_of(m, layers) for m in edges}
    problems += [f"{entry}: in the README's architecture diagram, but no such module" for index, entry in
                 enumerate(layers) if index not in placed]
    for module in sorted(edges):
        here = layer_of(module, layers)
        for target in sorted(edges[module]):
            there = layer_of(target, layers)
            if here is not None and there is not None and there < here:
                problems.append(f"{module} imports {target}: {layers[there]} is not below {layers[here]}")
    return problems


def test_every_import_goes_down_the_readme_layers():
    edges, _ = import_graph()
    layers = readme_layers()
    assert len(layers) > 20 and len(set(layers)) == len(layers)  # the diagram was found, each layer once
    assert against_layers(edges, layers) == []


def test_an_upward_import_or_an_unplaced_module_is_caught():
    layers = ["rlx2/train.py", "rlx2/sparse/", "rlx2/config.py"]
    edges = {"rlx2.train": {"rlx2.sparse.layers", "rlx2.config"}, "rlx2.sparse.layers": {"rlx2.sparse.backend"},
             "rlx2.sparse.backend": {"rlx2.config"}, "rlx2.config": set()}
    assert against_layers(edges, layers) == []  # downwards, and within a package
    assert against_layers({**edges, "rlx2.config": {"rlx2.sparse.backend"}}, layers) == [
        "rlx2.config imports rlx2.sparse.backend: rlx2/sparse/ is not below rlx2/config.py"]
    assert against_layers({**edges, "rlx2.new": set()}, layers) == ["rlx2.new: not in the README's architecture diagram"]
    assert against_layers({k: v for k, v in edges.items() if k != "rlx2.train"}, layers) == [
        "rlx2/train.py: in the README's architecture diagram, but no such module"]


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
    print(f"modules {len(graph)}, imports {sum(map(len, graph.values()))}, circles {circles(graph)}, "
          f"against the layers {against_layers(graph, readme_layers())}")
    print("longest functions:", ", ".join(f"{name} ({n} lines)" for n, name in functions[:5]))
