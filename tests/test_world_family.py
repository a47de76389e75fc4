"""Tests of the family of release-shaped worlds (data/worlds/family.py)."""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, shared_data_dir

_SHARED = shared_data_dir()
LABEL_DIR = _SHARED / "nus_wide" if _SHARED else None
pytestmark = pytest.mark.skipif(
    LABEL_DIR is None or not LABEL_DIR.is_dir(),
    reason="../shared/data/nus_wide is not present",
)

from epsilon_tf.config import DataConfig  # noqa: E402
from epsilon_tf.data import catalog  # noqa: E402
from epsilon_tf.data.sources import make_source  # noqa: E402
from epsilon_tf.data.worlds import family, nus_like  # noqa: E402
from epsilon_tf.data.worlds.nus_like import NusLikeConfig  # noqa: E402

SMALL = dict(num_train=40, num_test=40)
# A small nus_like world, written with the code of commit 91eb2de (before
# the family existed): its cache key and a sha256 of each split's records
# (every example's features in order, keys sorted, their bytes; the file
# bytes themselves are not stable: protobuf may order an Example's feature
# map differently in another process).
_NUS_LIKE_SMALL = dict(num_train=64, num_test=48, grid_shape=(4, 4),
                       channels=24)
_NUS_LIKE_KEY = "nus_like-7a0d7d805487552f"
_NUS_LIKE_RECORDS = {
    "train":
        "6e17578657f7439fef51496d074c337a3e82673ad60fa33a377afe40d6ab7611",
    "test":
        "00119d886499c8235e36ae691aab6814918bba7f4ef6bfb6facaafc60a6beb5b",
}


def _records_sha256(path):
    import tensorflow as tf

    digest = hashlib.sha256()
    for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        example = tf.train.Example.FromString(raw)
        for key in sorted(example.features.feature):
            digest.update(key.encode())
            for value in example.features.feature[key].bytes_list.value:
                digest.update(value)
    return digest.hexdigest()


def test_nus_like_member_is_byte_identical(tmp_path):
    config = family.member_config("nus_like", str(LABEL_DIR),
                                  **_NUS_LIKE_SMALL)
    assert type(config) is NusLikeConfig
    assert config.cache_key() == _NUS_LIKE_KEY
    source = family.member_source(str(tmp_path), "nus_like", str(LABEL_DIR),
                                  progress=False, **_NUS_LIKE_SMALL)
    assert source.name == "nus_like"
    directory = tmp_path / _NUS_LIKE_KEY
    got = {split: _records_sha256(directory / f"{split}-00000.tfrecord")
           for split in _NUS_LIKE_RECORDS}
    assert got == _NUS_LIKE_RECORDS


def _collect(config, split):
    ids, feats, labels, visible = zip(
        *family.generate_split(config, split, return_visible=True),
        strict=True,
    )
    return list(ids), np.stack(feats), np.stack(labels), np.stack(visible)


@pytest.mark.parametrize("name", list(family.MEMBERS))
def test_every_member_builds_with_its_shape(name):
    full = family.member_config(name, str(LABEL_DIR))
    assert full.num_train in (6000, 8000) and full.num_test == 2000
    config = family.member_config(name, str(LABEL_DIR), **SMALL)
    ids, feats, labels, visible = _collect(config, "test")
    assert feats.shape == (40, *full.feature_shape)
    assert labels.shape == (40, 1006) and set(np.unique(labels)) <= {-1, 1}
    assert np.isfinite(feats).all() and len(set(ids)) == 40
    # Concepts are exact in every member.
    np.testing.assert_array_equal(labels[:, 925:] == 1, visible[:, 925:])
    signed = getattr(config, "activation", "relu") == "signed"
    assert (feats.min() < 0) == signed
    if not signed:
        assert 0.5 < (feats == 0).mean() < 0.99
    exact = getattr(config, "exact_test_seen", False)
    same = np.array_equal(labels[:, :925] == 1, visible[:, :925])
    assert same == exact
    _, train_feats, train_labels, _ = _collect(config, "train")
    assert train_labels.shape == (40, 925)
    assert train_feats.shape == feats.shape


def test_shapes_cover_vgg_resnet_and_vit():
    shapes = {
        name: family.member_config(name, str(LABEL_DIR)).feature_shape
        for name in family.MEMBERS
    }
    assert {(196, 512), (49, 2048), (197, 768)} <= set(shapes.values())
    assert len(family.MEMBERS) >= 6


def _axes(config):
    """The axes a held-out member must leave in at least one."""
    return {
        "shape": config.feature_shape,
        "activation": getattr(config, "activation", "relu"),
        "word_map": (getattr(config, "word_map_layers", 1),
                     getattr(config, "word_map_gain", 1.0),
                     getattr(config, "linear_share", 0.0)),
    }


def test_held_out_members_leave_the_tuning_members_axes():
    assert len(family.HELD_OUT) >= 2
    assert set(family.HELD_OUT) <= set(family.MEMBERS)
    assert "nus_like" in family.TUNING
    tuning = [_axes(family.member_config(n, str(LABEL_DIR)))
              for n in family.TUNING]
    for name in family.HELD_OUT:
        held = _axes(family.member_config(name, str(LABEL_DIR)))
        novel = [axis for axis, value in held.items()
                 if all(t[axis] != value for t in tuning)]
        assert novel, name


def test_cls_token_summarizes_the_patches():
    config = family.member_config("vit_tokens", str(LABEL_DIR), **SMALL)
    _, feats, _, _ = _collect(config, "train")
    assert feats.shape[1] == 197
    gains, _ = family._feature_constants(config)
    tokens = feats / gains  # undo the per-channel gains
    pooled = tokens[:, 1:].mean(axis=1)

    def corr(a, b):
        a = a - a.mean(-1, keepdims=True)
        b = b - b.mean(-1, keepdims=True)
        return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))

    cls = corr(tokens[:, 0], pooled).mean()
    patch = corr(tokens[:, 98], pooled).mean()
    assert cls > 0.5 and cls > patch + 0.2, (cls, patch)


def test_members_differ_and_are_deterministic():
    a = family.member_config("flickr_vgg_mild", str(LABEL_DIR), **SMALL)
    b = family.member_config("web_crowded", str(LABEL_DIR), **SMALL)
    fa = _collect(a, "train")[1]
    np.testing.assert_array_equal(fa, _collect(a, "train")[1])
    assert not np.array_equal(fa, _collect(b, "train")[1])
    assert a.cache_key().startswith("flickr_vgg_mild-")
    assert a.cache_key() != dataclasses.replace(a, tag_prob=0.3).cache_key()


def test_bad_member_and_settings():
    with pytest.raises(ValueError, match="members are"):
        family.member_config("nus_liek", str(LABEL_DIR))
    with pytest.raises(ValueError, match="linear_share"):
        family.FamilyConfig(label_dir=str(LABEL_DIR), linear_share=1.5)
    with pytest.raises(ValueError, match="activation"):
        family.FamilyConfig(label_dir=str(LABEL_DIR), activation="gelu")


def test_catalog_names_every_member():
    assert catalog.WORLD_FAMILY == family.MEMBER_DATASETS
    assert set(family.MEMBERS) <= set(catalog.DATASETS)
    for name in family.MEMBERS:
        assert catalog.EVAL_KS[name] == (3, 5)


def test_make_source_reaches_a_member_by_name(tmp_path, monkeypatch):
    small = {**family.MEMBERS["resnet_scenes"], "num_train": 24,
             "num_test": 16, "channels": 32}
    monkeypatch.setitem(family.MEMBERS, "resnet_scenes", small)
    source = make_source(DataConfig(
        dataset="resnet_scenes", cache_dir=str(tmp_path),
        label_dir=str(LABEL_DIR),
    ), progress=False)
    assert source.name == "resnet_scenes"
    assert tuple(source.feature_shape) == (49, 32)
    assert source.split("train").num_examples == 24
    assert os.listdir(tmp_path)[0].startswith("resnet_scenes-")


def test_dataset_flag_accepts_the_members():
    code = (
        "import json, sys\n"
        "from absl import flags\n"
        "from epsilon_tf import flags as f\n"
        "f.define_data_flags()\n"
        "flags.FLAGS(['x', '--dataset=' + sys.argv[1]])\n"
        "print(json.dumps(flags.FLAGS.dataset))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code, "vit_tokens"], capture_output=True,
        text=True, cwd=ROOT, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == "vit_tokens"


def test_default_label_dir_is_beside_the_checkout(monkeypatch):
    monkeypatch.delenv("EPSILON_SHARED_DATA", raising=False)
    beside = ROOT.parent / "shared" / "data" / "nus_wide"
    if not beside.is_dir():
        pytest.skip("no ../shared/data/nus_wide beside the checkout")
    assert nus_like.default_label_dir() == str(beside)


@pytest.mark.slow
def test_bench_family_smoke(tmp_path):
    import re

    from tests.helpers.tiny import child_env

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_family",
         "--members=resnet_scenes,vit_tokens", "--num_train=80",
         "--num_test=40", "--epochs=1", "--models=epsilon,gfp",
         "--seeds=0,1", f"--cache_dir={tmp_path / 'c'}",
         f"--work_dir={tmp_path / 'w'}", f"--label_dir={LABEL_DIR}"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
        env=child_env(),
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "vit_tokens (held out): 197x768" in out
    assert "resnet_scenes: 49x2048" in out
    for row in ("ESZSL mean_max", "ESZSL max", "ESZSL mean",
                "ESZSL printed", "epsilon", "gfp"):
        assert len(re.findall(rf"^{row} +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+",
                              out, re.MULTILINE)) == 2, out
    # Two seeds of each model, ESZSL once.
    assert len(re.findall(r"^epsilon +(?:[\d.]+ +){4}2 ", out,
                          re.MULTILINE)) == 2, out
    assert out.count("Epsilon / ESZSL printed: ZSL map") == 2
    assert out.count("targets: ZSL mAP >= 1.25x ESZSL: ") == 2
    assert "mAPs >= gfp: " in out


@pytest.mark.parametrize("model, expected", [
    # Session 27's preset (f6559bd): the warm start at ESZSL's own scale.
    ("unscaled", dict(gfp_linear="eszsl", gfp_linear_scale=0.0,
                      form="listwise", epochs=4, min_steps=300)),
    # b459594: also the pairwise hinge.
    ("hinge", dict(gfp_linear="eszsl", gfp_linear_scale=0.0, form="hinge",
                   epochs=4, min_steps=300)),
    # 8e94da7, before issue 22: no linear path, no step budget.
    ("before", dict(gfp_linear="none", form="hinge", epochs=4,
                    min_steps=0)),
])
def test_bench_family_earlier_presets_keep_their_meaning(model, expected):
    from benchmarks.bench_family import _configs

    model_cfg, loss_cfg, train_cfg = _configs(model, (196, 512))
    found = {k: getattr(model_cfg if hasattr(model_cfg, k) else
                        loss_cfg if hasattr(loss_cfg, k) else train_cfg, k)
             for k in expected}
    assert found == expected
    # The rest is the release preset: hidden 128, grouping over prompts.
    assert (model_cfg.hidden_dim, model_cfg.grouping) == (128, "groups")
