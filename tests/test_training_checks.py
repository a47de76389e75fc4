"""Mistakes known before training are caught before training (issue 23)."""

import subprocess

import numpy as np
import pytest

from epsilon_tf.data.training_checks import check_ks, check_training_split
from epsilon_tf.errors import CommandLineError, InputDataError
from epsilon_tf.labels import LabelSpace
from tests.helpers import tiny

NAMES = ["a", "b", "c", "d", "e", "f", "g", "h"]


def _space(num_unseen=2):
    rng = np.random.default_rng(0)
    return LabelSpace.from_arrays(
        NAMES, rng.normal(size=(8, 6)), seen=list(range(8 - num_unseen))
    )


def test_k_against_each_block():
    with pytest.raises(CommandLineError) as info:
        check_ks((3, 5), _space(), False, "feats/label_space.json")
    assert str(info.value) == (
        "--k=3,5 (the default for this dataset): K cannot exceed the number "
        "of labels an evaluation ranks; feats/label_space.json has 6 seen "
        "labels (validation), 2 unseen labels (ZSL), 8 labels in all "
        "(GZSL). Give --k with values of at most 2 (e.g. --k=1,2), or more "
        "labels"
    )
    check_ks((1, 2), _space(), True, "x")
    check_ks((2, 3), _space(num_unseen=5), True, "x")
    # The validation ranks the seen labels with the same K.
    with pytest.raises(CommandLineError, match=r"^--k=3,5: .* 3 seen"):
        check_ks((3, 5), _space(num_unseen=5), True, "x")


def _native(directory, space, train_label_set, num=6, shape=(4, 8)):
    from epsilon_tf.data.readers.native_writer import write_native_split

    rng = np.random.default_rng(1)
    space.save(directory)
    for split, label_set in (("train", train_label_set), ("test", "all")):
        names = (space.names if label_set == "all"
                 else space.subset("seen").names)
        examples = [
            (f"{split}{i}", rng.normal(size=shape).astype(np.float32),
             np.where(rng.random(len(names)) < 0.3, 1, -1).astype(np.int8))
            for i in range(num)
        ]
        write_native_split(str(directory), split, examples, shape,
                           label_names=list(names), feature_dtype="float32",
                           label_set=label_set)
    return str(directory)


def test_training_split_of_all_labels(tmp_path):
    from epsilon_tf.data.readers.native_tfrecord import native_source

    data = _native(tmp_path / "d", _space(), "all")
    source = native_source(data, LabelSpace.load(data))
    with pytest.raises(InputDataError, match=r"d/train.json: the training "
                       r"split holds all labels; training needs the seen"):
        check_training_split(source, f"{data}/train.json")
    good = _native(tmp_path / "g", _space(), "seen")
    check_training_split(native_source(good, LabelSpace.load(good)), "x")


def test_train_py_refuses_before_writing(tmp_path):
    """Was: trained, then `error: ks must hold ... <= ... (2)`, the run left
    without evaluation or export."""
    data = _native(tmp_path / "d", _space(), "seen")
    model_dir = tmp_path / "run"
    result = subprocess.run(
        tiny.train_command(data, model_dir, "--epochs=1"),
        capture_output=True, text=True, env=tiny.child_env(), timeout=300,
        cwd=tiny.ROOT,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors[-1].startswith("train.py: error: --k=3,5 (the default for "
                                 "this dataset): K cannot exceed")
    assert "Epoch" not in result.stdout
    assert not model_dir.exists()


@pytest.mark.slow
def test_failed_test_evaluation_leaves_a_usable_run(tmp_path):
    """Issue 23: the test evaluation failed after training and left no
    model.keras / label_space/ (eval.py: "train first"; export: "not a
    training directory")."""
    import dataclasses

    from epsilon_tf.config import LossConfig, TrainConfig
    from epsilon_tf.export.__main__ import main as export_main
    from epsilon_tf.training.run import train_and_evaluate

    # 30 seen labels: validation at K=10 works; 8 unseen: ZSL at 10 fails.
    source = dataclasses.replace(tiny.in_memory_source(), eval_ks=(10,))
    config = TrainConfig(model_dir=str(tmp_path / "run"), epochs=1,
                         batch_size=64, warmup_steps=1, verbose=0,
                         summary_images=0, pr_curve_labels=0,
                         select_metric="f1@10")
    with pytest.raises(ValueError, match="ks"):
        train_and_evaluate(tiny.model_config(), LossConfig(), config, source,
                           baseline=False)
    run = tmp_path / "run"
    assert (run / "model.keras").exists()
    assert LabelSpace.load(str(run / "label_space")).num_labels == 38
    assert not (run / "metrics.json").exists()
    assert export_main(["--model_dir", str(run)]).endswith("export/1")
    assert (run / "export" / "1" / "saved_model.pb").exists()


def test_ctrl_c_exits_130(capsys):
    from epsilon_tf.cli import common

    with pytest.raises(SystemExit) as info:
        with common.clean_exit("train.py"):
            raise KeyboardInterrupt
    assert info.value.code == 130
    assert capsys.readouterr().err == "train.py: interrupted (Ctrl-C)\n"


def test_where_the_model_and_export_went_is_printed(capsys):
    """Issue 23: train.py never printed where the export went."""
    from epsilon_tf.training.run import print_saved_to
    from epsilon_tf.training.run_dir import RunDir

    print_saved_to(RunDir("runs/a"), "runs/a/export/3")
    print_saved_to(RunDir("runs/b"), None)
    assert capsys.readouterr().out.splitlines() == [
        "Saved the model to runs/a/model.keras; exported SavedModel: "
        "runs/a/export/3",
        "Saved the model to runs/b/model.keras",
    ]


def test_eval_checks_k_without_the_validation_block():
    space = _space(num_unseen=5)  # 3 seen, 5 unseen
    check_ks((3, 5), space, True, "x", validation=False)
    with pytest.raises(CommandLineError, match=r"x has 5 unseen labels \(ZSL"
                       r"\), 8 labels in all \(GZSL\)\. Give --k with values "
                       r"of at most 5"):
        check_ks((3, 6), space, True, "x", validation=False)
