"""Label names + word vectors -> a label space directory.

    python -m epsilon_tf.tools.make_label_space --names=tags.txt \\
        --vectors=glove.6B.300d.txt --unseen=zebra,street_art \\
        --output_dir=my_labels

(or `epsilon-label-space ...`). Writes `label_space.json` and
`label_vectors.npy` (`LabelSpace.save`), what `extract_features
--label_space_dir`, `tag --label_space` and `LabelSpace.load` read.

`--names`: a text file, one label name per line, or a CSV with a `name`
column and optionally an `unseen`, `seen` or `split` column marking each
label. `--vectors`: a GloVe / word2vec text file (streamed; multi-word
names such as "golden retriever" or "street_art" get the mean of their
words' vectors), or an array aligned with the names: `.npy`, `.npz` (its
only array, or the one named `vectors`) or a pickle (a numpy array, or a
list of arrays stacked in order, read without running code). Unseen
labels (never trained on): the CSV column, `--unseen=a,b` or
`--unseen_file` (one name per line); without any, every label is seen.

Instead of `--vectors`, `--clip_preset=DIR` embeds every label with a CLIP
text encoder from a local keras-hub preset directory, through
`--prompt` (default "There is a {} in the scene"); keras-hub is an
optional extra (`pip install -e .[clip]`).
"""

import argparse
import os
import sys

import numpy as np

from epsilon_tf.cli import common
from epsilon_tf.data.readers.safe_pickle import load_pickle
from epsilon_tf.errors import InputDataError
from epsilon_tf.labels.clip_text import DEFAULT_PROMPT, clip_text_vectors
from epsilon_tf.labels.from_words import (
    label_space_from_words,
    read_label_names,
)

PROGRAM = "epsilon-label-space"
ARRAY_SUFFIXES = (".npy", ".npz", ".pkl", ".pickle")


def load_vector_array(path):
    """A float array from a `.npy`, `.npz` or (safe) pickle file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--vectors: file not found: {path}")
    lower = path.lower()
    try:
        if lower.endswith(".npy"):
            array = np.load(path, allow_pickle=False)
        elif lower.endswith(".npz"):
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.keys())
                if len(keys) != 1 and "vectors" not in keys:
                    raise InputDataError(
                        f"--vectors: {path} holds the arrays {keys}; "
                        "expected one array or one named `vectors`"
                    )
                array = archive["vectors" if "vectors" in keys else keys[0]]
        else:
            array = load_pickle(path)
            if isinstance(array, (list, tuple)):
                array = np.concatenate([np.asarray(a) for a in array])
    except (OSError, ValueError) as e:
        if isinstance(e, InputDataError):
            raise
        raise InputDataError(
            f"--vectors: cannot read {path} as a vector array "
            f"({common.one_line(e)})"
        ) from None
    array = np.asarray(array)
    if array.dtype.kind not in "fiu":
        raise InputDataError(
            f"--vectors: {path} must hold numbers. Received dtype "
            f"{array.dtype}"
        )
    return array.astype(np.float32)


def make_label_space(names_file, vectors=None, unseen=None, seen=None,
                     clip_preset=None, prompt=DEFAULT_PROMPT):
    """A `LabelSpace` from a names file and vectors (the command's work).

    Args:
        names_file: str. Text file (one name per line) or CSV (see
            `read_label_names`).
        vectors: str. A GloVe / word2vec text file, or a `.npy`, `.npz`
            or pickle array aligned with the names.
        unseen: sequence of str or None. Unseen names (overrides the CSV
            column).
        seen: sequence of str or None. Seen names (the rest are unseen).
        clip_preset: str or None. Instead of `vectors`: a local keras-hub
            CLIP preset directory (`labels.clip_text`).
        prompt: str. The CLIP prompt template (one "{}").

    Returns:
        `LabelSpace`.
    """
    names, column_unseen = read_label_names(names_file)
    if unseen is None and seen is None:
        unseen = column_unseen
    if clip_preset is not None:
        matrix = clip_text_vectors(names, clip_preset, prompt)
        return label_space_from_words(
            names, matrix, unseen=unseen, seen=seen,
            source=f"--clip_preset={clip_preset}",
        )
    if os.fspath(vectors).lower().endswith(ARRAY_SUFFIXES):
        matrix = load_vector_array(vectors)
        return label_space_from_words(
            names, matrix, unseen=unseen, seen=seen,
            source=f"--vectors={vectors}",
        )
    return label_space_from_words(
        names, vectors, unseen=unseen, seen=seen, source=vectors
    )


def _parser():
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--names", required=True,
                        help="Label names: text file (one per line) or CSV "
                        "(`name` + optional `unseen`/`seen`/`split`).")
    parser.add_argument("--vectors", default=None,
                        help="GloVe/word2vec text file, or .npy/.npz/.pkl "
                        "aligned with the names.")
    parser.add_argument("--clip_preset", default=None,
                        help="Instead of --vectors: a local keras-hub CLIP "
                        "preset directory (extra: pip install -e .[clip]).")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT,
                        help='CLIP prompt template with one "{}".')
    parser.add_argument("--unseen", default=None,
                        help="Comma-separated unseen label names.")
    parser.add_argument("--unseen_file", default=None,
                        help="Unseen label names, one per line.")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace a label space already in output_dir.")
    parser.add_argument(common.DEBUG_FLAG, action="store_true",
                        help="Show tracebacks.")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    if (args.vectors is None) == (args.clip_preset is None):
        raise common.CommandLineError(
            "Give --vectors (word vectors) or --clip_preset (a CLIP text "
            "encoder), one of them"
        )
    if args.clip_preset is not None and args.prompt.count("{}") != 1:
        raise common.CommandLineError(
            '--prompt must hold one "{}" where the label name goes. '
            f"Received: --prompt={args.prompt!r}"
        )
    for flag in ("names", "vectors", "unseen_file", "clip_preset"):
        value = getattr(args, flag)
        if value is None:
            continue
        if not os.path.exists(value):
            raise common.CommandLineError(f"--{flag}: not found: {value}")
        if os.path.isdir(value) != (flag == "clip_preset"):
            raise common.CommandLineError(
                f"--{flag}: {value} is a directory, not a file"
                if flag != "clip_preset" else
                f"--{flag}: {value} is a file, not a preset directory"
            )
    if args.unseen is not None and args.unseen_file:
        raise common.CommandLineError(
            "--unseen and --unseen_file: give one of them"
        )
    unseen = None
    if args.unseen is not None:
        unseen = [n.strip() for n in args.unseen.split(",") if n.strip()]
    elif args.unseen_file:
        unseen = read_label_names(args.unseen_file)[0]
    target = os.path.join(args.output_dir, "label_space.json")
    if os.path.exists(target) and not args.overwrite:
        raise common.CommandLineError(
            f"--output_dir: {args.output_dir} already holds a label space "
            "(pass --overwrite to replace it)"
        )
    space = make_label_space(args.names, args.vectors, unseen=unseen,
                             clip_preset=args.clip_preset, prompt=args.prompt)
    space.save(args.output_dir)
    print(
        f"Wrote a label space of {space.num_labels} labels "
        f"({len(space.seen)} seen, {len(space.unseen)} unseen; "
        f"{space.embedding_dim}-dimensional vectors) to {args.output_dir}"
    )
    return 0


def run_main():
    """Console script `epsilon-label-space`."""
    with common.clean_exit(PROGRAM):
        sys.exit(main())



if __name__ == "__main__":
    run_main()
