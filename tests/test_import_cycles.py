"""No import cycle between epsilon_tf modules at module level.

A static check: every `.py` file of the package is parsed with `ast`, the
imports it runs when it is loaded (anything outside a function body,
`if`/`try` blocks included) become edges of a graph of epsilon_tf modules,
and the graph is searched for cycles. Imports inside functions run later,
when the function is called, and do not count.

`from pkg import name` is an edge to the module `pkg.name` when that is a
module of the package, else to `pkg` itself (its `__init__`). The implicit
import of a parent package when a submodule is loaded is not an edge: a
package `__init__` that re-exports its submodules is the normal layout.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "epsilon_tf"


def module_files(root=ROOT, package=PACKAGE):
    """{dotted module name: path} of every module of `package`."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_package(path):
    return path.name == "__init__.py"


def _module_level_imports(tree):
    """Import/ImportFrom nodes that run when the module is loaded."""
    found = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            ):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def _resolve_from(name, path, node):
    """The absolute module name an ImportFrom node imports from."""
    if not node.level:
        return node.module
    base = name.split(".")
    if not _is_package(path):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    if node.module:
        base = base + node.module.split(".")
    return ".".join(base)


def import_graph(modules):
    """{module: sorted epsilon_tf modules it imports at module level}."""
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = set()
        for node in _module_level_imports(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        targets.add(alias.name)
                continue
            source = _resolve_from(name, path, node)
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in modules:
                    targets.add(full)
                elif source in modules:
                    targets.add(source)
        targets.discard(name)
        graph[name] = sorted(targets)
    return graph


def find_cycles(graph):
    """Every strongly connected component with a cycle, each sorted."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    counter = [0]

    def strongconnect(v):
        # Iterative Tarjan: (node, iterator over its successors).
        work = [(v, iter(graph.get(v, ())))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, successors = work[-1]
            advanced = False
            for w in successors:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph.get(w, ()))))
                    advanced = True
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return sorted(cycles)


def test_the_scan_sees_the_package():
    modules = module_files()
    graph = import_graph(modules)
    # Known edges, so that a scan that finds nothing cannot pass.
    assert "epsilon_tf.metrics.ranking_metrics" in graph["epsilon_tf.metrics"]
    lesa = graph["epsilon_tf.data.readers.lesa_tfrecord"]
    assert "epsilon_tf.data.base" in lesa
    assert "epsilon_tf.data.records.stream" in lesa
    assert len(modules) > 50


@pytest.mark.parametrize(
    "files, expected",
    [
        # a -> b -> a at module level: one cycle.
        (
            {
                "p/__init__.py": "",
                "p/a.py": "from p.b import x\n",
                "p/b.py": "import os\nfrom p import a\n",
            },
            [["p.a", "p.b"]],
        ),
        # Relative imports and a three-module ring, under try/if.
        (
            {
                "p/__init__.py": "",
                "p/a.py": "try:\n    from .b import x\nexcept ImportError:"
                "\n    pass\n",
                "p/b.py": "if True:\n    from . import c\n",
                "p/c.py": "from p.a import y\n",
            },
            [["p.a", "p.b", "p.c"]],
        ),
        # The same imports inside functions: no cycle.
        (
            {
                "p/__init__.py": "",
                "p/a.py": "from p.b import x\n",
                "p/b.py": "def f():\n    from p import a\n",
            },
            [],
        ),
        # A package re-exporting its submodule, which imports a sibling.
        (
            {
                "p/__init__.py": "from p.a import x\n",
                "p/a.py": "from p.b import y\n",
                "p/b.py": "z = 1\n",
            },
            [],
        ),
        # A submodule importing a name from its own package's __init__,
        # which imports that submodule: a real cycle.
        (
            {
                "p/__init__.py": "from p.a import x\n",
                "p/a.py": "from p import b_value\n",
            },
            [["p", "p.a"]],
        ),
    ],
)
def test_cycle_finder(tmp_path, files, expected):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    graph = import_graph(module_files(tmp_path, "p"))
    assert find_cycles(graph) == expected


def test_no_import_cycle_at_module_level():
    cycles = find_cycles(import_graph(module_files()))
    assert cycles == [], (
        "Import cycles between epsilon_tf modules (module-level imports): "
        + "; ".join(" <-> ".join(c) for c in cycles)
    )
