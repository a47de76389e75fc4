"""GFP's linear path (issue 22): the layer against NumPy, its ESZSL warm
start, the folded and exported forms, saving, the settings, and a run
that warm-starts and resumes.

`linear_path=True` adds `Dense(standardized pooled vector)` to GFP's
output; `warm_start_linear` makes the layer's output ESZSL's `z V`
exactly; `Task.warm_start` fits ESZSL on the training images and sets
GFP there, and `fit_eszsl(..., fitted=task.eszsl)` reuses that fit.
"""

import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny
from helpers.reference import np_dense, np_gelu, np_layer_norm

from epsilon_tf.baselines.eszsl import ESZSL, POOLINGS, pooled_columns
from epsilon_tf.config import (
    RELEASE_PRESET,
    LossConfig,
    ModelConfig,
    SettingError,
    TrainConfig,
    experiment_config,
    preset_configs,
)
from epsilon_tf.data.pipeline import carve
from epsilon_tf.export import export_saved_model
from epsilon_tf.layers import GlobalForwardPropagation
from epsilon_tf.models import build_epsilon, with_labels
from epsilon_tf.training.hooks import TrainingHook
from epsilon_tf.training.run import build_trainer, fit_eszsl
from epsilon_tf.training.standardization import fit_standardization
from epsilon_tf.training.task import Task

TOL = dict(rtol=1e-5, atol=1e-5)
# 6 regions of 5 channels: a pooled vector of 10 (mean, then max).
REGIONS, CHANNELS = 6, 5
WIDTH = 2 * CHANNELS
HALVES = {
    "mean": slice(0, CHANNELS),
    "max": slice(CHANNELS, WIDTH),
    "mean_max": slice(0, WIDTH),
}


def _features(batch=4, seed=1):
    rng = np.random.default_rng(seed)
    # ReLU-like features: mean and max pools on different scales.
    x = np.maximum(rng.normal(size=(batch, REGIONS, CHANNELS)), 0.0)
    return (x * rng.uniform(0.5, 3.0, size=CHANNELS)).astype("float32")


def _pooled(x):
    return np.concatenate([x.mean(1), x.max(1)], axis=-1)


def _gfp(num_global=2, num_blocks=2, linear_path=True, pooled_norm=True,
         seed=0):
    """A built GFP on the features, every weight random, set statistics."""
    gfp = GlobalForwardPropagation(
        num_global=num_global, embedding_dim=4, hidden_dim=8,
        num_blocks=num_blocks, input_source="features",
        pooled_norm=pooled_norm, linear_path=linear_path,
    )
    gfp.build((None, REGIONS, CHANNELS))
    rng = np.random.default_rng(seed)
    for w in gfp.weights:
        if w.trainable:
            w.assign(rng.normal(scale=0.3, size=w.shape).astype("float32"))
    if pooled_norm:
        gfp.pooled_normalization.set_statistics(
            rng.normal(size=WIDTH), rng.uniform(0.5, 2.0, size=WIDTH)
        )
    return gfp


def _np_gfp(gfp, x):
    """GFP's inference output recomputed in NumPy from its weights."""
    z = _pooled(x)
    if gfp.pooled_norm:
        norm = gfp.pooled_normalization
        z = (z - norm.mean.numpy()) / norm.std.numpy()
    h = np_dense(z, gfp.input_projection)
    for norm, inner, outer in gfp.block_layers:
        h = h + np_dense(np_gelu(np_dense(np_layer_norm(h, norm), inner)),
                         outer)
    y = np_dense(np_layer_norm(h, gfp.output_norm), gfp.output_projection)
    if gfp.linear_path:
        kernel, bias = (w.numpy() for w in gfp.linear.weights)
        y = y + z @ kernel + bias
    return y.reshape(x.shape[0], gfp.num_global, gfp.embedding_dim)


# ------------------------------------------------------------ the layer
@pytest.mark.parametrize("num_blocks", [0, 1, 2])
@pytest.mark.parametrize("pooled_norm", [True, False])
def test_layer_with_the_linear_path_matches_numpy(pooled_norm, num_blocks):
    x = _features()
    gfp = _gfp(pooled_norm=pooled_norm, num_blocks=num_blocks)
    assert len(gfp.block_layers) == num_blocks
    kernel = gfp.linear.kernel.numpy()
    assert kernel.shape == (WIDTH, 2 * 4)
    assert np.abs(kernel).max() > 0.1  # randomized: the path counts
    np.testing.assert_allclose(gfp(x).numpy(), _np_gfp(gfp, x), **TOL)
    # The path's share is large: an output without it would fail above.
    z = _pooled(x)
    if pooled_norm:
        norm = gfp.pooled_normalization
        z = (z - norm.mean.numpy()) / norm.std.numpy()
    assert np.abs(z @ kernel + gfp.linear.bias.numpy()).max() > 0.5


def test_linear_path_weights_exist_only_when_asked():
    on, off = _gfp(linear_path=True), _gfp(linear_path=False)
    assert off.linear is None
    assert len(on.weights) == len(off.weights) + 2  # kernel and bias
    assert not [w for w in off.weights if "linear_path" in w.path]
    extra = sorted(w.path.rsplit("/", 1)[-1] for w in on.weights
                   if "linear_path" in w.path)
    assert extra == ["bias", "kernel"]
    # A fresh path starts at zero: the output is the residual stack's.
    fresh = GlobalForwardPropagation(
        num_global=1, embedding_dim=4, hidden_dim=8, linear_path=True
    )
    fresh.build((None, REGIONS, CHANNELS))
    assert not np.any(fresh.linear.kernel.numpy())
    assert not np.any(fresh.linear.bias.numpy())


@pytest.mark.parametrize("num_global", [1, 2])
@pytest.mark.parametrize("recipe", ["mean", "max", "mean_max"])
def test_warm_start_linear_gives_z_v(recipe, num_global):
    x = _features(batch=5, seed=3)
    gfp = _gfp(num_global=num_global, num_blocks=1)
    before_mean = gfp.pooled_normalization.mean.numpy().copy()
    before_std = gfp.pooled_normalization.std.numpy().copy()
    cols = HALVES[recipe]
    rng = np.random.default_rng(4)
    d = cols.stop - cols.start
    mean = rng.normal(size=d).astype("float32")
    std = rng.uniform(0.3, 3.0, size=d).astype("float32")
    v = rng.normal(size=(d, 4)).astype("float32")
    assert np.abs(gfp(x).numpy()).max() > 0.1  # not zero before

    gfp.warm_start_linear(cols, mean, std, v)

    z = (_pooled(x)[:, cols] - mean) / std
    expected = np.repeat((z @ v)[:, None, :], num_global, axis=1)
    np.testing.assert_allclose(gfp(x).numpy(), expected, **TOL)
    got_mean = gfp.pooled_normalization.mean.numpy()
    got_std = gfp.pooled_normalization.std.numpy()
    np.testing.assert_array_equal(got_mean[cols], mean)
    np.testing.assert_array_equal(got_std[cols], std)
    other = np.ones(WIDTH, bool)
    other[cols] = False
    np.testing.assert_array_equal(got_mean[other], before_mean[other])
    np.testing.assert_array_equal(got_std[other], before_std[other])


@pytest.mark.parametrize("multiple", [1.0, 3.0])
def test_warm_start_linear_rescaled_to_a_glorot_multiple(multiple):
    """With `glorot_multiple` the kernel's entries have that multiple of
    the Glorot RMS of its shape, V's direction and each image's output
    direction are unchanged (only a positive factor)."""
    x = _features(batch=5, seed=8)
    gfp = _gfp(num_global=2, num_blocks=1)
    cols = HALVES["max"]
    rng = np.random.default_rng(9)
    mean = rng.normal(size=CHANNELS).astype("float32")
    std = rng.uniform(0.5, 2.0, size=CHANNELS).astype("float32")
    v = (1e-3 * rng.normal(size=(CHANNELS, 4))).astype("float32")
    gfp.warm_start_linear(cols, mean, std, v, glorot_multiple=multiple)

    kernel = gfp.linear.kernel.numpy()
    # Hand-worked: fan_in = the pooled width (mean and max), fan_out =
    # 2 global vectors x 4 dims.
    glorot = np.sqrt(2.0 / (WIDTH + 2 * 4))
    got_rms = np.sqrt(np.mean(kernel[cols, :4] ** 2))
    np.testing.assert_allclose(got_rms, multiple * glorot, rtol=1e-5)
    c = got_rms / np.sqrt(np.mean(v ** 2))
    np.testing.assert_allclose(kernel[cols, :4], c * v, rtol=1e-5)
    np.testing.assert_allclose(kernel[cols, 4:], c * v, rtol=1e-5)
    other = np.ones(WIDTH, bool)
    other[cols] = False
    assert not np.any(kernel[other])
    z = (_pooled(x)[:, cols] - mean) / std
    expected = np.repeat((c * (z @ v))[:, None, :], 2, axis=1)
    np.testing.assert_allclose(gfp(x).numpy(), expected, rtol=1e-4,
                               atol=1e-6)


def test_warm_start_linear_needs_the_path_and_the_standardization():
    for gfp in (_gfp(linear_path=False), _gfp(pooled_norm=False)):
        with pytest.raises(ValueError, match="warm_start_linear needs"):
            gfp.warm_start_linear(slice(None), np.zeros(WIDTH),
                                  np.ones(WIDTH), np.zeros((WIDTH, 4)))


@pytest.mark.parametrize("warm", [False, True])
def test_folded_form_includes_the_linear_path(warm):
    x = _features(batch=3, seed=5)
    gfp = _gfp(num_global=2, num_blocks=2)
    if warm:
        rng = np.random.default_rng(6)
        gfp.warm_start_linear(
            HALVES["max"], rng.normal(size=CHANNELS),
            rng.uniform(0.5, 2.0, size=CHANNELS),
            rng.normal(size=(CHANNELS, 4)),
        )
    expected = gfp(x, training=False).numpy()
    form = gfp.fold_for_inference()
    got = tf.function(form, autograph=False)(tf.constant(x)).numpy()
    np.testing.assert_allclose(got, expected, **TOL)
    # The fold's linear part alone: dropping it changes the output.
    form.linear = None
    assert np.abs(form(tf.constant(x)).numpy() - expected).max() > 1e-2


@pytest.mark.parametrize("linear_path", [True, False])
def test_config_round_trip_keeps_the_linear_path(linear_path):
    gfp = _gfp(linear_path=linear_path)
    config = gfp.get_config()
    assert config["linear_path"] is linear_path
    again = GlobalForwardPropagation.from_config(config)
    assert again.linear_path is linear_path
    again.build((None, REGIONS, CHANNELS))
    assert (again.linear is not None) is linear_path


def _release_config(**overrides):
    kwargs = dict(
        feature_shape=(REGIONS, CHANNELS), hidden_dim=8, gpa_heads=2,
        num_prompts=2, token_norm="standardize", gfp_input="features",
        gfp_pooled_norm=True, gfp_blocks=1, num_global=2,
        gfp_linear="zero",
    )
    kwargs.update(overrides)
    return ModelConfig(**kwargs)


def _space():
    return tiny.random_label_space(9, 6, 4, 2)


def _trained_looking_model(space, **overrides):
    keras.utils.set_random_seed(1)
    model = build_epsilon(_release_config(**overrides), space.subset("seen"))
    fit_standardization(model, [_features(batch=16, seed=7)])
    tiny.perturb_weights(model, seed=3)
    assert np.abs(model.get_layer("gfp").linear.kernel.numpy()).max() > 0
    return model


def test_model_with_the_linear_path_saves_and_reloads(tmp_path):
    model = _trained_looking_model(_space())
    assert model.get_layer("gfp").linear_path
    x = _features(batch=3, seed=8)
    expected = model(x)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    gfp = again.get_layer("gfp")
    assert gfp.linear_path and gfp.linear is not None
    np.testing.assert_array_equal(gfp.linear.kernel.numpy(),
                                  model.get_layer("gfp").linear.kernel)
    got = again(x)
    for key in ("scores", "global_vectors"):
        np.testing.assert_allclose(got[key], expected[key], **TOL)


def test_export_of_a_model_with_the_linear_path_scores_as_keras(tmp_path):
    space = _space()
    model = _trained_looking_model(space)
    path = export_saved_model(model, space, str(tmp_path / "export"),
                              top_k=3)
    x = _features(batch=4, seed=9)
    loaded = tf.saved_model.load(path)
    out = loaded.signatures["serving_default"](features=tf.constant(x))
    reference = with_labels(model, space.vectors)(x)
    np.testing.assert_allclose(out["scores"].numpy(),
                               reference["scores"].numpy(), atol=1e-5)
    embed = loaded.signatures["embed"](features=tf.constant(x))
    np.testing.assert_allclose(embed["global_vectors"].numpy(),
                               reference["global_vectors"].numpy(),
                               atol=1e-5)


# ----------------------------------------------------------- the settings
def test_gfp_linear_without_pooled_norm_is_one_line_naming_both_flags():
    for values, names in (
        # The built-in world's earlier preset pools GFP's tokens, unscaled.
        ({"dataset": "synthetic", "gfp_linear": "eszsl"}, ("synthetic",)),
        ({"dataset": "nus_like", "gfp_linear": "zero",
          "gfp_pooled_norm": False}, None),
    ):
        with pytest.raises(SettingError) as error:
            experiment_config(values, presets=names)
        message = str(error.value)
        assert "\n" not in message
        assert f"--gfp_linear={values['gfp_linear']}" in message
        assert "--gfp_pooled_norm" in message
    with pytest.raises(SettingError, match="--gfp_linear=eszsl needs "
                                           "--gfp_pooled_norm"):
        ModelConfig(gfp_input="features", gfp_linear="eszsl")
    # The release preset standardizes the pooled vector: accepted.
    config = experiment_config({"dataset": "nus_like",
                                "gfp_linear": "eszsl"})
    assert config.model.gfp_linear == "eszsl"


def test_train_py_reports_the_flag_error_in_one_line():
    done = subprocess.run(
        [sys.executable, str(tiny.ROOT / "train.py"), "--dataset=synthetic",
         "--preset=synthetic", "--gfp_linear=eszsl", "--print_config"],
        capture_output=True, text=True, timeout=120, cwd=tiny.ROOT,
        env=tiny.child_env(),
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("train.py: error: ")
    assert "--gfp_linear=eszsl" in lines[0]
    assert "--gfp_pooled_norm" in lines[0]


def test_gpa_alone_drops_the_linear_path():
    config = experiment_config(
        {"dataset": "synthetic", "branches": "gpa", "gfp_linear": "eszsl"}
    )
    assert config.model.branches == "gpa"
    assert config.model.gfp_linear == "none"
    release_gpa = experiment_config({"dataset": "nus_like",
                                     "branches": "gpa"}).model
    assert (release_gpa.gfp_linear, release_gpa.gfp_linear_scale) == (
        "none", 0.0)
    assert experiment_config(
        {"dataset": "nus_like"}).model.gfp_linear_scale == 3.0
    model, _, _ = preset_configs(
        {**RELEASE_PRESET, "gfp_linear": "eszsl"}, (REGIONS, CHANNELS),
        {"branches": "gpa"},
    )
    assert model.gfp_linear == "none" and not model.gfp_pooled_norm
    assert model.gfp_linear_scale == 0.0
    both, _, _ = preset_configs(
        {**RELEASE_PRESET, "gfp_linear": "eszsl"}, (REGIONS, CHANNELS)
    )
    assert both.gfp_linear == "eszsl" and both.gfp_linear_scale == 3.0


# ------------------------------------------------------- the warm start
def _warm_config(**overrides):
    return tiny.model_config(
        token_norm="standardize", gfp_input="features",
        gfp_pooled_norm=True, gfp_linear="eszsl", **overrides,
    )


@pytest.fixture(scope="module")
def source():
    return tiny.in_memory_source()


@pytest.fixture(scope="module")
def warm_task(source):
    keras.utils.set_random_seed(0)
    task = Task(_warm_config(num_global=2), LossConfig(), TrainConfig(),
                source.label_space, source=source)
    task.build_model()
    task.initialize()
    return task


def _test_features(source, count=24):
    batch = next(iter(source.split("test").dataset().batch(count)))
    return batch["features"].numpy()


def test_warm_start_sets_gfp_to_the_fitted_eszsl(warm_task, source):
    eszsl = warm_task.eszsl
    assert isinstance(eszsl, ESZSL) and eszsl.fitted
    assert tuple(eszsl.poolings) == POOLINGS
    x = _test_features(source)
    pooled = _pooled(x)
    cols = pooled_columns(eszsl.pooling, pooled.shape[1])
    z = (pooled[:, cols] - eszsl.mean) / eszsl.std
    zv = z @ eszsl.projection
    gfp = warm_task.model.get_layer("gfp")
    got = gfp(x).numpy()
    assert got.shape == (len(x), 2, zv.shape[1])
    for m in range(2):
        np.testing.assert_allclose(got[:, m], zv, rtol=1e-4, atol=1e-4)

    # Through the whole model: GFP's global vectors (L2-normalized) score
    # the seen labels as ESZSL does, divided by |z V| per image.
    seen = source.label_space.subset("seen").vectors
    eszsl_scores = eszsl.score(x, seen)
    unit = seen / np.linalg.norm(seen, axis=1, keepdims=True)
    vectors = warm_task.model(x)["global_vectors"].numpy()
    model_scores = vectors[:, 0] @ unit.T
    norms = np.linalg.norm(zv, axis=1, keepdims=True)
    np.testing.assert_allclose(model_scores * norms, eszsl_scores,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(
        np.argsort(-model_scores, axis=1)[:, :5],
        np.argsort(-eszsl_scores, axis=1)[:, :5],
    )


def test_scaled_warm_start_scores_as_the_unscaled_one(warm_task, source):
    """`gfp_linear_scale` (the release preset's) changes how large the
    path's kernel is, never a score: the model's scores before the first
    step equal those of the unscaled warm start."""
    keras.utils.set_random_seed(0)
    scaled = Task(_warm_config(num_global=2, gfp_linear_scale=3.0),
                  LossConfig(), TrainConfig(), source.label_space,
                  source=source)
    scaled.build_model()
    scaled.initialize()
    kernel = scaled.model.get_layer("gfp").linear.kernel.numpy()
    fan_in, fan_out = kernel.shape
    used = kernel[np.any(kernel != 0, axis=1)]
    np.testing.assert_allclose(
        np.sqrt(np.mean(used ** 2)), 3.0 * np.sqrt(2.0 / (fan_in + fan_out)),
        rtol=1e-5)
    plain = warm_task.model.get_layer("gfp").linear.kernel.numpy()
    assert np.sqrt(np.mean(used ** 2)) > 5 * np.sqrt(
        np.mean(plain[np.any(plain != 0, axis=1)] ** 2))
    x = _test_features(source)
    np.testing.assert_allclose(
        scaled.model(x)["global_scores"].numpy(),
        warm_task.model(x)["global_scores"].numpy(), rtol=1e-4, atol=1e-5)


def test_warm_start_equals_a_fit_of_its_own(warm_task, source):
    """The warm start's ESZSL is the one `fit_eszsl` would fit: the same
    recipe, γ, λ and V, and the printed baseline's metrics are the same
    whether it is reused or refitted."""
    fraction = TrainConfig().validation_fraction
    train = source.split("train").dataset()
    own = ESZSL(select_k=source.eval_ks[0]).fit(
        carve(train, "train", fraction),
        carve(train, "validation", fraction),
        source.label_space.subset("seen").vectors,
    )
    eszsl = warm_task.eszsl
    assert eszsl.pooling == own.pooling
    assert eszsl.selected == own.selected
    np.testing.assert_array_equal(eszsl.projection, own.projection)
    np.testing.assert_array_equal(eszsl.mean, own.mean)
    reused = fit_eszsl(source, fraction, fitted=eszsl)
    refitted = fit_eszsl(source, fraction)
    assert reused == refitted
    assert reused["zsl"]["map"] > 0


def test_gpa_alone_with_gfp_linear_set_initializes(source):
    """A GPA-only model has no GFP: `gfp_linear` (kept by the settings
    when `--gfp_input` is given, as every GFP setting is) must not ask
    for a warm start."""
    kept = experiment_config({
        "dataset": "nus_like", "branches": "gpa", "gfp_input": "features",
        "gfp_linear": "eszsl",
    }).model
    assert kept.branches == "gpa" and kept.gfp_linear == "eszsl"
    config = tiny.model_config(
        branches="gpa", token_norm="standardize", gfp_input="features",
        gfp_pooled_norm=True, gfp_linear="eszsl",
    )
    task = Task(config, LossConfig(), TrainConfig(), source.label_space,
                source=source)
    task.build_model()
    assert task.initialize() > 0
    assert task.eszsl is None


# -------------------------------------------------------- resume, exactly
@pytest.fixture
def default_sigint():
    """SIGINT with Python's default handler, whatever the runner set."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class _CtrlCAfterFirstEpoch(TrainingHook):
    def on_epoch_end(self, trainer, epoch, metrics, improved, seconds):
        if epoch == 0:
            os.kill(os.getpid(), signal.SIGINT)


def _warm_trainer(model_dir, source, hooks=()):
    trainer = build_trainer(
        _warm_config(), LossConfig(),
        TrainConfig(model_dir=str(model_dir), epochs=2, batch_size=32,
                    steps_per_epoch=4, warmup_steps=2, verbose=0,
                    summary_images=0, pr_curve_labels=0),
        source,
    )
    trainer.hooks.extend(hooks)
    return trainer


@pytest.mark.slow  # three short runs: 13-18 s on two shared cores
def test_warm_started_run_resumed_after_epoch_one_is_exact(
    default_sigint, source, tmp_path
):
    """Ctrl-C after epoch 1 of a warm-started run, then the same run
    again: it restores (no second warm start) and ends bit for bit where
    an uninterrupted run ends (metrics, every weight)."""
    interrupted = _warm_trainer(tmp_path / "run", source,
                                hooks=[_CtrlCAfterFirstEpoch()])
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    assert interrupted.task.eszsl is not None  # it was warm-started
    assert int(interrupted.epoch.numpy()) == 1
    del interrupted
    resumed = _warm_trainer(tmp_path / "run", source)
    after = tiny.train_to_end(resumed)
    assert resumed.task.eszsl is None  # restored, not warm-started again
    clean = tiny.train_to_end(_warm_trainer(tmp_path / "clean", source))
    tiny.assert_same_run(after, clean)
