"""Figure 1, measured: the completeness measure, the generator's region
truth and every label's map (metrics/localization.py,
data/worlds/region_truth.py, visualization/label_maps.py,
benchmarks/bench_completeness.py)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from epsilon_tf.metrics.localization import (
    chance_completeness,
    completeness,
    top_k_shares,
)
from tests.conftest import ROOT, shared_data_dir

_SHARED = shared_data_dir()
LABEL_DIR = _SHARED / "nus_wide" if _SHARED else None
needs_labels = pytest.mark.skipif(
    LABEL_DIR is None or not LABEL_DIR.is_dir(),
    reason="../shared/data/nus_wide is not present",
)


# ------------------------------------------------------------ the measure
def test_top_k_shares_hand_case():
    maps = [
        # k = 2 (regions 0, 3); top 2 = regions 0, 2: one of two.
        [0.9, 0.1, 0.5, 0.2, 0.0],
        # k = 3 (regions 1, 2, 3); top 3 = regions 1, 2, 4: two of three.
        [0.3, 0.9, 0.9, 0.1, 0.8],
        # k = 2 (regions 1, 4); region 0 is above; one slot left for the
        # three regions tied at 0.5, one of them true: 1/3 of a region.
        [1.0, 0.5, 0.5, 0.5, 0.0],
        # k = 1 (region 0), a constant map: 1/5 in expectation.
        [0.7, 0.7, 0.7, 0.7, 0.7],
        # k = 5: every region is true.
        [0.1, 0.2, 0.3, 0.4, 0.5],
    ]
    truth = np.array([
        [1, 0, 0, 1, 0],
        [0, 1, 1, 1, 0],
        [0, 1, 0, 0, 1],
        [1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1],
    ], bool)
    want = [1 / 2, 2 / 3, (1 / 3) / 2, 1 / 5, 1.0]
    np.testing.assert_allclose(top_k_shares(maps, truth), want)
    assert completeness(maps, truth) == pytest.approx(np.mean(want))
    # The floor: k / P per pair, averaged.
    assert chance_completeness(truth) == pytest.approx(
        np.mean([2 / 5, 3 / 5, 2 / 5, 1 / 5, 1.0])
    )
    # A map equal to the truth (or any map ranking it first) scores 1.
    assert completeness(truth.astype(float), truth) == 1.0
    assert completeness(np.where(truth, 2.0, -1.0), truth) == 1.0


def test_random_maps_average_the_floor():
    rng = np.random.default_rng(0)
    truth = np.zeros((4000, 12), bool)
    truth[:, :3] = True
    rng.permuted(truth, axis=1, out=truth)
    got = completeness(rng.random(truth.shape), truth)
    assert got == pytest.approx(3 / 12, abs=0.01)
    assert chance_completeness(truth) == pytest.approx(3 / 12)


def test_measure_input_errors():
    with pytest.raises(ValueError, match="row 1 marks no region"):
        completeness(np.ones((2, 3)), np.array([[1, 0, 0], [0, 0, 0]], bool))
    with pytest.raises(ValueError, match=r"maps \(2, 3\), truth \(2, 4\)"):
        completeness(np.ones((2, 3)), np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="row 0 holds a NaN"):
        completeness([[np.nan, 1.0]], np.array([[True, False]]))
    with pytest.raises(ValueError, match="bool array"):
        completeness([[0.0, 1.0]], [[1, 0]])


# -------------------------------------------------------- the region truth
def _features_of(config):
    from epsilon_tf.data.worlds import family

    _, feats, _, visible = zip(
        *family.generate_split(config, "test", return_visible=True),
        strict=True,
    )
    return np.stack(feats), np.stack(visible)


@needs_labels
@pytest.mark.parametrize("name, sizes", [
    ("nus_like", dict(grid_shape=(8, 8), channels=64)),
    ("vit_tokens", dict(grid_shape=(6, 6), channels=48)),  # CLS token
])
def test_region_truth_is_where_the_features_show_the_label(name, sizes):
    from epsilon_tf.data.worlds import family, region_truth

    config = family.member_config(name, str(LABEL_DIR), num_train=1,
                                  num_test=40, **sizes)
    truth = region_truth.object_regions(config)
    world = region_truth.world_of(config)
    feats, visible = _features_of(config)
    rows, cols = sizes["grid_shape"]
    assert truth.grid_shape == (rows, cols)
    assert truth.token_offset == int(name == "vit_tokens")
    assert feats.shape[1] == rows * cols + truth.token_offset
    # Every visible object label of every image, and nothing else: no
    # scene label, no label the image does not show.
    assert world.is_object[truth.label].all()
    assert visible[truth.image_index, truth.label].all()
    objects = visible & world.is_object
    assert truth.num_pairs + truth.dropped == objects.sum()
    assert len(set(zip(truth.image_index, truth.label))) == truth.num_pairs
    k = truth.mask.sum(axis=1)
    assert k.min() >= 1 and k.max() < rows * cols and len(set(k)) > 5
    # The label's appearance (either mode) is stronger on its blob's core
    # than off the blob, in (almost) every pair; with another pair's truth
    # it is not.
    patches = feats[:, truth.token_offset:]
    core = truth.core(0.5)

    def stronger(inside, outside):
        hits = []
        for p in range(truth.num_pairs):
            proj = patches[truth.image_index[p]] @ world.modes[
                truth.label[p]].T
            proj = proj.max(axis=1)
            hits.append(proj[inside[p]].mean() > proj[~outside[p]].mean())
        return np.mean(hits)

    assert stronger(core, truth.mask) >= 0.95
    other = np.roll(np.arange(truth.num_pairs), 7)
    assert stronger(core[other], truth.mask[other]) <= 0.85


@needs_labels
def test_recording_placements_changes_no_draw():
    from epsilon_tf.data.worlds import family, nus_like, region_truth

    for config in (
        nus_like.NusLikeConfig(label_dir=str(LABEL_DIR), num_train=1,
                               num_test=20, grid_shape=(5, 5), channels=32),
        family.member_config("resnet_scenes", str(LABEL_DIR), num_train=1,
                             num_test=20, channels=32),
    ):
        world = region_truth.world_of(config)
        generate = region_truth._chunk_generator(config)
        plain = generate(world, "test", 0, 20)
        placed = []
        recorded = generate(world, "test", 0, 20, placements=placed)
        for a, b in zip(plain, recorded, strict=True):
            np.testing.assert_array_equal(a, b)
        assert placed and {i for i, _, _ in placed} <= set(range(20))


@needs_labels
def test_region_truth_limits_and_errors():
    from epsilon_tf.data.worlds import family, region_truth

    config = family.member_config("resnet_scenes", str(LABEL_DIR),
                                  num_train=1, num_test=140, channels=16)
    full = region_truth.object_regions(config)
    first = region_truth.object_regions(config, num_images=130)
    # The first 130 images' pairs are the full split's (the second chunk
    # is generated whole: its random stream depends on its size).
    keep = full.image_index < 130
    np.testing.assert_array_equal(first.label, full.label[keep])
    np.testing.assert_array_equal(first.amplitude, full.amplitude[keep])
    assert first.amplitude.max(axis=1).min() == 1.0
    with pytest.raises(ValueError, match="share"):
        full.core(0.0)
    with pytest.raises(ValueError, match="NusLikeConfig"):
        region_truth.world_of(object())


# ------------------------------------------------------ every label's map
def _tiny_models(num_regions):
    from epsilon_tf.config import ModelConfig
    from epsilon_tf.models import build_model

    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((7, 12)).astype("float32")
    shape = (num_regions, 8)
    configs = {
        "epsilon": ModelConfig(feature_shape=shape, hidden_dim=16,
                               num_prompts=3, gpa_heads=2, gfp_blocks=1),
        "lesa": ModelConfig(model="lesa", feature_shape=shape,
                            lesa_attentions=3),
        "biam": ModelConfig(model="biam", feature_shape=shape,
                            biam_channels=8, biam_heads=2, biam_top_k=3),
    }
    x = rng.standard_normal((3, *shape)).astype("float32")
    return {k: build_model(c, vectors) for k, c in configs.items()}, \
        vectors, x


def test_label_maps_are_figure1_maps_at_the_best_label():
    from epsilon_tf.models import best_label_maps
    from epsilon_tf.visualization.label_maps import LabelMaps

    models, vectors, x = _tiny_models(16)
    rows = np.arange(3)
    for kind, model in models.items():
        scores, maps = LabelMaps(model, vectors)(x)
        ref_scores, ref_maps = best_label_maps(model, x, vectors)
        assert maps.shape == (3, 7, 16), kind
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
        best = ref_scores.argmax(axis=1)
        np.testing.assert_allclose(maps[rows, best], ref_maps, rtol=1e-5,
                                   atol=1e-6, err_msg=kind)
        # Not one map for every label.
        assert np.ptp(maps, axis=1).max() > 0, kind


def test_label_maps_leave_the_cls_token_out():
    from epsilon_tf.visualization.label_maps import LabelMaps

    models, vectors, x = _tiny_models(17)  # a CLS token and 4 x 4 patches
    out = models["lesa"](x)
    scores, maps = LabelMaps(models["lesa"], vectors)(x)
    assert maps.shape == (3, 7, 16)
    # Independent of LabelMaps: label k's map is the patch part of the
    # attention that scores k highest.
    pick = np.asarray(out["attention_scores"]).argmax(axis=1)  # [b, K]
    attention = np.asarray(out["attention"])
    for b in range(3):
        for k in range(7):
            np.testing.assert_allclose(maps[b, k],
                                       attention[b, pick[b, k], 1:],
                                       rtol=1e-6)
    for kind in ("epsilon", "biam"):
        assert LabelMaps(models[kind], vectors)(x)[1].shape == (3, 7, 16)


# ------------------------------------------------------------- the script
def test_bench_maps_each_pair_by_image_id_in_any_read_order():
    from benchmarks.bench_completeness import (
        _pair_maps,
        energy_maps,
        model_maps,
    )
    from epsilon_tf.data.base import DatasetSource
    from epsilon_tf.data.readers.in_memory import array_split
    from epsilon_tf.data.worlds.region_truth import RegionTruth
    from epsilon_tf.visualization.label_maps import LabelMaps

    models, vectors, _ = _tiny_models(16)
    rng = np.random.default_rng(2)
    feats = rng.standard_normal((8, 16, 8)).astype("float32")
    order = rng.permutation(8)  # the reader's order, as shards interleave
    space = type("Space", (), {"vectors": vectors})()
    split = array_split("test", feats[order], -np.ones((8, 7)), "all",
                        [f"test_{i:06d}" for i in order])
    source = DatasetSource("tiny", space, (16, 8), {"test": split,
                                                   "train": split})
    images, labels = np.array([3, 0, 3, 7]), np.array([2, 6, 4, 1])
    truth = RegionTruth(images, labels, np.ones((4, 16), np.float32),
                        (4, 4), 0, 0)
    lesa = model_maps(models["lesa"], space)
    got = _pair_maps(lesa, source, truth, batch_size=3)
    _, every = LabelMaps(models["lesa"], vectors)(feats)
    np.testing.assert_allclose(got, every[images, labels], rtol=1e-5,
                               atol=1e-7)
    energy = _pair_maps(energy_maps(0), source, truth, batch_size=3)
    np.testing.assert_allclose(energy, np.abs(feats[images]).mean(axis=-1),
                               rtol=1e-6)
    missing = RegionTruth(np.array([8]), np.array([0]),
                          np.ones((1, 16), np.float32), (4, 4), 0, 0)
    with pytest.raises(RuntimeError, match="e.g. test_000008"):
        _pair_maps(lesa, source, missing, batch_size=3)


def _bench(*args, timeout=60):
    from tests.helpers.tiny import child_env

    return subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_completeness", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env=child_env(),
    )


@pytest.mark.parametrize("args, message", [
    (["--run_dirs=epsilon"], "--run_dirs: expected MODEL=DIR items"),
    (["--run_dirs=gpa=x"], "--run_dirs: expected MODEL=DIR items"),
    (["--models=epsilon,eszsl"], "--models: expected names of"),
    (["--epochs=0"], "--epochs: expected a positive integer; found 0"),
])
def test_bench_flag_errors_are_one_line(args, message):
    done = _bench(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"bench_completeness: error: {message}")


@needs_labels
@pytest.mark.slow
def test_bench_completeness_smoke(tmp_path):
    from epsilon_tf.data.worlds import family, region_truth

    sizes = ["--num_train=120", "--num_test=30"]
    common = [f"--cache_dir={tmp_path / 'c'}", f"--label_dir={LABEL_DIR}",
              f"--work_dir={tmp_path / 'w'}", "--epochs=1", *sizes]
    done = _bench("--members=resnet_scenes", *common,
                  f"--figure_dir={tmp_path / 'fig'}",
                  f"--out={tmp_path / 'r.json'}", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "command: python -m benchmarks.bench_completeness" in done.stdout
    result = json.loads((tmp_path / "r.json").read_text())
    member = result["members"]["resnet_scenes"]
    rows = member["rows"]
    assert set(rows) == {"truth", "Epsilon", "LESA", "BiAM", "random floor",
                         "feature energy"}
    assert rows["truth"]["all"] == 1.0 and rows["truth"]["core"] == 1.0
    for values in rows.values():
        assert 0.0 <= values["all"] <= 1.0
    # The floor, recomputed from the generator's truth: mean k / 49.
    config = family.member_config("resnet_scenes", str(LABEL_DIR),
                                  num_train=120, num_test=30)
    truth = region_truth.object_regions(config)
    assert member["pairs"] == truth.num_pairs
    assert rows["random floor"]["all"] == pytest.approx(
        truth.mask.sum(axis=1).mean() / 49
    )
    assert (tmp_path / "fig" / "resnet_scenes.png").stat().st_size > 10_000
    # The same runs, given as finished run directories: the same numbers.
    runs = ",".join(f"{m}={tmp_path / 'w' / f'resnet_scenes-{m}-s0'}"
                    for m in ("epsilon", "lesa", "biam"))
    again = _bench("--members=resnet_scenes", f"--run_dirs={runs}",
                   *common, f"--out={tmp_path / 'r2.json'}", timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    rows2 = json.loads((tmp_path / "r2.json").read_text())["members"][
        "resnet_scenes"]["rows"]
    for name in ("Epsilon", "LESA", "BiAM"):
        assert rows2[name] == pytest.approx(rows[name])
    # A run of another member is refused in one line.
    wrong = _bench("--members=nus_like", f"--run_dirs={runs}", *common)
    assert wrong.returncode == 2
    lines = wrong.stderr.strip().splitlines()
    assert len(lines) == 1 and "takes features of shape (49, 2048); " \
        "nus_like's are (196, 512)" in lines[0], wrong.stderr
