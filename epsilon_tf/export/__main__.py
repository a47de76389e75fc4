"""Re-exports a training directory as a TF Serving SavedModel version.

    python -m epsilon_tf.export --model_dir=runs/epsilon_synthetic
    python -m epsilon_tf.export --model_dir=DIR --label_set=unseen --top_k=5
    python -m epsilon_tf.export --model_dir=DIR --precision=bfloat16
    python -m epsilon_tf.export --model_dir=DIR --with_backbone \\
        --backbone=vgg19 --backbone_weights=imagenet

Writes `EXPORT_BASE/<version>/` (default `MODEL_DIR/export`, version = the
largest existing + 1) and prints its path. See docs/serving.md.
"""

import argparse
import os

from epsilon_tf.cli import common
from epsilon_tf.training import run_lock
from epsilon_tf.training.run_dir import RunDir

PROGRAM = "python -m epsilon_tf.export"


def _parser():
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description=__doc__.split("\n")[0],
    )
    parser.add_argument(
        "--model_dir",
        required=True,
        help="Training directory (model.keras or best/ checkpoints, "
        "label_space/, config.json).",
    )
    parser.add_argument(
        "--export_base",
        default=None,
        help="TF Serving model base directory (default: MODEL_DIR/export).",
    )
    parser.add_argument(
        "--version",
        type=int,
        default=None,
        help="Version number (default: the largest existing + 1).",
    )
    parser.add_argument(
        "--top_k",
        type=int,
        default=10,
        help="k of serving_default's top_k_* outputs (fixed at export).",
    )
    parser.add_argument(
        "--label_set",
        default="all",
        choices=["all", "unseen", "seen"],
        help="Vocabulary of serving_default: all (GZSL), unseen (ZSL), seen.",
    )
    parser.add_argument(
        "--with_backbone",
        action="store_true",
        help="Add the serving_images signature (encoded images in).",
    )
    parser.add_argument(
        "--backbone",
        default="vgg19",
        help="Backbone for --with_backbone (see make_backbone).",
    )
    parser.add_argument(
        "--backbone_weights",
        default="imagenet",
        help="imagenet, none (random: tests only) or a weights file path.",
    )
    parser.add_argument(
        "--image_size",
        type=int,
        default=224,
        help="Side of the square images the backbone takes.",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace an existing --version.",
    )
    parser.add_argument(
        "--no_keep_versions",
        action="store_true",
        help="Delete the earlier versions once the new one is in place.",
    )
    parser.add_argument(
        "--jit_compile",
        action="store_true",
        help="XLA-compile the numeric part of the feature signatures.",
    )
    parser.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "bfloat16"],
        help="float32 (the model's scores) or bfloat16 (faster on CPUs with "
        "AMX/AVX512-BF16, approximate; see docs/serving.md).",
    )
    parser.add_argument(
        common.DEBUG_FLAG,
        action="store_true",
        help="Show tracebacks and TensorFlow's logs.",
    )
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    common.check(args.top_k >= 1, "top_k", args.top_k, "a positive integer")
    common.check(args.version is None or args.version >= 1, "version",
                 args.version, "a positive integer")
    common.check(args.image_size >= 32, "image_size", args.image_size,
                 "at least 32 (pixels)")
    if not os.path.isdir(args.model_dir):
        raise common.CommandLineError(
            f"--model_dir: {args.model_dir} is not a training directory"
            + (" (it is a file)" if os.path.exists(args.model_dir)
               else " (not found)")
        )
    run = RunDir(args.model_dir)
    if not os.path.isdir(run.label_space):
        raise common.CommandLineError(
            f"--model_dir: {args.model_dir} is not a training directory (it "
            "has no label_space/; train.py writes one)"
        )
    # (issue 24) Not into a directory a trainer or another export works in.
    lock = run_lock.RunLock(args.model_dir, "exporting").acquire()
    try:
        return _export(args, run)
    finally:
        lock.release()


def _export(args, run):
    common.prepare(["--debug"] if args.debug else [])
    from epsilon_tf.export.backbones import make_backbone
    from epsilon_tf.export.serving import export_saved_model
    from epsilon_tf.training.checkpointing import load_training_dir

    model, space = load_training_dir(args.model_dir, verbose=True)
    backbone = None
    if args.with_backbone:
        weights = args.backbone_weights
        backbone = make_backbone(
            args.backbone,
            weights=None if weights.lower() == "none" else weights,
            image_size=args.image_size,
        )
    path = export_saved_model(
        model,
        space,
        args.export_base or run.export,
        version=args.version,
        top_k=args.top_k,
        label_set=args.label_set,
        backbone=backbone,
        keep_versions=not args.no_keep_versions,
        overwrite=args.overwrite,
        jit_compile=args.jit_compile,
        precision=args.precision,
    )
    print(path, flush=True)
    return path


if __name__ == "__main__":
    with common.clean_exit(PROGRAM):
        main()
