"""Structure figures of the code base, each beside its target.

Reads the sources with `ast` (standard library only: nothing is imported
or run) and prints, each with its target and PASS or MISS:

- the `flags.DEFINE_*` call sites in `epsilon_tf/`, `train.py` and
  `eval.py` (argparse command lines are not counted);
- the modules that define presets (module-level dicts whose names end in
  `PRESET` or `PRESETS`, or a module named `presets`);
- import cycles among the package's modules, at module level and with
  the imports inside functions included;
- upward imports against the package's layer order (`LEVELS`), imports
  inside functions included;
- the function-level imports of the package's own modules;
- modules of the package and entry points over `MAX_MODULE_LINES` lines;
- fixed `/tmp` paths outside docstrings in the package, `benchmarks/` and
  `research/`;
- the line count of BUILD_NOTES.md.

    python -m benchmarks.structure [--root=DIR]

The exit status is 0 whatever the figures (it is a report, not a check);
the figures that are tests are in `tests/` (`tests/test_import_cycles.py`
uses this module's import graph).
"""

import argparse
import ast
import collections
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "epsilon_tf"
ENTRY_POINTS = ("train.py", "eval.py")
# The package's layers, bottom up, by the first name under the package
# ("" is the package's `__init__`). A module may import from its own
# level and the levels below it; the entry points sit above them all, and
# so does every `__main__` module (`python -m ...`: an entry point).
# `errors` and `storage` (the exception types and the disk-full-safe
# writes) use the standard library only, so every level may use them.
LEVELS = (
    ("", "_validation", "errors", "storage"),
    ("config", "presets"),
    ("labels",),
    ("layers",),
    ("losses",),
    ("metrics",),
    ("data", "baselines"),
    ("models",),
    ("visualization",),
    ("training",),
    ("export",),
    ("cli", "experiments", "tools", "flags"),
)
MAX_MODULE_LINES = 600
MAX_DEFINE_SITES = 30
MAX_FUNCTION_IMPORTS = 15
MAX_NOTES_LINES = 700
# Written in pieces so that this file's own constants do not name it.
TMP_DIR = "/".join(("", "tmp"))
TMP_PATH = re.compile(r"(?<![\w.])" + TMP_DIR + r"\b")

# One import statement of a package module: `source` imports `target`
# (both dotted module names) at `path:line`, inside a function or not.
Import = collections.namedtuple(
    "Import", "source target path line in_function"
)


# ---------------------------------------------------------------------------
# The import graph.
# ---------------------------------------------------------------------------


def module_files(root=ROOT, package=PACKAGE):
    """{dotted module name: path} of every module of `package`."""
    out = {}
    for path in sorted((pathlib.Path(root) / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_package(path):
    return path.name == "__init__.py"


def _imports_of(tree):
    """[(Import/ImportFrom node, inside a function body?)] of a module.

    Module-level imports run when the module is loaded (anything outside a
    function body, `if`/`try` blocks included); the others when their
    function is called.
    """
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, in_function))
            visit(child, inside)

    visit(tree, False)
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


def package_imports(modules):
    """Every import of a package module by a package module: [Import].

    `from pkg import name` imports the module `pkg.name` when that is a
    module of the package, else `pkg` itself (its `__init__`). The
    implicit import of a parent package when a submodule is loaded is not
    counted: a package `__init__` that re-exports its submodules is the
    normal layout. A module importing itself is not counted.
    """
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        for node, in_function in _imports_of(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name in modules]
            else:
                source = _resolve_from(name, path, node)
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    if full in modules:
                        targets.append(full)
                    elif source in modules:
                        targets.append(source)
            for target in sorted(set(targets) - {name}):
                found.append(
                    Import(name, target, path, node.lineno, in_function)
                )
    return found


def import_graph(modules, function_level=False):
    """{module: sorted package modules it imports}.

    Module-level imports only, unless `function_level`.
    """
    graph = {name: set() for name in modules}
    for imp in package_imports(modules):
        if function_level or not imp.in_function:
            graph[imp.source].add(imp.target)
    return {name: sorted(targets) for name, targets in graph.items()}


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


def level_of(module, levels=LEVELS):
    """The index in `levels` of a dotted module name, or None (unplaced).

    A `__main__` module is an entry point: above every level.
    """
    parts = module.split(".")
    if parts[-1] == "__main__":
        return len(levels)
    top = parts[1] if len(parts) > 1 else ""
    for index, names in enumerate(levels):
        if top in names:
            return index
    return None


def upward_imports(imports, levels=LEVELS):
    """The imports of a module from a higher level: [Import]."""
    out = []
    for imp in imports:
        source, target = level_of(imp.source, levels), level_of(
            imp.target, levels
        )
        if source is not None and target is not None and target > source:
            out.append(imp)
    return out


def function_level_imports(imports):
    """{(path, line): [targets]} of the import statements inside functions
    (one statement importing several modules counts once)."""
    out = {}
    for imp in imports:
        if imp.in_function:
            out.setdefault((imp.path, imp.line), []).append(imp.target)
    return dict(sorted(out.items()))


def unplaced_modules(modules, levels=LEVELS):
    """Package modules whose first name is in no level."""
    return sorted(m for m in modules if level_of(m, levels) is None)


# ---------------------------------------------------------------------------
# The other figures.
# ---------------------------------------------------------------------------


def _parse(path):
    return ast.parse(pathlib.Path(path).read_text("utf-8"), str(path))


def define_sites(paths):
    """[(path, line)] of the `DEFINE_*` calls (`flags.DEFINE_x(...)`)."""
    sites = []
    for path in paths:
        for node in ast.walk(_parse(path)):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = (func.attr if isinstance(func, ast.Attribute)
                    else getattr(func, "id", ""))
            if name.startswith("DEFINE_"):
                sites.append((path, node.lineno))
    return sites


def preset_modules(modules):
    """{module: [preset names]} of the modules that define presets."""
    out = {}
    for name, path in modules.items():
        found = []
        for node in _parse(path).body:
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target] if isinstance(node, ast.AnnAssign)
                       else [])
            value = getattr(node, "value", None)
            is_dict = isinstance(value, (ast.Dict, ast.DictComp)) or (
                isinstance(value, ast.Call)
                and getattr(value.func, "id", "") == "dict"
            )
            for target in targets:
                if (isinstance(target, ast.Name) and is_dict
                        and target.id.endswith(("PRESET", "PRESETS"))):
                    found.append(target.id)
        if name.split(".")[-1] == "presets" or found:
            out[name] = found
    return out


def long_modules(paths, max_lines=MAX_MODULE_LINES):
    """[(path, lines)] of the files longer than `max_lines`."""
    out = []
    for path in paths:
        lines = len(pathlib.Path(path).read_text("utf-8").splitlines())
        if lines > max_lines:
            out.append((path, lines))
    return sorted(out, key=lambda item: -item[1])


def _docstring_nodes(tree):
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (isinstance(first, ast.Expr)
                    and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                ids.add(id(first.value))
    return ids


def tmp_paths(paths):
    """[(path, line, text)] of string constants naming `/tmp`, docstrings
    left out (comments are not in the syntax tree)."""
    out = []
    for path in paths:
        tree = _parse(path)
        skip = _docstring_nodes(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in skip and TMP_PATH.search(node.value)):
                out.append((path, node.lineno, node.value))
    return out


def python_files(root, *folders):
    """The `.py` files under `folders` of `root` (missing folders: none)."""
    files = []
    for folder in folders:
        files.extend(sorted((pathlib.Path(root) / folder).rglob("*.py")))
    return files


# ---------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------


def _verdict(ok):
    return "PASS" if ok else "MISS"


def _rel(path, root):
    try:
        return str(pathlib.Path(path).relative_to(root))
    except ValueError:
        return str(path)


def report(root=ROOT, package=PACKAGE, out=print):
    """Prints every figure with its target; returns {figure: value}."""
    root = pathlib.Path(root)
    modules = module_files(root, package)
    entry_points = [root / e for e in ENTRY_POINTS if (root / e).exists()]
    figures = {}

    def line(name, value, target, ok):
        figures[name] = value
        out(f"{name}: {value}  (target {target})  {_verdict(ok)}")

    sites = define_sites(list(modules.values()) + entry_points)
    line("flags.DEFINE_* call sites", len(sites), f"<= {MAX_DEFINE_SITES}",
         len(sites) <= MAX_DEFINE_SITES)
    per_file = collections.Counter(_rel(p, root) for p, _ in sites)
    for path, count in sorted(per_file.items()):
        out(f"    {path}: {count}")

    presets = preset_modules(modules)
    line("modules defining presets", len(presets), "1", len(presets) == 1)
    for name, found in sorted(presets.items()):
        out(f"    {name}: {', '.join(found) or '(presets module)'}")

    imports = package_imports(modules)
    for label, function_level in (("module level", False),
                                  ("function-level imports included", True)):
        cycles = find_cycles(import_graph(modules, function_level))
        line(f"import cycles ({label})", len(cycles), "0", not cycles)
        for cycle in cycles:
            out(f"    {' <-> '.join(cycle)}")

    upward = upward_imports(imports)
    line("upward imports (function-level included)", len(upward), "0",
         not upward)
    for imp in upward:
        where = " (in a function)" if imp.in_function else ""
        out(f"    {_rel(imp.path, root)}:{imp.line}: {imp.source} -> "
            f"{imp.target}{where}")
    for name in unplaced_modules(modules):
        out(f"    not in the layer order: {name}")

    inner = function_level_imports(imports)
    line("function-level imports of the package's own modules", len(inner),
         f"<= {MAX_FUNCTION_IMPORTS}", len(inner) <= MAX_FUNCTION_IMPORTS)
    for (path, number), targets in inner.items():
        out(f"    {_rel(path, root)}:{number}: {', '.join(targets)}")

    long = long_modules(list(modules.values()) + entry_points)
    line(f"modules over {MAX_MODULE_LINES} lines", len(long), "0", not long)
    for path, count in long:
        out(f"    {_rel(path, root)}: {count}")

    tmp = tmp_paths(python_files(root, package, "benchmarks", "research"))
    line(f"fixed {TMP_DIR} paths outside docstrings", len(tmp), "0",
         not tmp)
    for path, number, text in tmp:
        out(f"    {_rel(path, root)}:{number}: {text!r}")

    notes = root / "BUILD_NOTES.md"
    count = (len(notes.read_text("utf-8").splitlines())
             if notes.exists() else 0)
    line("BUILD_NOTES.md lines", count, f"<= {MAX_NOTES_LINES}",
         count <= MAX_NOTES_LINES)
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(ROOT),
                        help="The repository to read (default: this one).")
    args = parser.parse_args(argv)
    report(args.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
