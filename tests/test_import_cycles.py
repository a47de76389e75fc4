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
The graph is `benchmarks.structure`'s (`python -m benchmarks.structure`
prints it beside the other structure figures).
"""

import pytest

from benchmarks.structure import find_cycles, import_graph, module_files


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
