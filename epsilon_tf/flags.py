"""Command-line flags of train.py and eval.py; the only module reading FLAGS.

The flags are generated from the config dataclasses' fields (`define_fields`:
a field's name or `flag`, its default, its help and choices, see
`epsilon_tf.config.settings.setting`), read into the typed configs once
(`settings`, `train_configs`, `data_config`) and the values are passed on
as arguments. The values are checked where the configs are built; a
failed check is a `CommandLineError` naming the flag and the value.
`--flagfile=FILE` works for every flag.
"""

import dataclasses
import json
import os

from absl import flags

from epsilon_tf.config import (
    SETTING_CLASSES,
    DataConfig,
    EvalConfig,
    SettingError,
    experiment_config,
    presets,
)
from epsilon_tf.config.settings import flag_name, has_flag, value_type
from epsilon_tf.data.precheck import check_data_config
from epsilon_tf.errors import CommandLineError

FLAGS = flags.FLAGS
_DEFINE = {
    str: flags.DEFINE_string,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    bool: flags.DEFINE_bool,
}


def define_fields(cls, names=None):
    """Defines a flag for each setting of the dataclass `cls`.

    Args:
        cls: a config dataclass whose fields are declared with `setting`.
        names: the fields to define (None: every field with a flag).
    """
    for field in dataclasses.fields(cls):
        if not has_flag(field) or (names and field.name not in names):
            continue
        meta = field.metadata
        default, kind = field.default, value_type(field)
        if meta["show"]:
            default, kind = meta["show"](default), str
        if meta["choices"]:
            flags.DEFINE_enum(flag_name(field), default,
                              list(meta["choices"]), meta["help"])
        else:
            _DEFINE[kind](flag_name(field), default, meta["help"])


def define_options(specs):
    """Defines flags that are no config field: (type, name, default, help)."""
    for kind, name, default, help_text in specs:
        _DEFINE[kind](name, default, help_text)


def define_data_flags():
    define_fields(DataConfig)


def define_eval_flags():
    define_fields(EvalConfig, ("ks", "ap_variant"))


def define_cli_flags():
    """`--debug` (tracebacks and TensorFlow logs back on)."""
    define_options([(
        bool, "debug", False,
        "Show the Python traceback of an error and TensorFlow's C++ logs "
        "(same as EPSILON_TRACEBACK=1 EPSILON_TF_LOGS=1).",
    )])


_TRAIN_OPTIONS = [
    (int, "cpu_replicas", 0,
     "Split the CPU into this many logical devices (replicas for "
     "--strategy=mirrored on a machine without GPUs; 0: leave as is)."),
    (str, "preset", None,
     "Comma-separated presets applied, in order, to the settings not given "
     f"({', '.join(presets.PRESETS)}; default: the dataset's, synthetic or "
     "release, then the model's, lesa or biam; epsilon_tf/config/"
     "presets.py)."),
    (bool, "print_config", False,
     "Print the effective settings as JSON and exit (nothing is trained)."),
]


def define_train_flags():
    """Defines every flag of train.py (model, loss, training, data)."""
    for cls in SETTING_CLASSES.values():
        define_fields(cls)
    define_options(_TRAIN_OPTIONS)
    define_cli_flags()


def _fields_values(cls):
    """({field: value}, {fields given}) of the defined flags of `cls`."""
    values, given = {}, set()
    for field in dataclasses.fields(cls):
        name = flag_name(field)
        if not has_flag(field) or name not in FLAGS:
            continue
        value = FLAGS[name].value
        parse = field.metadata["parse"]
        if parse and value is not None:
            value = parse(value, name)
        values[field.name] = value
        if FLAGS[name].present:
            given.add(field.name)
    return values, given


def _as_command_line_error(build):
    try:
        return build()
    except SettingError as e:
        raise CommandLineError(str(e)) from None


def settings():
    """The `ExperimentConfig` of train.py's flags.

    Flags left unset take the values of the presets: `--preset`, else the
    dataset's (`presets.RELEASE`, for every dataset) and then, with
    `--model=lesa|biam`, the model's (`presets.LESA`, `presets.BIAM`). The
    rules are `config.experiment_config`'s.
    """
    def build():
        values, given = {}, set()
        for cls in SETTING_CLASSES.values():
            more, more_given = _fields_values(cls)
            values.update(more)
            given |= more_given
        names = None
        if FLAGS.preset is not None:
            names = tuple(n.strip() for n in FLAGS.preset.split(","))
        return experiment_config(values, given, names)

    return _as_command_line_error(build)


def train_configs():
    """(ModelConfig, LossConfig, TrainConfig, DataConfig) from the flags."""
    return settings().configs()


def print_config():
    """With --print_config, prints `settings()` as JSON; True if printed."""
    if not FLAGS.print_config:
        return False
    print(json.dumps(settings().to_dict(), indent=2, default=list))
    return True


def data_config():
    """The `DataConfig` of the data flags."""
    return _as_command_line_error(
        lambda: DataConfig(**_fields_values(DataConfig)[0])
    )


def given_data_fields():
    """The `DataConfig` fields whose flags were given (command line or
    flagfile)."""
    return _fields_values(DataConfig)[1]


def ks_value():
    """The K of --k as a tuple, or None for the dataset's default."""
    return _as_command_line_error(
        lambda: _fields_values(EvalConfig)[0]["ks"]
    )


def check_writable_dir(name, path):
    """--name=path must be a directory, or creatable as one, and writable."""
    if not path:
        raise CommandLineError(f"--{name} must not be empty")
    if os.path.exists(path) and not os.path.isdir(path):
        raise CommandLineError(
            f"--{name}={path} is a file, not a directory"
        )
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise CommandLineError(
            f"--{name}={path} cannot be created: {probe} is a file"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CommandLineError(
            f"--{name}={path} cannot be written (no write permission on "
            f"{probe})"
        )


def _existing(name, kind):
    """--name, when given, must be an existing file or directory."""
    value = getattr(FLAGS, name)
    if not value:
        return
    if kind == "dir":
        if not os.path.exists(value):
            raise CommandLineError(f"--{name}: directory not found: {value}")
        if not os.path.isdir(value):
            raise CommandLineError(
                f"--{name}: {value} is a file, not a directory"
            )
    else:
        if "{split}" in value:
            return  # checked per split by the reader
        if not os.path.exists(value):
            raise CommandLineError(f"--{name}: file not found: {value}")
        if os.path.isdir(value):
            raise CommandLineError(
                f"--{name}: {value} is a directory, not a file"
            )


def check_data_flags():
    """Checks the data flags' values before anything is read or written."""
    data = data_config()
    ks_value()
    _existing("data_dir", "dir")
    _existing("label_dir", "dir")
    _existing("word_vectors", "file")
    _existing("names_file", "file")
    if data.cache_dir and data.dataset == "synthetic" and not data.data_dir:
        if os.path.exists(data.cache_dir) and not os.path.isdir(
            data.cache_dir
        ):
            raise CommandLineError(
                f"--cache_dir={data.cache_dir} is a file, not a directory"
            )
    # The release files themselves (globs, empty files, label files, the
    # word-vector pickle), still before TensorFlow is imported.
    check_data_config(data)


def check_train_flags():
    """Checks every train.py flag value, naming the flag and the value.

    Runs before any side effect (no data built, no directory written, no
    TensorFlow imported).
    """
    config = settings()  # every setting's value (the configs' checks)
    replicas = FLAGS.cpu_replicas
    if replicas < 0:
        raise CommandLineError(
            "--cpu_replicas must be an integer >= 0. "
            f"Received: --cpu_replicas={replicas}"
        )
    batch = config.trainer.batch_size
    if replicas and batch % replicas:
        raise CommandLineError(
            f"--batch_size ({batch}) must be divisible by --cpu_replicas "
            f"({replicas}), the number of replicas"
        )
    check_data_flags()
    check_writable_dir("model_dir", config.runtime.model_dir)

