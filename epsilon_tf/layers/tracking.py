"""The one place where sublayers kept in Python lists are made visible
to `tf.train.Checkpoint`.

Keras tracks the sublayers a layer holds in a list for its own weights
and `.keras` files, but `tf.train.Checkpoint` (the trainer's checkpoints
and exact resume) follows object attributes only. A layer that builds a
variable number of sublayers keeps them in its list for its `call` and
registers each one here under a stable attribute name; the name is the
sublayer's checkpoint key, so it must not change between versions.
"""


def track_for_checkpoint(layer, sublayer, attribute):
    """Makes `sublayer` a checkpointed attribute `attribute` of `layer`.

    Args:
        layer: the owning `keras.layers.Layer`.
        sublayer: a sublayer `layer` also holds in a list.
        attribute: str, its checkpoint key (e.g. "encoder_block_0").

    Returns:
        `sublayer`.
    """
    setattr(layer, attribute, sublayer)
    return sublayer
