"""Images (or features) in, tags out: the top-k labels of every image.

    python -m epsilon_tf.tools.tag --images_dir=new_photos/ \\
        --model=runs/mine/export/1 --output=tags.csv

(or `epsilon-tag ...`). `--model` is a SavedModel version directory
(`RUN/export/<version>`, scored through its `score_labels` signature), an
export base (`RUN/export`, its newest version) or a training directory
(`RUN`, its `model.keras`). The vocabulary is the model's own (the
exported labels, or the run's `label_space/`) unless another is given:
`--label_space=DIR` (from `epsilon_tf.tools.make_label_space`) or
`--names=FILE --vectors=FILE` (the same inputs as `make_label_space`).
Its vectors must have the model's word-vector width.

Images go through the backbone given by `--backbone`, `--weights`,
`--seed` and `--image_size`, which must be the ones the training features
were extracted with (`extract_features`' flags, same defaults). Instead
of images, `--features` takes a native data directory (`--split`) or an
`.npy` array [images, regions, channels].

`--server=HOST:PORT` scores through TF Serving's REST API (`POST
/v1/models/<--model_name>:predict`, signature `score_labels`, the
columnar `inputs` request; the reply's `outputs` hold the scores) instead
of loading the model here; `--model` is then not needed unless the
vocabulary is the model's own (read from its files).

The output (`--output`, `.csv` or `.json`) holds, for each image, its
`--top_k` labels, best first, with their scores and `unseen`: true for a
label the model was not trained on (not among the seen labels of the
model's own vocabulary). CSV columns: `image,rank,label,score,unseen`.
"""

import argparse
import os
import sys

from epsilon_tf.cli import common
from epsilon_tf.errors import CommandLineError

PROGRAM = "epsilon-tag"


def _parser():
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--images_dir", default=None)
    parser.add_argument("--features", default=None,
                        help="A native data directory (with --split) or an "
                        ".npy [images, regions, channels], instead of "
                        "--images_dir.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", default=None,
                        help="SavedModel version, export base or training "
                        "directory.")
    parser.add_argument("--server", default=None,
                        help="HOST:PORT of TF Serving's REST API.")
    parser.add_argument("--model_name", default="epsilon",
                        help="The served model's name (with --server).")
    parser.add_argument("--label_space", default=None,
                        help="Vocabulary: a label space directory.")
    parser.add_argument("--names", default=None,
                        help="Vocabulary: label names file (with "
                        "--vectors; see make_label_space).")
    parser.add_argument("--vectors", default=None)
    parser.add_argument("--unseen", default=None,
                        help="With --names: comma-separated unseen names.")
    parser.add_argument("--output", required=True,
                        help="tags.csv or tags.json")
    parser.add_argument("--top_k", type=int, default=5)
    parser.add_argument("--backbone", default="vgg19")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--no_progress", dest="progress",
                        action="store_false")
    parser.add_argument(common.DEBUG_FLAG, action="store_true",
                        help="Show tracebacks and TensorFlow's logs.")
    return parser


def _check_args(args):
    if (args.images_dir is None) == (args.features is None):
        raise CommandLineError(
            "Give --images_dir (images) or --features (a native data "
            "directory or .npy), one of them"
        )
    if args.images_dir is not None and not os.path.isdir(args.images_dir):
        raise CommandLineError(
            f"--images_dir: {args.images_dir} is not a directory"
        )
    if args.features is not None and not os.path.exists(args.features):
        raise CommandLineError(f"--features: not found: {args.features}")
    if args.model is None and args.server is None:
        raise CommandLineError("Give --model (or --server)")
    if args.server is not None and args.model is None and not (
        args.label_space or args.names
    ):
        raise CommandLineError(
            "--server without --model needs the vocabulary: --label_space "
            "or --names with --vectors"
        )
    if bool(args.names) != bool(args.vectors):
        raise CommandLineError("--names and --vectors go together")
    if args.label_space and args.names:
        raise CommandLineError("Give --label_space or --names, not both")
    if args.unseen is not None and not args.names:
        raise CommandLineError("--unseen goes with --names")
    for flag in ("label_space", "names", "vectors"):
        value = getattr(args, flag)
        if value and not os.path.exists(value):
            raise CommandLineError(f"--{flag}: not found: {value}")
    common.check(args.top_k >= 1, "top_k", args.top_k, "a positive integer")
    common.check(args.batch_size >= 1, "batch_size", args.batch_size,
                 "a positive integer")
    common.check(args.image_size >= 32, "image_size", args.image_size,
                 "at least 32 (pixels)")
    if not args.output.lower().endswith((".csv", ".json")):
        raise CommandLineError(
            f"--output must end in .csv or .json. Received: {args.output}"
        )
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise CommandLineError(
            f"--output: the directory {out_dir} does not exist"
        )


def main(argv=None):
    args = _parser().parse_args(argv)
    _check_args(args)
    common.prepare(["--debug"] if args.debug else [])
    # Every flag checked: now TensorFlow and the model.
    from epsilon_tf.tools.tagging import tag

    tagged = tag(args)
    print(f"Tagged {len(tagged)} images: top {args.top_k} labels each "
          f"in {args.output}")
    return 0


def run_main():
    """Console script `epsilon-tag`."""
    with common.clean_exit(PROGRAM):
        sys.exit(main())


if __name__ == "__main__":
    run_main()
