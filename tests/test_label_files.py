"""Tests for the NUS-WIDE / Open Images label-file readers."""

import pickle

import numpy as np
import pytest

from epsilon_tf.data.readers import label_files as lf

BOM = "\ufeff"


def _write(path, text, crlf=False, bom=False):
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes(((BOM if bom else "") + text).encode("utf-8"))
    return path


def _pickle(path, obj, protocol=2):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


# ---------------------------------------------------------------------------
# Text readers


def test_read_lines_handles_crlf_bom_and_trailing_blank(tmp_path):
    path = _write(tmp_path / "a.txt", "sky\nwater \n\n", crlf=True, bom=True)
    assert lf.read_lines(path) == ["sky", "water"]


def test_read_lines_rejects_blank_line_in_the_middle(tmp_path):
    path = _write(tmp_path / "a.txt", "sky\n\nwater\n")
    with pytest.raises(ValueError, match=r"a\.txt: line 2 is empty"):
        lf.read_lines(path)


def test_read_int_lines(tmp_path):
    path = _write(tmp_path / "top.csv", "991\n1039\n5\n", crlf=True, bom=True)
    np.testing.assert_array_equal(lf.read_int_lines(path), [991, 1039, 5])
    bad = _write(tmp_path / "bad.csv", "1\nx\n")
    with pytest.raises(ValueError, match=r"bad\.csv: line 2"):
        lf.read_int_lines(bad)


def test_class_descriptions_quotes_and_commas(tmp_path):
    text = (
        '/m/01,"Ducks, geese and swans"\n'
        '/m/02,"Fiat 500 ""topolino"""\n'
        "/m/03, Anole\n"
        "/m/04,Cat\n"
    )
    path = _write(tmp_path / "d.csv", text, crlf=True, bom=True)
    d = lf.read_class_descriptions(path)
    assert d == {
        "/m/01": "Ducks, geese and swans",
        "/m/02": 'Fiat 500 "topolino"',
        "/m/03": "Anole",
        "/m/04": "Cat",
    }
    bad = _write(tmp_path / "bad.csv", "/m/01,a,b\n")
    with pytest.raises(ValueError, match=r"bad\.csv: row 1 must have 2"):
        lf.read_class_descriptions(bad)


# ---------------------------------------------------------------------------
# NUS-WIDE (synthetic files in the release layout)


def _nus_files(tmp_path, rows=(5, 3)):
    tags = _write(tmp_path / "TagList1k.txt", "t0\nc1\nt2\nt3\nc0\n", True)
    concepts = _write(tmp_path / "Concepts81.txt", "c0\nc1\nc2\n", True)
    rng = np.random.default_rng(0)
    v_tags = rng.normal(size=(rows[0], 4)).astype(np.float32)
    v_concepts = rng.normal(size=(rows[1], 4)).astype(np.float32)
    vectors = _pickle(tmp_path / "w2v", [v_tags, v_concepts], protocol=3)
    return tags, concepts, vectors, v_tags, v_concepts


def test_nus_wide_label_space_synthetic(tmp_path):
    tags, concepts, vectors, v_tags, v_concepts = _nus_files(tmp_path)
    idx = lf.nus_wide_seen_tag_indices(tags, concepts)
    np.testing.assert_array_equal(idx, [0, 2, 3])
    space = lf.nus_wide_label_space(tags, concepts, vectors)
    assert space.names == ("t0", "t2", "t3", "c0", "c1", "c2")
    np.testing.assert_array_equal(space.seen, [0, 1, 2])
    np.testing.assert_array_equal(space.unseen, [3, 4, 5])
    np.testing.assert_array_equal(space.vectors[:3], v_tags[[0, 2, 3]])
    np.testing.assert_array_equal(space.vectors[3:], v_concepts)


def test_nus_wide_vector_rows_must_match(tmp_path):
    tags, concepts, vectors, *_ = _nus_files(tmp_path, rows=(4, 3))
    with pytest.raises(ValueError) as info:
        lf.nus_wide_label_space(tags, concepts, vectors)
    message = str(info.value)
    assert "w2v" in message and "4 rows" in message and "5 labels" in message


def test_word_vector_pickle_layout_errors(tmp_path):
    single = _pickle(tmp_path / "one", np.zeros((3, 4)))
    with pytest.raises(ValueError, match="list of two arrays"):
        lf.load_word_vectors(single, (3, 1))
    dims = _pickle(tmp_path / "dims", [np.ones((3, 4)), np.ones((1, 5))])
    with pytest.raises(ValueError, match="same embedding size"):
        lf.load_word_vectors(dims, (3, 1))


# ---------------------------------------------------------------------------
# Open Images (synthetic)


def _oi_files(tmp_path, top="2\n0\n", unseen_rows=3):
    trainable = _write(tmp_path / "classes-trainable.txt", "/m/a\n/m/b\n")
    unseen = _pickle(
        tmp_path / "unseen_labels.pkl",
        np.array(["/m/u0", "/m/u1", "/m/u2"], dtype=object),
    )
    top_path = _write(tmp_path / "top.csv", top, crlf=True, bom=True)
    desc = _write(
        tmp_path / "class-descriptions.csv",
        '/m/a,"Ball, round"\n/m/b,Organ\n/m/u0,Organ\n/m/u2,Cat\n'
        "/m/zz,Unused\n",
        crlf=True,
    )
    rng = np.random.default_rng(1)
    v_seen = rng.normal(size=(2, 6)).astype(np.float32)
    v_unseen = rng.normal(size=(unseen_rows, 6)).astype(np.float32)
    vectors = _pickle(tmp_path / "oi_w2v.pkl", [v_seen, v_unseen])
    return trainable, unseen, top_path, desc, vectors, v_seen, v_unseen


def test_open_images_label_space_synthetic(tmp_path):
    trainable, unseen, top, desc, vectors, v_seen, v_unseen = _oi_files(
        tmp_path
    )
    space, meta = lf.open_images_label_space(
        trainable, unseen, top, desc, vectors, return_metadata=True
    )
    # u2 first (top order), u0 second; "Organ" collides -> disambiguated.
    assert meta.mids == ("/m/a", "/m/b", "/m/u2", "/m/u0")
    assert space.names == (
        "Ball, round",
        "Organ (/m/b)",
        "Cat",
        "Organ (/m/u0)",
    )
    np.testing.assert_array_equal(space.seen, [0, 1])
    np.testing.assert_array_equal(space.unseen, [2, 3])
    np.testing.assert_array_equal(space.vectors[:2], v_seen)
    np.testing.assert_array_equal(space.vectors[2], v_unseen[2])
    np.testing.assert_array_equal(space.vectors[3], v_unseen[0])
    assert meta.missing_descriptions == ()
    np.testing.assert_array_equal(meta.top_unseen_indices, [2, 0])


def test_open_images_missing_description_falls_back_to_mid(tmp_path):
    trainable, unseen, _, desc, *_ = _oi_files(tmp_path)
    top = _write(tmp_path / "top1.csv", "1\n")
    meta = lf.open_images_label_metadata(trainable, unseen, top, desc)
    assert meta.names[-1] == "/m/u1"
    assert meta.missing_descriptions == ("/m/u1",)


def test_open_images_top_index_out_of_range(tmp_path):
    trainable, unseen, _, desc, *_ = _oi_files(tmp_path)
    top = _write(tmp_path / "top_bad.csv", "0\n3\n")
    with pytest.raises(ValueError, match=r"top_bad\.csv.*\[0, 3\)"):
        lf.open_images_label_metadata(trainable, unseen, top, desc)


def test_open_images_vector_rows_must_match(tmp_path):
    trainable, unseen, top, desc, vectors, *_ = _oi_files(
        tmp_path, unseen_rows=2
    )
    with pytest.raises(ValueError) as info:
        lf.open_images_label_space(trainable, unseen, top, desc, vectors)
    message = str(info.value)
    assert "oi_w2v.pkl" in message
    assert "2 rows" in message and "3 labels" in message


# ---------------------------------------------------------------------------
# The release files in ../shared/data


def test_real_nus_wide_vocabulary(shared_data):
    d = shared_data / "nus_wide"
    tags = lf.read_lines(d / "TagList1k.txt")
    concepts = lf.read_lines(d / "Concepts81.txt")
    assert len(tags) == 1000 and len(concepts) == 81
    assert all("\r" not in t for t in tags + concepts)
    overlap = [t for t in tags if t in set(concepts)]
    assert len(overlap) == 75
    missing = sorted(c for c in concepts if c not in set(tags))
    assert missing == [
        "computer",
        "fire",
        "map",
        "swimmers",
        "tattoo",
        "whales",
    ]

    space = lf.nus_wide_label_space(
        d / "TagList1k.txt",
        d / "Concepts81.txt",
        d / "NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300",
    )
    assert space.num_labels == 1006 and space.embedding_dim == 300
    np.testing.assert_array_equal(space.seen, np.arange(925))
    np.testing.assert_array_equal(space.unseen, np.arange(925, 1006))
    assert space.names[925:] == tuple(concepts)
    assert not set(space.names[:925]) & set(concepts)
    assert space.names[:3] == ("nature", "blue", "red")  # sky is a concept
    a, b = space.index_of(["interesting", "interestingness"])
    np.testing.assert_array_equal(space.vectors[a], space.vectors[b])
    idx = lf.nus_wide_seen_tag_indices(
        d / "TagList1k.txt", d / "Concepts81.txt"
    )
    assert idx.shape == (925,)
    assert [tags[i] for i in idx] == list(space.names[:925])


def test_real_open_images_vocabulary(shared_data, tmp_path):
    d = shared_data / "open_images"
    args = (
        d / "classes-trainable.txt",
        d / "unseen_labels.pkl",
        d / "top_400_unseen.csv",
        d / "class-descriptions.csv",
    )
    meta = lf.open_images_label_metadata(*args)
    assert len(meta.seen_mids) == 7186
    assert len(meta.all_unseen_mids) == 2594
    assert meta.num_unseen == 400
    assert meta.top_unseen_indices[0] == 991  # BOM + CRLF handled
    assert len(meta.names) == 7586 and len(set(meta.names)) == 7586
    assert meta.missing_descriptions == ()
    descriptions = lf.read_class_descriptions(d / "class-descriptions.csv")
    assert len(descriptions) == 19995
    assert descriptions["/m/01c_0l"] == "Ducks, geese and swans"
    assert descriptions["/m/02wvth"] == 'Fiat 500 "topolino"'

    rng = np.random.default_rng(0)
    seen_v = rng.normal(size=(7186, 8)).astype(np.float32)
    unseen_v = rng.normal(size=(2594, 8)).astype(np.float32)
    vectors = _pickle(tmp_path / "oi.pkl", [seen_v, unseen_v], protocol=4)
    space = lf.open_images_label_space(*args, vectors)
    assert space.num_labels == 7586
    assert len(space.seen) == 7186 and len(space.unseen) == 400
    np.testing.assert_array_equal(space.vectors[:7186], seen_v)
    np.testing.assert_array_equal(
        space.vectors[7186:], unseen_v[meta.top_unseen_indices]
    )
