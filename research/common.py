"""What the exploration scripts on the label-held-out task share.

`tune_release_shaped` writes the task under `--work_dir`;
`diagnose_release_shaped` and `probe_release_shaped` read it from there
and cache their arrays beside it. Every path is an argument; the default
work directory is `cache/research` under the repository root (ignored by
git, emptied by `make clean`).
"""

import ast
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORK_DIR = os.path.join(REPO_ROOT, "cache", "research")
# The task the recorded diagnosis and probe figures used.
TUNE_MAX_TRAIN = 4000


def held_out_dir(work_dir, max_train, seed):
    """The directory of `tune_release_shaped`'s label-held-out task."""
    return os.path.join(work_dir, f"heldout-{max_train}-{seed}")


def add_work_dir_argument(parser):
    """`--work_dir`: where the task, the runs and the caches are written."""
    parser.add_argument(
        "--work_dir", default=DEFAULT_WORK_DIR,
        help="Directory of the held-out task, the runs and the array "
             "caches (default: cache/research under the repository root).",
    )


def add_held_out_arguments(parser, example):
    """The run specs, `--work_dir`, `--task_dir` and `--arrays` of the
    scripts that explore `tune_release_shaped`'s label-held-out task."""
    parser.add_argument("runs", nargs="*",
                        help=f"NAME:{{settings}}, e.g. \"{example}\"")
    add_work_dir_argument(parser)
    parser.add_argument(
        "--task_dir", default=None,
        help="The held-out task (default: the one of --max_train=4000, "
             "seed 0, under --work_dir).",
    )
    parser.add_argument(
        "--arrays", default=None,
        help="Cache of the task's arrays (default: "
             "WORK_DIR/diag_arrays.npz).",
    )


def held_out_paths(args):
    """`(task_dir, arrays)` of parsed `add_held_out_arguments` flags."""
    task_dir = args.task_dir or held_out_dir(args.work_dir, TUNE_MAX_TRAIN, 0)
    arrays = args.arrays or os.path.join(args.work_dir, "diag_arrays.npz")
    return task_dir, arrays


def run_specs(runs):
    """[(name, settings dict)] of "NAME:{python dict}" arguments."""
    specs = []
    for run in runs:
        name, settings = run.split(":", 1) if ":" in run else (run, "{}")
        specs.append((name, ast.literal_eval(settings)))
    return specs
