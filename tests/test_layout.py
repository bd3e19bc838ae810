"""The package's layout: no import cycles, lower layers import no higher ones, short files.

The module import graph is read from the source with ``ast`` (nothing is imported): every
``import``/``from ... import`` statement anywhere in a file counts — at module level, inside a
function (a lazy import) or under ``if TYPE_CHECKING`` — because each is a dependency a reader
must follow. ``from pkg import name`` points at the submodule ``pkg.name`` when there is one,
else at ``pkg`` itself (its ``__init__``); imports of modules that do not exist are ignored.

Run as a script to print the cycles and the layer violations:

    python tests/test_layout.py
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "freeflow"

#: the lower layers (the maths, the estimators, the one trainer, the checks) ...
LOWER = ("velocities", "divergences", "density", "generators", "train", "importance", "reliability",
         "validation", "io", "mcmc")
#: ... never import the front ends built on them
HIGHER = ("datafree", "data", "bayes", "compare", "cli", "images")
#: cycles that are known and owned elsewhere, each with its reason; the test fails when one is
#: gone (delete its entry then) as well as for any new cycle
KNOWN_CYCLES: dict = {}
MAX_LINES = 400
#: files allowed over MAX_LINES, each with its reason
LONG_FILES: dict = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _absolute(current: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def import_graph() -> dict[str, set[str]]:
    """{module: the package's modules it imports}."""
    mods = modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = alias.name
                    while target not in mods and "." in target:
                        target = target.rsplit(".", 1)[0]
                    if target in mods:
                        deps.add(target)
            elif isinstance(node, ast.ImportFrom):
                target = _absolute(name, path.name == "__init__.py", node.level, node.module)
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in mods:
                        deps.add(sub)
                    elif target in mods:
                        deps.add(target)
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} imports {d}" for m, deps in sorted(graph.items()) if _layer(m) in LOWER
            for d in sorted(deps) if _layer(d) in HIGHER]


def long_files() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        n = len(path.read_text().splitlines())
        if n > MAX_LINES and rel not in LONG_FILES:
            out.append(f"{rel}: {n} lines")
    return out


# -- tests ----------------------------------------------------------------------------------------

def test_the_graph_sees_lazy_and_type_checking_imports(tmp_path):
    """The reader finds what it must: a known lazy import (inside a function) and the package
    re-exports; and the cycle finder finds a planted cycle and nothing in a chain."""
    graph = import_graph()
    assert "freeflow.images.train" in graph["freeflow.cli.images"]  # lazy, inside a function
    assert "freeflow.train.trainer" in graph["freeflow.train"]
    assert "freeflow.datafree.sampler" in graph["freeflow.datafree"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles():
    found = {tuple(c) for c in cycles(import_graph())}
    new = sorted(found - set(KNOWN_CYCLES))
    assert not new, "import cycles: " + "; ".join(" <-> ".join(c) for c in new)
    gone = sorted(set(KNOWN_CYCLES) - found)
    assert not gone, f"these cycles are broken now: delete them from KNOWN_CYCLES: {gone}"


def test_lower_layers_import_no_front_end():
    bad = layer_violations(import_graph())
    assert not bad, "lower layers importing front ends: " + "; ".join(bad)


def test_files_are_short():
    bad = long_files()
    assert not bad, f"files over {MAX_LINES} lines (split them, or add to LONG_FILES with a reason): {bad}"
    for rel in LONG_FILES:
        assert (PACKAGE.parent / rel).exists(), f"LONG_FILES lists a file that is gone: {rel}"


if __name__ == "__main__":
    g = import_graph()
    print(f"{len(g)} modules, {sum(map(len, g.values()))} imports")
    for c in cycles(g):
        print("cycle:", " <-> ".join(c))
    for v in layer_violations(g):
        print("layer:", v)
    for f in long_files():
        print("long:", f)
