"""`benchmarks.structure` finds each structure figure on a tiny package.

A fake repository in `tmp_path` holds one of each thing the report
counts: a cycle that only function-level imports close, an upward import,
function-level imports, a 601-line module, `DEFINE_*` calls, presets in
two modules, a `/tmp` path in code and one in a docstring, and a notes
file; each finding is checked by name and line.
"""

import pathlib

from benchmarks import structure

_LEVELS = (("", "_validation"), ("config",), ("layers",), ("cli",))

_FILES = {
    "pkg/__init__.py": "",
    "pkg/config.py": (
        "RELEASE_PRESET = {'a': 1}\n"
        "NOT_A_DICT_PRESET = 3\n"
        "def f():\n"
        "    from pkg.layers import dense\n"     # line 4: upward, inner
        "    return dense\n"
    ),
    "pkg/presets.py": "x = 1\n",
    "pkg/layers/__init__.py": "",
    "pkg/layers/dense.py": (
        '"""Writes to /tmp/x in the docs only."""\n'
        "import os\n"
        "import sys\n"
        "from pkg.cli import main\n"             # line 4: upward
        "PATH = os.path.join('/tmp', 'y')\n"     # line 5: a /tmp path
    ),
    "pkg/layers/norm.py": (
        "from pkg.layers import dense\n"
        "def g():\n"
        "    from . import scale\n"              # line 3: inner, a cycle
        "    return scale\n"
    ),
    "pkg/layers/scale.py": "from pkg.layers import norm\n",
    "pkg/cli/__init__.py": "",
    "pkg/cli/main.py": (
        "from absl import flags\n"
        "flags.DEFINE_integer('a', 1, 'a')\n"
        "flags.DEFINE_string('b', '', 'b')\n"
        + "x = 1\n" * 598                         # 601 lines in all
    ),
    "train.py": "from absl.flags import DEFINE_bool\nDEFINE_bool('c', 0, '')\n",
    "BUILD_NOTES.md": "line\n" * 12,
}


def _repo(tmp_path):
    for rel, text in _FILES.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path, structure.module_files(tmp_path, "pkg")


def _where(path, root):
    return str(pathlib.Path(path).relative_to(root))


def test_cycles_module_level_and_with_function_imports(tmp_path):
    _, modules = _repo(tmp_path)
    assert structure.find_cycles(structure.import_graph(modules)) == []
    inner = structure.import_graph(modules, function_level=True)
    assert structure.find_cycles(inner) == [
        ["pkg.layers.norm", "pkg.layers.scale"]
    ]


def test_upward_imports_function_level_included(tmp_path):
    root, modules = _repo(tmp_path)
    imports = structure.package_imports(modules)
    upward = structure.upward_imports(imports, _LEVELS)
    assert sorted(
        (imp.source, imp.target, _where(imp.path, root), imp.line,
         imp.in_function)
        for imp in upward
    ) == [
        ("pkg.config", "pkg.layers.dense", "pkg/config.py", 4, True),
        ("pkg.layers.dense", "pkg.cli.main", "pkg/layers/dense.py", 4,
         False),
    ]
    # A module importing its own level or lower is fine; `presets` is in
    # no level of this order.
    assert structure.unplaced_modules(modules, _LEVELS) == ["pkg.presets"]


def test_function_level_imports_listed(tmp_path):
    root, modules = _repo(tmp_path)
    inner = structure.function_level_imports(
        structure.package_imports(modules)
    )
    assert {(_where(p, root), n): t for (p, n), t in inner.items()} == {
        ("pkg/config.py", 4): ["pkg.layers.dense"],
        ("pkg/layers/norm.py", 3): ["pkg.layers.scale"],
    }


def test_long_modules_defines_presets_and_tmp_paths(tmp_path):
    root, modules = _repo(tmp_path)
    files = list(modules.values()) + [root / "train.py"]
    assert [(_where(p, root), n) for p, n in
            structure.long_modules(files)] == [("pkg/cli/main.py", 601)]
    assert sorted((_where(p, root), n) for p, n in
                  structure.define_sites(files)) == [
        ("pkg/cli/main.py", 2), ("pkg/cli/main.py", 3), ("train.py", 2),
    ]
    assert structure.preset_modules(modules) == {
        "pkg.config": ["RELEASE_PRESET"], "pkg.presets": [],
    }
    assert [(_where(p, root), n, text) for p, n, text in
            structure.tmp_paths(structure.python_files(root, "pkg"))] == [
        ("pkg/layers/dense.py", 5, "/tmp"),
    ]


def test_report_prints_every_figure_and_verdict(tmp_path):
    root, _ = _repo(tmp_path)
    lines = []
    figures = structure.report(root, "pkg", out=lines.append)
    text = "\n".join(lines)
    assert figures["flags.DEFINE_* call sites"] == 3
    assert "flags.DEFINE_* call sites: 3  (target <= 30)  PASS" in text
    assert "modules defining presets: 2  (target 1)  MISS" in text
    assert "modules over 600 lines: 1  (target 0)  MISS" in text
    assert "    pkg/cli/main.py: 601" in text
    assert "BUILD_NOTES.md lines: 12  (target <= 700)  PASS" in text
    assert "fixed /tmp paths outside docstrings: 1  (target 0)  MISS" in text
    assert "import cycles (module level): 0  (target 0)  PASS" in text
    assert ("import cycles (function-level imports included): 1  "
            "(target 0)  MISS") in text
    # The package's real layer order: `config` below `layers`, which is
    # below `cli`.
    assert figures["upward imports (function-level included)"] == 2
    assert "    pkg/config.py:4: pkg.config -> pkg.layers.dense (in a " \
        "function)" in text


def test_main_reports_and_exits_zero(tmp_path, capsys):
    root, _ = _repo(tmp_path)
    (root / "epsilon_tf").mkdir()
    (root / "epsilon_tf" / "__init__.py").write_text("")
    assert structure.main([f"--root={root}"]) == 0
    out = capsys.readouterr().out
    assert "BUILD_NOTES.md lines: 12" in out


def test_the_package_meets_every_structure_target():
    """The figures BUILD_NOTES quotes ("Architecture"), kept: a change that
    adds a 31st flag definition site, a second presets module, an import
    cycle or an upward import, a 16th function-level import of the
    package's own modules, a module over 600 lines, a fixed /tmp path or a
    BUILD_NOTES over 700 lines fails here."""
    lines = []
    figures = structure.report(out=lines.append)
    verdicts = [line for line in lines if line.endswith(("PASS", "MISS"))]
    assert len(verdicts) == len(figures) == 9, lines
    missed = [line for line in verdicts if line.endswith("MISS")]
    assert not missed, "\n".join(lines)
