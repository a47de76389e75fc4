"""Label spaces: label names, word vectors and the seen/unseen split."""

from epsilon_tf.labels.label_space import LabelSpace

__all__ = ["LabelSpace"]
