"""The docstring examples of the package run as tests (doctest).

Every module of `epsilon_tf` is collected dynamically (every `.py` file
under the package, namespace packages such as `data/` and `training/`
included), so a module that is added or moved is picked up without
editing this file. Each
module with at least one `>>>` example is one test; the examples see `np`,
`tf` and `keras` (the names the docstrings use without importing them) and
run in the module's own namespace.

Some docstrings show how a function is used on the release files or on a
trained model (`space`, `features`, a pickle path): they cannot run
without those, and are listed in `ILLUSTRATIVE` with the reason. Their
examples are compiled (a syntax error still fails), not run; a listed name
that no longer has examples fails too, so the list cannot go stale. Every
other example runs and must print what its docstring says.
"""

import doctest
import importlib
from pathlib import Path

import pytest

import epsilon_tf

# Entry points run on import; they hold no examples.
_SKIPPED = ("__main__",)


def _modules_with_examples():
    root = Path(epsilon_tf.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.stem in _SKIPPED or ">>>" not in path.read_text("utf-8"):
            continue
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append(".".join(parts))
    return found


MODULES = _modules_with_examples()

# Docstring (doctest name) -> what its example needs that a test lacks.
_RELEASE = "the release files (or their label files / word vectors)"
_CONTEXT = "a label space, features or a model from context"
_NATIVE_DIR = "a native data dir"
ILLUSTRATIVE = {
    "epsilon_tf.baselines.eszsl.ESZSL": _CONTEXT,
    "epsilon_tf.cli.common.clean_exit": "a `main` function of a script",
    "epsilon_tf.data.readers.biam_hdf5.biam_nus_wide_split": _RELEASE,
    "epsilon_tf.data.readers.biam_hdf5.biam_open_images_split": _RELEASE,
    "epsilon_tf.data.convert.convert_split": _RELEASE,
    "epsilon_tf.data.readers.label_files.nus_wide_label_space": _RELEASE,
    "epsilon_tf.data.readers.label_files.open_images_label_space": _RELEASE,
    "epsilon_tf.data.readers.lesa_tfrecord.lesa_nus_wide_split": _RELEASE,
    "epsilon_tf.data.readers.lesa_tfrecord.lesa_open_images_split": _RELEASE,
    "epsilon_tf.data.readers.native_writer.NativeWriter": _CONTEXT,
    "epsilon_tf.data.readers.native_tfrecord.native_source": _NATIVE_DIR,
    "epsilon_tf.data.readers.native_tfrecord.native_split": _NATIVE_DIR,
    "epsilon_tf.data.readers.native_writer.write_native_split": _CONTEXT,
    "epsilon_tf.data.pipeline.input_errors": "a source and a model",
    "epsilon_tf.data.readers.safe_pickle.load_pickle": _RELEASE,
    "epsilon_tf.data.worlds.synthetic.synthetic_source": (
        "nothing, but it shows a dataset whose repr is not stable"
    ),
    "epsilon_tf.export.client": "a running TF Serving server",
    "epsilon_tf.export.inference_graph.InferenceGraph": "a trained model",
    "epsilon_tf.export.serving.export_saved_model": "a trained model",
    "epsilon_tf.models.epsilon.build_epsilon": _CONTEXT,
    "epsilon_tf.models.factory.build_model": _CONTEXT,
}


def _doctests(name):
    import keras
    import numpy as np
    import tensorflow as tf

    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    extra = {"np": np, "tf": tf, "keras": keras}
    return [t for t in finder.find(module, name, extraglobs=extra)
            if t.examples]


def test_the_collection_finds_the_public_packages():
    packages = {name.split(".")[1] for name in MODULES}
    for package in (
        "layers", "losses", "metrics", "models", "data", "export",
    ):
        assert package in packages, package
    assert "epsilon_tf.layers.learnable_fusion" in MODULES
    assert "epsilon_tf.losses.ranking" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    import keras

    tests = _doctests(name)
    assert tests, f"{name} has '>>>' but no example doctest finds"
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    failures = []
    for test in tests:
        if test.name in ILLUSTRATIVE:
            for example in test.examples:
                compile(example.source, test.name, "single")
            continue
        keras.utils.set_random_seed(0)
        out = []
        result = runner.run(test, out=out.append, clear_globs=True)
        if result.failed:
            failures.append("".join(out))
    assert not failures, "\n".join(failures)


def test_the_illustrative_examples_still_exist():
    found = {t.name for module in MODULES for t in _doctests(module)}
    assert set(ILLUSTRATIVE) <= found, set(ILLUSTRATIVE) - found
