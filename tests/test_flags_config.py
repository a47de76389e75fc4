"""The flags of train.py and the config dataclasses declare the same settings.

`epsilon_tf/config.py` is the source of every setting: its dataclasses give
the defaults and, in their `Args:` docstring sections, the documentation.
`epsilon_tf/flags.py` restates each as a flag. The rules checked here:

1. Each user-settable field (`ModelConfig`, `LossConfig`, `TrainConfig`,
   `DataConfig`) has a flag, and each flag of train.py a field, except
   the exceptions listed below with their reason. A flag is named as its
   field (`FLAG_TO_FIELDS` lists the renamed ones).
2. The flag's default is the dataclass default (not a preset's value:
   `SYNTHETIC_PRESET`, `RELEASE_PRESET` and `MODEL_PRESETS` replace the
   defaults of unset flags after parsing, in `flags.train_configs`).
3. Every flag reaches its field: with every flag given a non-default value,
   `train_configs()` returns configs that hold those values.
4. Every field is documented in its dataclass's `Args:` section, and the
   flag's help agrees with that entry on what a user acts on. The flag's
   help is a one-line summary for `--help`, the entry the full
   documentation, so the words differ; but an enum flag's choices are
   exactly the quoted values the entry names, and an entry that gives the
   value 0 a meaning ("0 disables", "0: none") has a flag help that says
   what 0 does.
5. The presets only name fields that have a flag, and with no flag given
   `train_configs()` returns the dataclass defaults except where the
   dataset's preset says otherwise.
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

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = (
    config.ModelConfig, config.LossConfig, config.TrainConfig,
    config.DataConfig,
)

# Flag name -> the (config class, field) pairs it sets, where they differ
# from "the field of the same name".
FLAG_TO_FIELDS = {
    "loss": (("LossConfig", "form"),),
    # One stored shape: the data's, which is also the model's input.
    "feature_shape": (("DataConfig", "feature_shape"),
                      ("ModelConfig", "feature_shape")),
}

# Flags of train.py that are not config fields, and why.
FLAGS_WITHOUT_FIELD = {
    "k": "evaluation option (the K of P/R/F1@K), read by `ks_value`",
    "ap_variant": "evaluation option (which protocol), shared with eval.py",
    "cpu_replicas": "runtime plumbing: splits the CPU into logical devices "
                    "before TensorFlow starts (train.py)",
    "baseline": "train.py also fits the ESZSL baseline; not a training "
                "setting of the model",
    "debug": "command-line plumbing: tracebacks and TensorFlow logs",
}

# Config fields without a flag of their own, and why.
FIELDS_WITHOUT_FLAG = {
    ("ModelConfig", "embedding_dim"): "taken from the label space's word "
                                      "vectors when the model is built",
}

_PROBE = r"""
import json, sys
from absl import flags
from epsilon_tf import flags as epsilon_flags

epsilon_flags.define_train_flags()
FLAGS = flags.FLAGS
FLAGS(["train.py"])
defined = FLAGS.flags_by_module_dict()["epsilon_tf.flags"]
info = {}
for flag in defined:
    info[flag.name] = {
        "default": flag.default,
        "help": flag.help,
        "type": flag.flag_type(),
        "choices": list(getattr(flag.parser, "enum_values", None) or []),
    }
result = {"flags": info}
if len(sys.argv) > 1:
    FLAGS.unparse_flags()
    FLAGS(["train.py"] + json.loads(sys.argv[1]))
    model, loss, train, data = epsilon_flags.train_configs()
    from epsilon_tf.config import to_dict
    result["configs"] = to_dict(model, loss, train, data)
print("PROBE" + json.dumps(result, default=list))
"""


def _probe(argv=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-c", _PROBE]
    if argv is not None:
        command.append(json.dumps(argv))
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("PROBE")]
    return json.loads(line[-1][len("PROBE"):])


@pytest.fixture(scope="module")
def defined_flags():
    return _probe()["flags"]


def _fields_of(flag):
    if flag in FLAG_TO_FIELDS:
        return FLAG_TO_FIELDS[flag]
    return tuple(
        (cls.__name__, flag) for cls in CONFIGS
        if flag in {f.name for f in dataclasses.fields(cls)}
    )


def _all_fields():
    return {(cls.__name__, f.name) for cls in CONFIGS
            for f in dataclasses.fields(cls)}


def _default(cls_name, field):
    cls = getattr(config, cls_name)
    return getattr(cls(), field)


def _documented(cls):
    """{field: its `Args:` entry} of a config dataclass's docstring."""
    lines = cls.__doc__.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    entries, current, indent = {}, None, None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        if indent is None:
            indent = width
        if width < indent:
            break
        match = re.match(r"([\w, ]+):\s*(.*)", line.strip())
        if width == indent and match:
            current = [match.group(2)]
            for name in match.group(1).split(","):
                entries[name.strip()] = current
        elif current is not None:
            current.append(line.strip())
    return {name: " ".join(text) for name, text in entries.items()}


def test_every_flag_has_a_field(defined_flags):
    orphans = [name for name in defined_flags
               if not _fields_of(name) and name not in FLAGS_WITHOUT_FIELD]
    assert not orphans, f"flags without a config field: {orphans}"
    stale = [name for name in FLAGS_WITHOUT_FIELD
             if name not in defined_flags or _fields_of(name)]
    assert not stale, f"listed as field-less but not: {stale}"


def test_every_field_has_a_flag(defined_flags):
    covered = {pair for name in defined_flags for pair in _fields_of(name)}
    missing = _all_fields() - covered - set(FIELDS_WITHOUT_FLAG)
    assert not missing, f"config fields without a flag: {sorted(missing)}"
    assert not set(FIELDS_WITHOUT_FLAG) & covered


def _as_field_value(flag, value):
    if flag == "feature_shape" and isinstance(value, str):
        return [int(v) for v in value.lower().split("x")]
    return list(value) if isinstance(value, tuple) else value


def test_flag_defaults_are_the_dataclass_defaults(defined_flags):
    wrong = []
    for name, flag in defined_flags.items():
        for cls_name, field in _fields_of(name):
            expected = _as_field_value(name, _default(cls_name, field))
            actual = _as_field_value(name, flag["default"])
            if actual != expected or type(actual) is not type(expected):
                wrong.append(f"--{name}={actual!r} but "
                             f"{cls_name}.{field}={expected!r}")
    assert not wrong, "\n".join(wrong)


def _other_value(flag):
    default, kind = flag["default"], flag["type"]
    if kind == "bool":
        return str(not default).lower()
    if flag["choices"]:
        return next(c for c in flag["choices"] if c != default)
    if kind == "int":
        return str(2 if default is None else default + 1)
    if kind == "float":
        return repr(default + 0.25)
    return "x_" + str(default)


def test_every_flag_reaches_its_field(defined_flags):
    given = {}
    for name, flag in defined_flags.items():
        if name in FLAGS_WITHOUT_FIELD:
            continue
        given[name] = "3x4" if name == "feature_shape" else _other_value(flag)
    configs = _probe([f"--{n}={v}" for n, v in given.items()])["configs"]
    lost = []
    for name, text in given.items():
        for cls_name, field in _fields_of(name):
            got = configs[cls_name][field]
            if name == "feature_shape":
                want = [3, 4]
            elif defined_flags[name]["type"] in ("int", "float", "bool"):
                want = ast.literal_eval(text.capitalize()
                                        if text in ("true", "false")
                                        else text)
            else:
                want = text
            if got != want:
                lost.append(f"--{name}={text} gave {cls_name}.{field}={got!r}")
    assert not lost, "\n".join(lost)


def test_every_field_is_documented():
    undocumented = [
        f"{cls.__name__}.{f.name}" for cls in CONFIGS
        for f in dataclasses.fields(cls) if f.name not in _documented(cls)
    ]
    assert not undocumented, undocumented
    extra = [f"{cls.__name__}.{name}" for cls in CONFIGS
             for name in _documented(cls)
             if name not in {f.name for f in dataclasses.fields(cls)}]
    assert not extra, f"documented but not fields: {extra}"


def _entry(cls_name, field):
    return _documented(getattr(config, cls_name))[field]


def test_enum_choices_are_the_documented_values(defined_flags):
    enums = [n for n, f in defined_flags.items() if f["choices"]]
    assert {"model", "dataset", "strategy", "loss"} <= set(enums)
    wrong = []
    for name, flag in defined_flags.items():
        if not flag["choices"]:
            continue
        for cls_name, field in _fields_of(name):
            quoted = set(re.findall(r'"([\w@]+)"', _entry(cls_name, field)))
            if quoted != set(flag["choices"]):
                wrong.append(f"--{name} {sorted(flag['choices'])} vs "
                             f"{cls_name}.{field} {sorted(quoted)}")
    assert not wrong, "\n".join(wrong)


_ZERO = re.compile(r"\b0\b")


def test_the_meaning_of_zero_is_in_the_flag_help(defined_flags):
    missing = []
    for name, flag in defined_flags.items():
        for cls_name, field in _fields_of(name):
            if _ZERO.search(_entry(cls_name, field)) and flag["type"] in (
                "int", "float"
            ) and not _ZERO.search(flag["help"]):
                missing.append(f"--{name}: {flag['help']!r}")
    assert not missing, "\n".join(missing)


def test_every_flag_has_help(defined_flags):
    assert all(f["help"].strip() for f in defined_flags.values())


def test_presets_name_flagged_fields(defined_flags):
    from epsilon_tf import flags as epsilon_flags

    presets = {
        "SYNTHETIC_PRESET": epsilon_flags.SYNTHETIC_PRESET,
        "RELEASE_PRESET": config.RELEASE_PRESET,
        **{f"MODEL_PRESETS[{k}]": v
           for k, v in epsilon_flags.MODEL_PRESETS.items()},
    }
    unknown = [f"{name}: {key}" for name, preset in presets.items()
               for key in preset
               if key not in defined_flags or not _fields_of(key)]
    assert not unknown, unknown


def test_unset_flags_give_the_defaults_or_the_preset():
    from epsilon_tf import flags as epsilon_flags

    configs = _probe([])["configs"]
    preset = epsilon_flags.SYNTHETIC_PRESET  # --dataset=synthetic
    wrong = []
    for cls_name, field in sorted(_all_fields()):
        want = preset.get(field, _default(cls_name, field))
        want = list(want) if isinstance(want, tuple) else want
        if configs[cls_name][field] != want:
            wrong.append(f"{cls_name}.{field}={configs[cls_name][field]!r}, "
                         f"expected {want!r}")
    assert not wrong, "\n".join(wrong)


def test_release_preset_and_the_baselines_own_loss():
    # Release-shaped data trains Epsilon with the per-label ranking term;
    # LESA and BiAM keep their published ranking loss (and batch, lr); a
    # flag the user gives wins over both presets.
    epsilon = _probe(["--dataset=nus_like"])["configs"]
    assert epsilon["LossConfig"]["label_weight"] == 2.0
    assert epsilon["TrainConfig"]["learning_rate"] == 3e-3
    for model in ("lesa", "biam"):
        baseline = _probe(["--dataset=nus_like", f"--model={model}"])
        assert baseline["configs"]["LossConfig"]["label_weight"] == 0.0
        assert baseline["configs"]["TrainConfig"]["batch_size"] == 32
    given = _probe(["--dataset=nus_like", "--label_weight=0.5"])["configs"]
    assert given["LossConfig"]["label_weight"] == 0.5


def test_smooth_loss_drops_the_presets_hinge_term():
    configs = _probe(["--dataset=nus_like", "--loss=smooth"])["configs"]
    assert configs["LossConfig"]["form"] == "smooth"
    assert configs["LossConfig"]["label_weight"] == 0.0
