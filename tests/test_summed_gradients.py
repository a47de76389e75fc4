"""The override of Keras' private `_all_reduce_sum_gradients`.

`training/summed_gradients.py` relies on what Keras' TensorFlow optimizer
does in that method: it is called by `apply_gradients` with the list of
(gradient, variable) pairs and returns them all-reduced (summed over the
replicas). These tests pin that behaviour, so a Keras upgrade that changes
it fails here rather than silently summing the gradients twice (or
clipping per replica).
"""

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from epsilon_tf.training.summed_gradients import (
    OVERRIDDEN,
    SummedGradientsAdamW,
    check_keras_contract,
)

ROOT = Path(__file__).resolve().parents[1]


def _defining_class(cls, name):
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


def test_keras_still_defines_the_method_with_one_argument():
    owner = _defining_class(keras.optimizers.AdamW, OVERRIDDEN)
    assert owner is not None
    assert owner.__module__ == "keras.src.backend.tensorflow.optimizer"
    params = list(inspect.signature(getattr(owner, OVERRIDDEN)).parameters)
    assert params == ["self", "grads_and_vars"]
    # ... and Keras' update step still goes through it.
    update = inspect.getsource(owner._backend_update_step)
    assert f"self.{OVERRIDDEN}(grads_and_vars)" in update
    check_keras_contract()  # passes on this Keras


def test_the_contract_check_fails_when_keras_drops_the_method(monkeypatch):
    owner = _defining_class(keras.optimizers.AdamW, OVERRIDDEN)
    monkeypatch.delattr(owner, OVERRIDDEN)
    with pytest.raises(RuntimeError, match="no longer sums"):
        check_keras_contract()


def test_the_contract_check_fails_on_a_new_signature(monkeypatch):
    owner = _defining_class(keras.optimizers.AdamW, OVERRIDDEN)

    def changed(self, grads_and_vars, skip_gradients_aggregation):
        return grads_and_vars

    monkeypatch.setattr(owner, OVERRIDDEN, changed)
    with pytest.raises(RuntimeError, match="now takes"):
        check_keras_contract()


def test_on_one_device_it_is_plain_adamw():
    values = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
    grad = tf.constant([[0.3, -0.1], [0.2, 0.4]])
    results = []
    for cls in (keras.optimizers.AdamW, SummedGradientsAdamW):
        variable = keras.Variable(values)
        optimizer = cls(learning_rate=0.1, weight_decay=0.01)
        for _ in range(3):
            optimizer.apply_gradients([(grad, variable)])
        results.append(np.asarray(variable))
    np.testing.assert_array_equal(results[0], results[1])
    assert not np.allclose(results[0], values)


# Run in a fresh process: the 2 logical CPUs must be configured before
# TensorFlow initializes its devices.
MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    import keras
    import numpy as np
    import tensorflow as tf

    from epsilon_tf.training.strategy import configure_cpu_replicas

    configure_cpu_replicas(2)
    from epsilon_tf.training.summed_gradients import (
        OVERRIDDEN,
        SummedGradientsAdamW,
    )

    strategy = tf.distribute.MirroredStrategy(
        devices=[d.name for d in tf.config.list_logical_devices("CPU")],
        cross_device_ops=tf.distribute.ReductionToOneDevice(),
    )
    # Replica r holds the gradient (r + 1) * base: the sum is 3 * base.
    base = np.array([0.25, -0.5, 1.0], np.float32)
    out = {"replicas": strategy.num_replicas_in_sync}

    def per_replica_grad():
        ctx = tf.distribute.get_replica_context()
        return tf.constant(base) * tf.cast(
            ctx.replica_id_in_sync_group + 1, tf.float32
        )

    # 1. Keras' own method all-reduces (sums) the gradients.
    with strategy.scope():
        v = keras.Variable(np.zeros(3, np.float32))
        keras_opt = keras.optimizers.SGD(learning_rate=1.0)

    @tf.function
    def keras_sum():
        def fn():
            pairs = getattr(keras_opt, OVERRIDDEN)([(per_replica_grad(), v)])
            return pairs[0][0]
        return strategy.run(fn)

    out["keras_sum"] = [
        np.asarray(t).tolist()
        for t in strategy.experimental_local_results(keras_sum())
    ]

    # 2. apply_gradients of plain SGD sums the replicas' gradients; the
    # override (the trainer's way) leaves the summing to the caller:
    # given the all-reduced sum it applies it once, the same update.
    def sgd_update(cls, caller_sums):
        with strategy.scope():
            var = keras.Variable(np.zeros(3, np.float32))
            opt = cls(learning_rate=1.0)
            opt.build([var])

        @tf.function
        def step():
            def fn():
                g = per_replica_grad()
                if caller_sums:
                    g = tf.distribute.get_replica_context().all_reduce(
                        tf.distribute.ReduceOp.SUM, g
                    )
                opt.apply_gradients([(g, var)])
            strategy.run(fn)

        step()
        return np.asarray(var.value).tolist()

    class SummedSGD(keras.optimizers.SGD):
        _all_reduce_sum_gradients = SummedGradientsAdamW.__dict__[OVERRIDDEN]

    out["keras_sgd"] = sgd_update(keras.optimizers.SGD, False)
    out["summed_sgd_after_caller_sum"] = sgd_update(SummedSGD, True)
    out["summed_sgd_without_caller_sum"] = sgd_update(SummedSGD, False)
    print("RESULT " + json.dumps(out))
    """
)


def test_override_gives_the_all_reduced_sum_on_two_replicas(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3",
               CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=str(ROOT), env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    out = json.loads(line[-1][len("RESULT "):])
    base = np.array([0.25, -0.5, 1.0])
    assert out["replicas"] == 2
    # Keras' method returns the sum over the replicas, on every replica.
    for reduced in out["keras_sum"]:
        np.testing.assert_allclose(reduced, 3 * base, rtol=1e-6)
    # Keras sums inside apply_gradients: SGD(lr=1) moves by -3 * base.
    np.testing.assert_allclose(out["keras_sgd"], -3 * base, rtol=1e-6)
    # The override applies the caller's sum once: the very same update.
    np.testing.assert_allclose(
        out["summed_sgd_after_caller_sum"], out["keras_sgd"], rtol=1e-6
    )
    # Without the caller's sum each replica's own part is applied, not
    # the sum: proof that the override does not sum a second time.
    assert not np.allclose(out["summed_sgd_without_caller_sum"], -3 * base)

