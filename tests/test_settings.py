"""Settings declared once: config fields, their flags, presets, checks.

The flags of train.py, eval.py and the experiments are generated from the
config dataclasses' fields (`epsilon_tf.config.settings.setting`); the
presets are plain dicts in `epsilon_tf.config.presets`; the values are
checked where the configs are built. The cases here pin what a command
line means: every flag name of the hand-written `flags.py` this replaced
(b71f529) still reaches the same field, a flagfile of those flags gives
the same configs, and the presets apply as before (dataset < model <
flags the user gave).

The flag cases run in a subprocess (absl's FLAGS is process-global): one
probe per command line kind, answering many command lines at once.
"""

import ast
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from epsilon_tf import config
from epsilon_tf.config import presets

ROOT = Path(__file__).resolve().parents[1]

_PROBE = r"""
import json, sys
from absl import flags
from epsilon_tf import flags as epsilon_flags
from epsilon_tf.config import to_dict
from epsilon_tf.errors import CommandLineError

kind, jobs = sys.argv[1], json.loads(sys.argv[2])
if kind == "train":
    epsilon_flags.define_train_flags()
else:
    from epsilon_tf.experiments import cli
    cli.define_flags()
FLAGS = flags.FLAGS
results = []
for argv in jobs:
    FLAGS.unparse_flags()
    FLAGS(["probe"] + argv)
    try:
        if kind == "train":
            nested = epsilon_flags.settings()
            out = to_dict(*nested.configs())
            out["nested"] = nested.to_dict()
            out["FLAGS"] = {"cpu_replicas": FLAGS.cpu_replicas,
                            "debug": FLAGS.debug}
            out["given_data"] = sorted(epsilon_flags.given_data_fields())
        else:
            out = cli.options()
            out["data"] = to_dict(out["data"])["DataConfig"]
    except CommandLineError as e:
        out = {"error": str(e)}
    results.append(out)
defined = sorted(f.name for module, fs in FLAGS.flags_by_module_dict().items()
                 if module.startswith("epsilon_tf") for f in fs)
print("PROBE" + json.dumps({"results": results, "defined": defined},
                           default=list))
"""


def _probe(jobs, kind="train"):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, kind, json.dumps(jobs)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("PROBE")]
    return json.loads(line[-1][len("PROBE"):])


# Every flag of train.py in the hand-written flags.py (b71f529), a value
# other than its default, and the field (or flag) it must reach.
OLD_TRAIN_FLAGS = {
    "dataset": ("nus_wide", "DataConfig.dataset", "nus_wide"),
    "data_format": ("lesa", "DataConfig.data_format", "lesa"),
    "cache_dir": ("/c", "DataConfig.cache_dir", "/c"),
    "data_dir": ("/d", "DataConfig.data_dir", "/d"),
    "train_files": ("/t/*.rec", "DataConfig.train_files", "/t/*.rec"),
    "test_files": ("/e/*.rec", "DataConfig.test_files", "/e/*.rec"),
    "label_dir": ("/l", "DataConfig.label_dir", "/l"),
    "word_vectors": ("/w.pkl", "DataConfig.word_vectors", "/w.pkl"),
    "names_file": ("/n_{split}.pkl", "DataConfig.names_file",
                   "/n_{split}.pkl"),
    "feature_shape": ("49x64", "DataConfig.feature_shape", [49, 64]),
    "skip_corrupt": ("true", "DataConfig.skip_corrupt", True),
    "k": ("4,6", "nested.evaluation.ks", [4, 6]),
    "ap_variant": ("biam_openimages", "nested.evaluation.ap_variant",
                   "biam_openimages"),
    "baseline": ("false", "nested.evaluation.baseline", False),
    "cpu_replicas": ("3", "FLAGS.cpu_replicas", 3),
    "debug": ("true", "FLAGS.debug", True),
    "model_dir": ("/runs/x", "TrainConfig.model_dir", "/runs/x"),
    "epochs": ("7", "TrainConfig.epochs", 7),
    "batch_size": ("24", "TrainConfig.batch_size", 24),
    "learning_rate": ("0.02", "TrainConfig.learning_rate", 0.02),
    "warmup_steps": ("9", "TrainConfig.warmup_steps", 9),
    "weight_decay": ("0.5", "TrainConfig.weight_decay", 0.5),
    "clip_norm": ("0", "TrainConfig.clip_norm", 0.0),
    "validation_fraction": ("0.25", "TrainConfig.validation_fraction", 0.25),
    "select_metric": ("p@6", "TrainConfig.select_metric", "p@6"),
    "shuffle_buffer": ("77", "TrainConfig.shuffle_buffer", 77),
    "seed": ("5", "TrainConfig.seed", 5),
    "checkpoint_every_steps": ("11", "TrainConfig.checkpoint_every_steps",
                               11),
    "keep_checkpoints": ("4", "TrainConfig.keep_checkpoints", 4),
    "jit_compile": ("true", "TrainConfig.jit_compile", True),
    "mixed_precision": ("true", "TrainConfig.mixed_precision", True),
    "strategy": ("tpu", "TrainConfig.strategy", "tpu"),
    "steps_per_epoch": ("13", "TrainConfig.steps_per_epoch", 13),
    "export": ("false", "TrainConfig.export", False),
    "export_top_k": ("3", "TrainConfig.export_top_k", 3),
    "export_precision": ("bfloat16", "TrainConfig.export_precision",
                         "bfloat16"),
    "verbose": ("0", "TrainConfig.verbose", 0),
    "deterministic": ("false", "TrainConfig.deterministic", False),
    "input_sharding": ("batches", "TrainConfig.input_sharding", "batches"),
    "summary_images": ("0", "TrainConfig.summary_images", 0),
    "pr_curve_labels": ("2", "TrainConfig.pr_curve_labels", 2),
    "progress_every_seconds": ("2.5", "TrainConfig.progress_every_seconds",
                               2.5),
    "model": ("biam", "ModelConfig.model", "biam"),
    "lesa_attentions": ("4", "ModelConfig.lesa_attentions", 4),
    "lesa_conv": ("false", "ModelConfig.lesa_conv", False),
    "biam_channels": ("32", "ModelConfig.biam_channels", 32),
    "biam_heads": ("2", "ModelConfig.biam_heads", 2),
    "biam_top_k": ("3", "ModelConfig.biam_top_k", 3),
    "hidden_dim": ("96", "ModelConfig.hidden_dim", 96),
    "num_prompts": ("5", "ModelConfig.num_prompts", 5),
    "gpa_layers": ("3", "ModelConfig.gpa_layers", 3),
    "gpa_heads": ("6", "ModelConfig.gpa_heads", 6),
    "grouping": ("groups", "ModelConfig.grouping", "groups"),
    "num_global": ("2", "ModelConfig.num_global", 2),
    "gfp_blocks": ("1", "ModelConfig.gfp_blocks", 1),
    "token_norm": ("none", "ModelConfig.token_norm", "none"),
    "gfp_input": ("features", "ModelConfig.gfp_input", "features"),
    "gfp_pooled_norm": ("true", "ModelConfig.gfp_pooled_norm", True),
    "branches": ("gfp", "ModelConfig.branches", "gfp"),
    "fusion": ("fixed", "ModelConfig.fusion", "fixed"),
    "fusion_init": ("0.7", "ModelConfig.fusion_init", 0.7),
    "fusion_temperature": ("true", "ModelConfig.fusion_temperature", True),
    "token_dropout": ("0.3", "ModelConfig.token_dropout", 0.3),
    "dropout": ("0.2", "ModelConfig.dropout", 0.2),
    "normalize_semantic": ("false", "ModelConfig.normalize_semantic", False),
    "score_scale": ("2.5", "ModelConfig.score_scale", 2.5),
    "loss": ("smooth", "LossConfig.form", "smooth"),
    "margin": ("0.5", "LossConfig.margin", 0.5),
    "diversity_weight": ("0.3", "LossConfig.diversity_weight", 0.3),
    "lesa_dist_weight": ("0.2", "LossConfig.lesa_dist_weight", 0.2),
    "lesa_global_weight": ("0.5", "LossConfig.lesa_global_weight", 0.5),
    "lesa_span_weight": ("0.25", "LossConfig.lesa_span_weight", 0.25),
    "lesa_global_margin": ("0.1", "LossConfig.lesa_global_margin", 0.1),
    "label_weight": ("1.5", "LossConfig.label_weight", 1.5),
    "branch_weight": ("0.75", "LossConfig.branch_weight", 0.75),
}
# The flags train.py gained (issue 21; issue 22: GFP's linear path, the
# step budget and the scale of the path's warm start).
NEW_TRAIN_FLAGS = {"preset", "print_config", "gfp_linear", "min_steps",
                   "gfp_linear_scale"}


def _get(result, where):
    node = result
    for part in where.split("."):
        node = node[part]
    return node


def test_every_old_train_flag_reaches_its_field():
    assert len(OLD_TRAIN_FLAGS) == 75
    # --label_weight needs the hinge loss: --loss goes on its own line.
    together = [f"--{n}={v}" for n, (v, _, _) in OLD_TRAIN_FLAGS.items()
                if n != "loss"]
    alone = [f"--loss={OLD_TRAIN_FLAGS['loss'][0]}"]
    probe = _probe([together, alone])
    assert set(probe["defined"]) == set(OLD_TRAIN_FLAGS) | NEW_TRAIN_FLAGS
    first, second = probe["results"]
    assert "error" not in first, first
    lost = []
    for name, (text, where, want) in OLD_TRAIN_FLAGS.items():
        got = _get(second if name == "loss" else first, where)
        if got != want:
            lost.append(f"--{name}={text} gave {where}={got!r}")
    assert not lost, "\n".join(lost)
    # One stored shape: the data's is also the model's input.
    assert first["ModelConfig"]["feature_shape"] == [49, 64]
    assert first["given_data"] == sorted(
        f.name for f in dataclasses.fields(config.DataConfig))


# Every flag of `python -m epsilon_tf.experiments` that is not a data flag
# (b71f529), a value, and the option it must reach.
OLD_EXPERIMENT_FLAGS = {
    "output_dir": ("/out", "/out"),
    "seeds": ("3,4", [3, 4]),
    "epochs": ("2", 2),
    "batch_size": ("8", 8),
    "steps_per_epoch": ("5", 5),
    "prompts": ("2,4", [2, 4]),
    "regularizer_weights": ("0,0.5", [0.0, 0.5]),
    "figure_images": ("2", 2),
    "quick": ("true", True),
    "jobs": ("1", 1),
    "verbose": ("0", 0),
}


def test_every_old_experiment_flag_reaches_its_option():
    given = [f"--{n}={v}" for n, (v, _) in OLD_EXPERIMENT_FLAGS.items()]
    data = ["--dataset=nus_like", "--feature_shape=7x8", "--k=2",
            "--ap_variant=biam_openimages", "--debug"]
    quick = ["--output_dir=/q", "--quick"]
    probe = _probe([given + data, quick, ["--seeds=1"]], kind="experiments")
    options, quick_options, missing = probe["results"]
    data_names = {f.name for f in dataclasses.fields(config.DataConfig)}
    assert set(probe["defined"]) == (
        set(OLD_EXPERIMENT_FLAGS) | data_names | {"k", "ap_variant", "debug"}
    )
    for name, (text, want) in OLD_EXPERIMENT_FLAGS.items():
        assert options[name] == want, (name, text, options[name])
    assert options["data"]["dataset"] == "nus_like"
    assert options["data"]["feature_shape"] == [7, 8]
    assert options["ks"] == [2]
    assert options["variant"] == "biam_openimages"
    # --quick's Figure 3 sweeps, unless given.
    assert quick_options["prompts"] == [1, 7]
    assert quick_options["regularizer_weights"] == [0.0, 0.1]
    assert quick_options["epochs"] is None  # the runner's QUICK_EPOCHS
    assert missing == {"error": "--output_dir is required"}


def test_unset_flags_give_the_defaults_or_the_preset():
    configs = _probe([[]])["results"][0]
    wrong = []
    for cls in (config.ModelConfig, config.LossConfig, config.TrainConfig,
                config.DataConfig):
        for f in dataclasses.fields(cls):
            want = presets.RELEASE.get(f.name, getattr(cls(), f.name))
            want = list(want) if isinstance(want, tuple) else want
            got = configs[cls.__name__][f.name]
            if got != want:
                wrong.append(f"{cls.__name__}.{f.name}={got!r}, "
                             f"expected {want!r}")
    assert not wrong, "\n".join(wrong)
    # The built-in synthetic world trains with the release preset since
    # session 30; a few of its values, written out.
    assert configs["ModelConfig"]["hidden_dim"] == 128
    assert configs["ModelConfig"]["gfp_linear"] == "eszsl"
    assert configs["LossConfig"]["form"] == "listwise"
    assert configs["TrainConfig"]["epochs"] == 4
    assert configs["nested"]["presets"] == ["release"]


def test_presets_their_precedence_and_the_rules():
    jobs = {
        "release": ["--dataset=nus_like"],
        "lesa": ["--dataset=nus_like", "--model=lesa"],
        "biam": ["--dataset=nus_like", "--model=biam"],
        "given": ["--dataset=nus_like", "--label_weight=0.5",
                  "--model=lesa", "--batch_size=8"],
        "smooth": ["--dataset=nus_like", "--loss=smooth"],
        "gpa": ["--dataset=nus_like", "--branches=gpa"],
        "gpa_features": ["--dataset=nus_like", "--branches=gpa",
                         "--gfp_input=features"],
        "open_images": ["--dataset=open_images"],
        "k": ["--dataset=open_images", "--k=5,7"],
        "preset": ["--dataset=nus_like", "--preset=synthetic"],
        "quick": ["--preset=synthetic,quick"],
        "bad_preset": ["--preset=fast"],
    }
    out = dict(zip(jobs, _probe(list(jobs.values()))["results"]))
    # Release-shaped data trains Epsilon with the per-label ranking term.
    assert out["release"]["LossConfig"]["label_weight"] == 2.0
    assert out["release"]["TrainConfig"]["learning_rate"] == 3e-3
    assert out["release"]["ModelConfig"]["token_norm"] == "standardize"
    assert out["release"]["nested"]["presets"] == ["release"]
    assert out["release"]["LossConfig"]["form"] == "listwise"
    # LESA and BiAM keep their published ranking loss, batch and lr.
    for model in ("lesa", "biam"):
        assert out[model]["LossConfig"]["form"] == "hinge"
        assert out[model]["LossConfig"]["label_weight"] == 0.0
        assert out[model]["TrainConfig"]["batch_size"] == 32
        assert out[model]["TrainConfig"]["learning_rate"] == 1e-3
        assert out[model]["ModelConfig"]["hidden_dim"] == 128  # release
        assert out[model]["nested"]["presets"] == ["release", model]
    # A flag the user gives wins over both presets.
    assert out["given"]["LossConfig"]["label_weight"] == 0.5
    assert out["given"]["TrainConfig"]["batch_size"] == 8
    # --loss=smooth drops the preset's hinge term.
    assert out["smooth"]["LossConfig"]["form"] == "smooth"
    assert out["smooth"]["LossConfig"]["label_weight"] == 0.0
    # GPA alone: GFP's settings back to their defaults unless given.
    assert out["gpa"]["ModelConfig"]["gfp_input"] == "tokens"
    assert out["gpa"]["ModelConfig"]["gfp_pooled_norm"] is False
    assert out["gpa_features"]["ModelConfig"]["gfp_input"] == "features"
    assert out["gpa_features"]["ModelConfig"]["gfp_pooled_norm"] is True
    # select_metric: F1 at the first K.
    assert out["release"]["TrainConfig"]["select_metric"] == "f1@3"
    assert out["open_images"]["TrainConfig"]["select_metric"] == "f1@10"
    assert out["k"]["TrainConfig"]["select_metric"] == "f1@5"
    # --preset replaces the dataset's choice.
    assert out["preset"]["ModelConfig"]["token_norm"] == "layer"
    assert out["preset"]["TrainConfig"]["epochs"] == 10
    assert out["preset"]["LossConfig"]["label_weight"] == 0.0
    assert out["quick"]["ModelConfig"]["hidden_dim"] == 16
    assert out["quick"]["TrainConfig"]["epochs"] == 1
    assert out["quick"]["TrainConfig"]["steps_per_epoch"] == 3
    assert out["bad_preset"]["error"] == (
        "--preset must be comma-separated names of synthetic, release, "
        "lesa, biam, quick. Received: --preset=fast"
    )


def test_value_checks_name_the_flag():
    jobs = [["--epochs=0"], ["--dropout=1"], ["--gpa_layers=0"],
            ["--hidden_dim=10", "--gpa_heads=3"],
            ["--label_weight=1", "--loss=smooth"],
            ["--select_metric=f1@7"], ["--learning_rate=nan"],
            ["--dataset=nus_wide", "--data_format=lesa",
             "--train_files=/t"]]
    errors = [r.get("error") for r in _probe(jobs)["results"]]
    assert errors == [
        "--epochs must be a positive integer. Received: --epochs=0",
        "--dropout must be a number in [0, 1). Received: --dropout=1.0",
        None,  # the release preset's own value (no GPA encoder block)
        "--hidden_dim (10) must be divisible by --gpa_heads (3)",
        "--label_weight is a hinge term; it needs --loss=hinge or "
        "--loss=listwise. Received: --loss=smooth",
        "--select_metric must be one of map, p@3, r@3, f1@3, p@5, r@5, f1@5 "
        "(the validation metrics for --k). Received: --select_metric=f1@7",
        "--learning_rate must be a positive number. "
        "Received: --learning_rate=nan",
        "--data_format=lesa needs --test_files (glob patterns of the "
        "release's feature files)",
    ]


def test_the_configs_check_their_values_without_flags():
    with pytest.raises(config.SettingError, match=re.escape(
            "--batch_size must be a positive integer. "
            "Received: --batch_size=0")):
        config.TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match=re.escape(
            "`token_norm` must be one of ('layer', 'standardize', 'none'). "
            "Received: --token_norm='batch'")):
        config.ModelConfig(token_norm="batch")
    with pytest.raises(ValueError, match=re.escape("--loss=smooth")):
        config.LossConfig(form="smooth", label_weight=1.0)
    with pytest.raises(ValueError, match="--k must be comma-separated"):
        config.EvalConfig(ks=(0,))
    # The same rules without a command line.
    lesa = config.experiment_config({"dataset": "nus_like", "model": "lesa"})
    assert lesa.train.batch_size == 32
    assert lesa.loss.label_weight == 0.0


# A flagfile written for the hand-written flags (b71f529), and the configs
# train.py built from it then (the flags were read then as now).
FLAGFILE = """\
# A release-shaped Epsilon run.
--dataset=nus_wide
--data_format=lesa
--train_files=/data/nus/train_*.tfrecords
--test_files=/data/nus/test.tfrecords
--label_dir=/data/nus/labels
--word_vectors=/data/nus/wv.pkl
--feature_shape=196x512
--branches=gpa
--batch_size=16
--loss=hinge
--k=3,5
--select_metric=map
--nodeterministic
--model_dir=/runs/a
"""
FLAGFILE_CONFIGS = {
    "ModelConfig": {
        "model": "epsilon", "feature_shape": [196, 512],
        "token_norm": "standardize", "hidden_dim": 128, "embedding_dim": 300,
        "num_prompts": 7, "gpa_layers": 0, "gpa_heads": 4,
        "grouping": "groups", "num_global": 1, "gfp_blocks": 0,
        "gfp_input": "tokens", "gfp_pooled_norm": False, "gfp_linear": "none",
        "gfp_linear_scale": 0.0, "branches": "gpa",
        "fusion": "learned", "fusion_init": 0.3, "fusion_temperature": False,
        "token_dropout": 0.1, "dropout": 0.1, "normalize_semantic": True,
        "score_scale": 5.0, "lesa_attentions": 10, "lesa_conv": True,
        "biam_channels": 256, "biam_heads": 8, "biam_top_k": 6,
    },
    "LossConfig": {
        "form": "hinge", "margin": 1.0, "diversity_weight": 0.1,
        "lesa_dist_weight": 0.1, "lesa_global_weight": 0.032,
        "lesa_span_weight": 0.0566, "lesa_global_margin": 0.0,
        "label_weight": 2.0, "branch_weight": 0.0,
    },
    "TrainConfig": {
        # The release preset's step budget (issue 22): no --epochs given.
        "model_dir": "/runs/a", "epochs": 4, "min_steps": 300,
        "batch_size": 16,
        "learning_rate": 0.003, "warmup_steps": 50, "weight_decay": 0.01,
        "clip_norm": 5.0, "validation_fraction": 0.1, "select_metric": "map",
        "shuffle_buffer": 1024, "seed": 0, "checkpoint_every_steps": 0,
        "keep_checkpoints": 3, "jit_compile": False, "strategy": "default",
        "steps_per_epoch": None, "export": True, "export_top_k": 10,
        "export_precision": "float32", "verbose": 1, "deterministic": False,
        "input_sharding": "files", "summary_images": 4,
        "pr_curve_labels": 8, "mixed_precision": False,
        "progress_every_seconds": 30.0,
    },
    "DataConfig": {
        "dataset": "nus_wide", "data_format": "lesa", "cache_dir": "cache",
        "data_dir": None, "train_files": "/data/nus/train_*.tfrecords",
        "test_files": "/data/nus/test.tfrecords",
        "label_dir": "/data/nus/labels", "word_vectors": "/data/nus/wv.pkl",
        "feature_shape": [196, 512], "skip_corrupt": False,
        "names_file": None,
    },
}


def test_an_old_flagfile_gives_the_same_configs(tmp_path):
    path = tmp_path / "run.flags"
    path.write_text(FLAGFILE)
    got = _probe([[f"--flagfile={path}"]])["results"][0]
    for section, want in FLAGFILE_CONFIGS.items():
        assert got[section] == want, section
    # Flags from a flagfile count as given (absl's `.present`): the data
    # flags override a run's recorded data in eval.py.
    assert got["given_data"] == sorted([
        "dataset", "data_format", "train_files", "test_files", "label_dir",
        "word_vectors", "feature_shape",
    ])


def test_print_config_prints_the_nested_settings_and_trains_nothing(
        tmp_path):
    model_dir = tmp_path / "run"
    code = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('TF', 'tensorflow' in sys.modules))\n"
        "sys.argv = ['train.py', '--print_config', '--dataset=nus_like',\n"
        f"    '--model=lesa', '--epochs=2', '--model_dir={model_dir}']\n"
        "runpy.run_path('train.py', run_name='__main__')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    text, tf_line = done.stdout.rsplit("TF", 1)
    assert tf_line.strip() == "False"  # exits before TensorFlow is imported
    printed = json.loads(text)
    assert list(printed) == ["model", "loss", "data", "trainer", "runtime",
                             "export", "summary", "evaluation", "presets"]
    assert printed["presets"] == ["release", "lesa"]
    assert printed["model"]["model"] == "lesa"
    assert printed["model"]["token_norm"] == "standardize"
    assert printed["trainer"]["epochs"] == 2
    assert printed["trainer"]["batch_size"] == 32
    assert printed["runtime"]["model_dir"] == str(model_dir)
    assert printed["export"]["export_top_k"] == 10
    assert printed["evaluation"]["ks"] is None
    assert not model_dir.exists()


def test_presets_are_plain_dicts_in_one_module():
    assert set(presets.PRESETS) == {"synthetic", "release", "lesa", "biam",
                                    "quick"}
    settings = config.setting_defaults()
    sweeps = {"prompts", "regularizer_weights"}
    for name, preset in presets.PRESETS.items():
        assert type(preset) is dict, name
        assert json.loads(json.dumps(preset)) == {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in preset.items()
        }
        assert set(preset) <= set(settings) | sweeps, name
    # The values of b71f529's RELEASE_PRESET, SYNTHETIC_PRESET,
    # MODEL_PRESETS and the experiments' quick settings.
    assert presets.SYNTHETIC == {"hidden_dim": 128, "gpa_heads": 4,
                                 "batch_size": 64, "epochs": 10,
                                 "learning_rate": 1e-3}
    # Their own loss, the hinge, whatever the release preset's.
    assert presets.LESA == presets.BIAM == {
        "batch_size": 32, "learning_rate": 1e-3, "label_weight": 0.0,
        "form": "hinge"}
    assert presets.RELEASE["label_weight"] == 2.0
    assert len(presets.RELEASE) == 18
    # Issue 22: GFP's linear path from ESZSL, a 300-step budget; session
    # 27: the listwise loss.
    assert presets.RELEASE["gfp_linear"] == "eszsl"
    assert presets.RELEASE["min_steps"] == 300
    assert presets.RELEASE["form"] == "listwise"
    # Session 28: the warm start at 3x the Glorot RMS.
    assert presets.RELEASE["gfp_linear_scale"] == 3.0
    assert presets.QUICK_MODEL == dict(hidden_dim=16, gpa_heads=2,
                                       gfp_blocks=1, biam_channels=16,
                                       biam_heads=2)
    assert presets.QUICK_SWEEPS == {"prompts": (1, 7),
                                    "regularizer_weights": (0.0, 0.1)}
    assert (presets.DEFAULT_EPOCHS, presets.QUICK_EPOCHS,
            presets.QUICK_STEPS) == (4, 1, 3)
    # The family of worlds (issue 22) is reported at NUS-WIDE's K.
    family = ("flickr_vgg_mild", "resnet_scenes", "web_crowded",
              "vit_tokens", "product_deep")
    assert presets.WORLD_FAMILY == family
    assert presets.EVAL_KS == {"synthetic": (3, 5), "nus_like": (3, 5),
                               "nus_wide": (3, 5), "open_images": (10, 20),
                               **{name: (3, 5) for name in family}}
    assert config.RELEASE_PRESET is presets.RELEASE
    # No other module of the package writes a preset or a K table.
    names = re.compile(r"PRESET|QUICK_MODEL|QUICK_SWEEPS|EVAL_KS")
    elsewhere = []
    for path in (ROOT / "epsilon_tf").rglob("*.py"):
        if path.name == "presets.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and isinstance(
                    node.value, ast.Dict) and any(
                    isinstance(t, ast.Name) and names.search(t.id)
                    for t in node.targets):
                elsewhere.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not elsewhere, elsewhere


def test_settings_import_without_tensorflow():
    code = ("import sys, epsilon_tf.config, epsilon_tf.config.presets, "
            "epsilon_tf.flags, epsilon_tf.data.catalog; "
            "print('tensorflow' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def _documented(cls):
    """The field names of a config dataclass's `Args:` docstring section."""
    text = cls.__doc__.split("Args:", 1)[1]
    return {name.strip() for entry in re.findall(r"^ {8}(\w[\w, ]*):", text,
                                                 flags=re.M)
            for name in entry.split(",")}


def test_every_setting_is_documented():
    for cls in config.SETTING_CLASSES.values():
        fields = {f.name for f in dataclasses.fields(cls)}
        assert _documented(cls) == fields, cls.__name__
