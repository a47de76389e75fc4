"""Label spaces from label names and word vectors (issue 23, item 1)."""

import gzip
import pickle
import subprocess
import sys

import numpy as np
import pytest

from epsilon_tf.errors import InputDataError
from epsilon_tf.labels import LabelSpace
from epsilon_tf.labels.from_words import (
    label_space_from_words,
    read_label_names,
    read_word_vectors,
)
from epsilon_tf.tools import make_label_space as tool

WORDS = {
    "cat": [1.0, 0.0, 0.0],
    "dog": [0.0, 2.0, 0.0],
    "golden": [1.0, 1.0, 0.0],
    "retriever": [3.0, 1.0, 4.0],
    "street": [0.0, 0.0, 2.0],
    "art": [2.0, 0.0, 0.0],
    "Paris": [5.0, 5.0, 5.0],
    "new_york": [7.0, 0.0, 7.0],
}


def glove_text(words=WORDS, header=False):
    lines = [f"{len(words)} 3"] if header else []
    lines += [f"{w} " + " ".join(str(v) for v in vec)
              for w, vec in words.items()]
    return "\n".join(lines) + "\n"


def test_glove_names_multiword_and_case(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text(glove_text())
    names = ["Cat", "golden retriever", "street_art", "Paris", "New York"]
    space = label_space_from_words(names, str(path), unseen=["street_art"])
    np.testing.assert_allclose(space.vectors, [
        [1, 0, 0],  # "Cat": lower-cased
        [2, 1, 2],  # mean of golden and retriever
        [1, 0, 1],  # mean of street and art
        [5, 5, 5],  # as written
        [7, 0, 7],  # its own token new_york
    ], atol=1e-6)
    assert space.names == tuple(names)
    assert space.unseen.tolist() == [2]
    assert space.seen.tolist() == [0, 1, 3, 4]


def test_missing_names_listed_in_one_error(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text(glove_text())
    with pytest.raises(InputDataError) as info:
        label_space_from_words(
            ["cat", "zebra", "golden unicorn", "yak"], str(path)
        )
    message = str(info.value)
    assert "3 label name(s) have no vector" in message
    assert "'zebra'" in message and "'yak'" in message
    assert "'golden unicorn (no unicorn)'" in message
    assert str(path) in message


def test_streaming_keeps_only_wanted_words_and_reads_word2vec(tmp_path):
    path = tmp_path / "w2v.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write(glove_text(header=True))
    found, dim = read_word_vectors(str(path), {"dog", "art", "absent"})
    assert dim == 3
    assert sorted(found) == ["art", "dog"]
    np.testing.assert_array_equal(found["dog"], [0, 2, 0])


def test_bad_vector_line_named(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("cat 1 2 3\ndog 1 2\n")
    with pytest.raises(InputDataError, match=r"glove.txt, line 2: 2 values "
                       r"where the file's vectors have 3"):
        read_word_vectors(str(path), {"cat"})


def test_csv_names_with_marks(tmp_path):
    path = tmp_path / "tags.csv"
    path.write_text("name,split\ncat,seen\ndog,unseen\nsky,train\n")
    assert read_label_names(str(path)) == (["cat", "dog", "sky"], ["dog"])
    path.write_text("label,seen\ncat,1\ndog,0\n")
    assert read_label_names(str(path)) == (["cat", "dog"], ["dog"])
    path.write_text("name,unseen\ncat,maybe\n")
    with pytest.raises(InputDataError, match=r"line 2: column `unseen`"):
        read_label_names(str(path))
    path.write_text("tag\ncat\n")
    with pytest.raises(InputDataError, match="must name a `name`"):
        read_label_names(str(path))
    text = tmp_path / "tags.txt"
    text.write_text("# my tags\ncat\n\ndog\ncat\n")
    with pytest.raises(InputDataError, match=r"Repeated: \['cat'\]"):
        read_label_names(str(text))


def test_arrays_npy_npz_pickle(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\n")
    matrix = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "v.npy", matrix)
    np.savez(tmp_path / "v.npz", vectors=matrix, other=matrix[:1])
    with open(tmp_path / "v.pkl", "wb") as f:
        pickle.dump([matrix[:2], matrix[2:]], f)
    for file in ("v.npy", "v.npz", "v.pkl"):
        space = tool.make_label_space(str(names), str(tmp_path / file),
                                      unseen=["c"])
        np.testing.assert_array_equal(space.vectors, matrix)
        assert space.unseen.tolist() == [2]
    np.save(tmp_path / "short.npy", matrix[:2])
    with pytest.raises(InputDataError, match=r"\[3, E\].*shape=\(2, 4\)"):
        tool.make_label_space(str(names), str(tmp_path / "short.npy"))


def test_unsafe_pickle_refused(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("a\n")

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(ValueError, match="--vectors: cannot read"):
        tool.make_label_space(str(names), str(tmp_path / "evil.pkl"))


def test_command_writes_a_loadable_space(tmp_path, capsys):
    (tmp_path / "glove.txt").write_text(glove_text())
    (tmp_path / "tags.txt").write_text("cat\ndog\nstreet_art\n")
    (tmp_path / "unseen.txt").write_text("street_art\n")
    out = tmp_path / "labels"
    assert tool.main([
        "--names", str(tmp_path / "tags.txt"), "--vectors",
        str(tmp_path / "glove.txt"), "--unseen_file",
        str(tmp_path / "unseen.txt"), "--output_dir", str(out),
    ]) == 0
    assert "3 labels (2 seen, 1 unseen; 3-dimensional" in (
        capsys.readouterr().out
    )
    space = LabelSpace.load(str(out))
    assert space.names == ("cat", "dog", "street_art")
    assert space.unseen.tolist() == [2]
    with pytest.raises(tool.common.CommandLineError, match="--overwrite"):
        tool.main(["--names", str(tmp_path / "tags.txt"), "--vectors",
                   str(tmp_path / "glove.txt"), "--output_dir", str(out)])


def test_command_one_error_line(tmp_path):
    (tmp_path / "glove.txt").write_text(glove_text())
    (tmp_path / "tags.txt").write_text("cat\nzebra\n")
    result = subprocess.run(
        [sys.executable, "-m", "epsilon_tf.tools.make_label_space",
         "--names", str(tmp_path / "tags.txt"), "--vectors",
         str(tmp_path / "glove.txt"), "--output_dir", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "epsilon-label-space: error: 1 label name(s) have no vector in "
        f"{tmp_path / 'glove.txt'}: 'zebra' (rename them, or drop them "
        "from the names file)"
    ]
    assert not (tmp_path / "o").exists()


def _has_keras_hub():
    import importlib.util

    return importlib.util.find_spec("keras_hub") is not None


def _tiny_clip_preset(directory):
    """A randomly initialised CLIP of a few hundred weights, saved as a
    local keras-hub preset (letters-only byte-pair vocabulary)."""
    import string

    import keras
    import keras_hub

    letters = string.ascii_lowercase
    tokens = (["th"] + list(letters) + [c + "</w>" for c in letters]
              + ["th</w>", "<|startoftext|>", "<|endoftext|>"])
    tokenizer = keras_hub.models.CLIPTokenizer(
        vocabulary={t: i for i, t in enumerate(tokens)}, merges=["t h"])
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.CLIPBackbone(
        vision_encoder=keras_hub.models.CLIPVisionEncoder(
            patch_size=16, hidden_dim=8, num_layers=1, num_heads=2,
            intermediate_dim=16, image_shape=(32, 32, 3)),
        text_encoder=keras_hub.models.CLIPTextEncoder(
            vocabulary_size=len(tokens), embedding_dim=8, hidden_dim=8,
            num_layers=1, num_heads=2, intermediate_dim=16,
            max_sequence_length=16),
        projection_dim=6,
    )
    backbone.save_to_preset(str(directory))
    tokenizer.save_to_preset(str(directory))
    return backbone, tokenizer


@pytest.mark.skipif(not _has_keras_hub(), reason="the [clip] extra "
                    "(keras-hub, tensorflow-text) is not installed")
def test_clip_text_encoder_label_space(tmp_path):
    import keras_hub

    backbone, tokenizer = _tiny_clip_preset(tmp_path / "clip")
    (tmp_path / "tags.txt").write_text("cat\nstreet_art\n")
    out = tmp_path / "labels"
    assert tool.main([
        "--names", str(tmp_path / "tags.txt"), "--clip_preset",
        str(tmp_path / "clip"), "--prompt", "a photo of a {}",
        "--unseen", "street_art", "--output_dir", str(out),
    ]) == 0
    space = LabelSpace.load(str(out))
    packer = keras_hub.layers.StartEndPacker(
        start_value=tokenizer.start_token_id,
        end_value=tokenizer.end_token_id,
        pad_value=tokenizer.pad_token_id, sequence_length=16)
    ids = packer(tokenizer(["a photo of a cat", "a photo of a street art"]))
    np.testing.assert_allclose(
        space.vectors, np.asarray(backbone.get_text_embeddings(ids)),
        atol=1e-5)
    assert space.vectors.shape == (2, 6) and space.unseen.tolist() == [1]
    other = tool.make_label_space(str(tmp_path / "tags.txt"),
                                  clip_preset=str(tmp_path / "clip"))
    assert np.abs(other.vectors - space.vectors).max() > 1e-4  # the prompt


@pytest.mark.skipif(_has_keras_hub(), reason="keras-hub is installed")
def test_clip_without_the_extra_names_it(tmp_path):
    (tmp_path / "tags.txt").write_text("cat\n")
    (tmp_path / "clip").mkdir()
    with pytest.raises(ImportError, match=r"pip install -e \.\[clip\]"):
        tool.make_label_space(str(tmp_path / "tags.txt"),
                              clip_preset=str(tmp_path / "clip"))


def test_clip_flags_checked(tmp_path):
    (tmp_path / "tags.txt").write_text("cat\n")
    base = ["--names", str(tmp_path / "tags.txt"), "--output_dir",
            str(tmp_path / "o")]
    with pytest.raises(tool.common.CommandLineError, match="one of them"):
        tool.main(base)
    with pytest.raises(tool.common.CommandLineError, match='one "{}"'):
        tool.main(base + ["--clip_preset", str(tmp_path), "--prompt", "x"])
