"""The package's shape: imports point down the layers, no import cycle, no module over 400 lines.

Read from the source with ``ast`` (nothing is imported), so a lazy import inside a function counts as much
as one at the top: it runs just the same once the function is called.
"""
from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Low to high. A module may import its own layer and those below, never one above. Each entry is a module
# name pattern (fnmatch; "cloob.data" covers the package and everything in it).
LAYERS = [
    ("base", ["cloob", "cloob.errors", "cloob.argv", "cloob.device", "cloob.seeding", "cloob.blocks", "cloob.lazy",
              "cloob.methods", "cloob.distributed", "cloob.html", "cloob.rundir", "cloob.archive",
              "cloob.embedding_stats", "cloob.weights", "cloob.checkpoint", "cloob.locking", "cloob.cache"]),
    ("data", ["cloob.data"]),
    ("losses", ["cloob.hopfield", "cloob.loss_kernels", "cloob.losses"]),
    ("models", ["cloob.towers", "cloob.models", "cloob.model_source", "cloob.image_source"]),
    ("evals", ["cloob.evals"]),
    ("train", ["cloob.train"]),
    ("analysis", ["cloob.analysis"]),
    ("apps", ["cloob.search", "cloob.benchmark", "cloob.experiment"]),
    ("cli", ["cloob.cli", "cloob.demo", "cloob.*.commands"]),  # front ends: `cloob`, `make demo`, sub-commands
]
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for p in (SRC / "cloob").rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """cloob modules that ``path`` imports (``from cloob.x import y`` counts cloob.x, and cloob.x.y if a module)."""
    deps = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            deps.update(a.name for a in node.names if a.name.split(".")[0] == "cloob")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "cloob":
            deps.add(node.module)
            deps.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
    return deps


def layer_of(module: str) -> int:
    """Index in LAYERS of a module. An exact name beats a pattern, and a pattern beats a package prefix
    (``cloob.evals.commands`` is cli, ``cloob.evals.zeroshot`` is evals)."""
    best = None
    for i, (_, patterns) in enumerate(LAYERS):
        for pat in patterns:
            if module == pat:
                score = 3
            elif "*" in pat and fnmatch.fnmatchcase(module, pat):
                score = 2
            elif "*" not in pat and pat != "cloob" and module.startswith(pat + "."):
                score = 1
            else:
                continue
            if best is None or score > best[0]:
                best = (score, i)
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add it where it belongs")
    return best[1]


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {d for d in _imports(p, mods) if d in mods and d != m} for m, p in mods.items()}


def test_layer_table_places_modules_as_intended():
    assert LAYERS[layer_of("cloob.evals.commands")][0] == "cli"
    assert LAYERS[layer_of("cloob.evals.zeroshot")][0] == "evals"
    assert LAYERS[layer_of("cloob.data")][0] == "data"
    assert LAYERS[layer_of("cloob.checkpoint")][0] == "base"
    assert LAYERS[layer_of("cloob.experiment.runner")][0] == "apps"


def test_imports_point_down_the_layers():
    up = []
    for m, deps in sorted(_graph().items()):
        for d in sorted(deps):
            if m.startswith(d + "."):  # a module's own package (its __init__) is loaded before it anyway
                continue
            if layer_of(d) > layer_of(m):
                up.append(f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})")
    assert not up, "imports that point up the layers:\n" + "\n".join(up)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, comps, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        comps.append(sorted(comp))
    return comps


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    # an import of one's own package is not an edge: the package is initialised first in any case
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in _graph().items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_module_over_400_lines():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"
