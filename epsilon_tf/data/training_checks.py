"""Checks of a data source that must pass before training starts.

`check_before_training` is called once the source is opened (its label
space and splits known) and before the first step or anything is written:
a mistake that would otherwise stop a run after training (a K larger than
an evaluated block's number of labels, with the run left without its
evaluation) or at its first step (a training split of all labels) is one
`error:` line naming the flag or the file.
"""

import os

from epsilon_tf.errors import CommandLineError, InputDataError


def label_blocks(label_space, validation=True):
    """`{block: number of labels}` of the blocks an evaluation ranks
    (training also ranks the seen labels of the validation images)."""
    blocks = {
        "seen labels (validation)": len(label_space.seen),
        "unseen labels (ZSL)": len(label_space.unseen),
        "labels in all (GZSL)": label_space.num_labels,
    }
    if not validation:
        del blocks["seen labels (validation)"]
    return blocks


def check_ks(ks, label_space, flag_given, where, validation=True):
    """Raises `CommandLineError` when a K exceeds a block's label count.

    Args:
        ks: sequence of int. The K of P/R/F1@K.
        label_space: `LabelSpace` of the data.
        flag_given: bool. Whether `--k` was given (else the dataset's
            default K, said so in the message).
        where: str. The label space's file or directory, for the message.
        validation: bool. Whether the seen labels are ranked too (the
            validation during training; not in eval.py).
    """
    blocks = {
        n: c for n, c in label_blocks(label_space, validation).items() if c
    }
    too_big = {n: c for n, c in blocks.items() if max(ks) > c}
    if not too_big:
        return
    smallest = min(blocks.values())
    given = ",".join(str(k) for k in ks)
    origin = "" if flag_given else " (the default for this dataset)"
    counts = ", ".join(f"{c} {n}" for n, c in blocks.items())
    raise CommandLineError(
        f"--k={given}{origin}: K cannot exceed the number of labels an "
        f"evaluation ranks; {where} has {counts}. Give --k with values of "
        f"at most {smallest} (e.g. --k={_example_ks(smallest)}), or more "
        "labels"
    )


def _example_ks(limit):
    return ",".join(str(k) for k in sorted({max(1, limit // 2), limit}))


def check_training_split(source, where):
    """Raises `InputDataError` unless the training split holds seen labels.

    The trainer learns from the seen labels: a training split written
    over all labels (`extract_features --label_set=all`) cannot train.
    """
    if "train" not in source.splits:
        return
    split = source.split("train")
    if split.label_set != "seen":
        raise InputDataError(
            f"{where}: the training split holds {split.label_set} labels; "
            "training needs the seen labels only (write it with "
            "extract_features --split=train --label_set=seen)"
        )


def check_before_training(source, ks_given, data_dir=None):
    """All of the above for `train.py` (`ks_given`: whether --k was given).

    `source.eval_ks` holds the K in use (the flag's or the dataset's).
    """
    where = (
        os.path.join(data_dir, "label_space.json") if data_dir
        else "the label space"
    )
    check_ks(source.eval_ks, source.label_space, ks_given, where)
    check_training_split(
        source, os.path.join(data_dir, "train.json") if data_dir
        else "the data",
    )
