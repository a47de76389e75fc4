"""How a setting is declared: a dataclass field with its flag and its check.

Every user-facing setting is a field of one of the config dataclasses,
declared with `setting(...)`: its default, the one-line help of its flag,
and what values it accepts. The command-line flags are generated from these
fields (`epsilon_tf.flags`) and the checks run when a config is built
(`check_fields`), so a value is validated in one place whether it comes
from a flag, a flagfile, a preset or Python code.

A failed check raises `SettingError` (a `ValueError`; the command lines
print it as one `error:` line) naming the flag and the value:
`--epochs must be a positive integer. Received: --epochs=0`.

Standard library only: importable before TensorFlow.
"""

import dataclasses
import math
import typing


class SettingError(ValueError):
    """A setting's value cannot work (names the flag and the value)."""


def setting(default, help, *, flag=None, choices=None, check=None,
            section=None, parse=None, show=None):
    """A dataclass field for a user-facing setting.

    Args:
        default: the default value.
        help: the flag's one-line help (None: the field has no flag).
        flag: the flag's name when it is not the field's.
        choices: the allowed values (an enum flag).
        check: (predicate, requirement) the value must pass, e.g.
            `POSITIVE_INT`; None values are not checked.
        section: the part of a sectioned config (`TrainConfig`) it
            belongs to.
        parse: text -> value, for a flag given as text (e.g. a shape
            `196x512`); raises `SettingError`.
        show: value -> flag text (the inverse of `parse`).
    """
    metadata = {
        "help": help, "flag": flag, "choices": choices, "check": check,
        "section": section, "parse": parse, "show": show,
    }
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(field):
    """The command-line flag of a dataclass field."""
    return field.metadata.get("flag") or field.name


def has_flag(field):
    return bool(field.metadata.get("help"))


def value_type(field):
    """The type of a field's values: str, int, float, bool or tuple."""
    kind = field.type
    if typing.get_origin(kind) is typing.Union:
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    return kind


def at_least(low):
    """(predicate, requirement) of an integer >= `low`."""
    word = "a positive integer" if low == 1 else f"an integer >= {low}"
    return (lambda v: v >= low, word)


POSITIVE_INT = at_least(1)
COUNT = at_least(0)
POSITIVE = (lambda v: v > 0, "a positive number")
NON_NEGATIVE = (lambda v: v >= 0, "a number >= 0")
OFF_AT_ZERO = (lambda v: v >= 0, "a number >= 0 (0: off)")
RATE = (lambda v: 0 <= v < 1, "a number in [0, 1)")
FRACTION = (lambda v: 0 < v < 1, "a number in (0, 1)")


def fail(flag, value, requirement):
    """Raises the `SettingError` of `--flag=value` not being `requirement`."""
    raise SettingError(
        f"--{flag} must be {requirement}. Received: --{flag}={value}"
    )


def check_fields(config):
    """Checks every field of `config` against its declared choices/check."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        flag = flag_name(field)
        choices = field.metadata.get("choices")
        if choices and value not in choices:
            raise SettingError(
                f"`{field.name}` must be one of {tuple(choices)}. "
                f"Received: --{flag}={value!r}"
            )
        check = field.metadata.get("check")
        if check is None or value is None:
            continue
        ok, requirement = check
        if isinstance(value, float) and not math.isfinite(value):
            fail(flag, value, requirement)
        if not ok(value):
            fail(flag, value, requirement)


def parse_shape(text, flag="feature_shape"):
    """"196x512" (or "196,512") -> (196, 512)."""
    try:
        parts = tuple(int(v) for v in text.lower().replace("x", ",").split(","))
    except ValueError:
        parts = ()
    if len(parts) != 2 or min(parts) < 1:
        raise SettingError(
            f"--{flag} must be REGIONSxCHANNELS, e.g. 196x512. "
            f"Received: {text!r}"
        )
    return parts


def show_shape(shape):
    return "x".join(str(v) for v in shape)


def parse_ks(text, flag="k"):
    """"3,5" -> (3, 5): the K of P/R/F1@K."""
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        raise SettingError(
            f"--{flag} must be comma-separated positive integers, e.g. 3,5. "
            f"Received: {text!r}"
        )
    return ks


def show_ks(ks):
    return None if ks is None else ",".join(str(k) for k in ks)
