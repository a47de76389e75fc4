"""Argument checks shared across the package, with Keras-style messages."""


def positive_int(name, value):
    """`value` if it is an int >= 1 (not a bool), else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={value!r}"
        )
    return value


def non_negative_int(name, value):
    """`value` if it is an int >= 0 (not a bool), else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"`{name}` must be a non-negative integer. "
            f"Received: {name}={value!r}"
        )
    return value


def boolean(name, value):
    """`value` if it is a bool, else a ValueError."""
    if not isinstance(value, bool):
        raise ValueError(
            f"`{name}` must be True or False. Received: {name}={value!r}"
        )
    return value
def positive_number(name, value):
    """`value` as a float if it is a real number > 0 (not a bool)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
    ):
        raise ValueError(
            f"`{name}` must be a positive number. Received: {name}={value!r}"
        )
    return float(value)


def rate(name, value):
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"`{name}` must be a float in [0, 1). Received: {name}={value!r}"
        )
    return float(value)


def choice(name, value, options):
    if value not in options:
        raise ValueError(
            f"`{name}` must be one of {options}. Received: {name}={value!r}"
        )
    return value


def input_shape_of(name, shape, rank, last_dim=None):
    """Checks a (batch-less or batched) input shape, returns it as a tuple."""
    shape = tuple(shape)
    if len(shape) != rank:
        raise ValueError(
            f"`{name}` must have rank {rank}. Received: shape={shape}"
        )
    if last_dim is not None and shape[-1] not in (None, last_dim):
        raise ValueError(
            f"`{name}` must have {last_dim} channels in its last axis. "
            f"Received: shape={shape}"
        )
    return shape
