"""AdamW for gradients that are already summed over the replicas.

Under `tf.distribute`, Keras' `apply_gradients` (TensorFlow backend) sums
the replicas' gradients itself, in the private
`keras.src.backend.tensorflow.optimizer.TFOptimizer.
_all_reduce_sum_gradients(grads_and_vars)`, called from
`_backend_update_step` with a list of `(gradient, variable)` pairs; it
returns the pairs with each gradient all-reduced (`ReduceOp.SUM`) in the
replica context. Clipping (`global_clipnorm`) happens before that, on each
replica's partial gradient, so Keras would not clip the gradient of the
global batch. The trainer's step (`Task.train_step`) therefore sums and
clips itself, and hands the result to this optimizer, whose override
returns the pairs unchanged (no second sum).

The override depends on that private method: `check_keras_contract`
fails loudly if a Keras version drops it, and
`tests/test_summed_gradients.py` pins its behaviour.
"""

import inspect

import keras

OVERRIDDEN = "_all_reduce_sum_gradients"


def check_keras_contract():
    """Raises RuntimeError unless Keras still sums in `OVERRIDDEN`.

    The base optimizer must define the method with one argument,
    `grads_and_vars`; otherwise the override would silently stop
    replacing Keras' sum (and gradients would be summed twice, or
    clipped per replica).
    """
    for cls in keras.optimizers.AdamW.__mro__[1:]:
        if OVERRIDDEN in vars(cls):
            base = vars(cls)[OVERRIDDEN]
            break
    else:
        base = None
    if base is None:
        raise RuntimeError(
            f"This Keras version ({keras.__version__}) no longer sums "
            f"gradients in `{OVERRIDDEN}`; the trainer's distributed "
            "gradient clipping must be revisited"
        )
    params = list(inspect.signature(base).parameters)
    if params != ["self", "grads_and_vars"]:
        raise RuntimeError(
            f"Keras' `{OVERRIDDEN}` now takes {params[1:]}, not "
            "[grads_and_vars]; the trainer's distributed gradient "
            "clipping must be revisited"
        )


class SummedGradientsAdamW(keras.optimizers.AdamW):
    """AdamW that is given gradients already summed over the replicas.

    Same arguments as `keras.optimizers.AdamW`. Use it only with
    gradients all-reduced by the caller (as `Task.train_step` does); on
    one device it is plain AdamW.
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)
