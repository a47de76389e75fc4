"""Tests for the restricted unpickler."""

import os
import pickle

import numpy as np
import pytest

from epsilon_tf.data.readers.safe_pickle import (
    UnsafePickleError,
    load_pickle,
    loads_pickle,
)


class _Hostile:
    """Unpickling this with plain pickle would run a shell command."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _HostileEval:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def _dump(tmp_path, obj, name="obj.pkl", protocol=pickle.HIGHEST_PROTOCOL):
    path = tmp_path / name
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_containers_round_trip(tmp_path, protocol):
    obj = [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array(["/m/01", "/m/02"], dtype=object),
        {"img_names": ["a_1.jpg", "b_2.jpg"], "n": 2, "x": np.float32(1.5)},
        np.array(["ab", "c"]),
        np.arange(6, dtype=np.int8)[::2],
        (None, True, b"raw", 3.0),
    ]
    path = _dump(tmp_path, obj, protocol=protocol)
    out = load_pickle(path)
    np.testing.assert_array_equal(out[0], obj[0])
    assert out[0].dtype == np.float32
    assert list(out[1]) == ["/m/01", "/m/02"]
    assert out[2]["img_names"] == ["a_1.jpg", "b_2.jpg"]
    assert out[2]["x"] == np.float32(1.5)
    np.testing.assert_array_equal(out[3], obj[3])
    np.testing.assert_array_equal(out[4], [0, 2, 4])
    assert out[5] == (None, True, b"raw", 3.0)


def test_hostile_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = _dump(tmp_path, _Hostile(f"echo pwned > {marker}"), "evil.pkl")
    with pytest.raises(UnsafePickleError) as info:
        load_pickle(path)
    message = str(info.value)
    assert str(path) in message
    assert "system" in message  # "posix.system" / "nt.system"
    assert not marker.exists()
    assert isinstance(info.value, ValueError)


def test_hostile_pickle_inside_a_list_is_refused(tmp_path):
    marker = tmp_path / "pwned2"
    obj = [np.zeros(3), _Hostile(f"touch {marker}")]
    with pytest.raises(UnsafePickleError, match="system"):
        load_pickle(_dump(tmp_path, obj, protocol=2))
    assert not marker.exists()


def test_builtins_eval_is_refused(tmp_path):
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        load_pickle(_dump(tmp_path, _HostileEval()))


def test_codecs_encode_is_limited_to_latin1():
    import _codecs

    class _Rot:
        def __reduce__(self):
            return (_codecs.encode, ("abc", "rot13"))

    with pytest.raises(UnsafePickleError, match="latin1"):
        loads_pickle(pickle.dumps(_Rot(), protocol=2))


def test_truncated_pickle_names_the_file(tmp_path):
    path = _dump(tmp_path, [np.ones((50, 30), np.float32)] * 2)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated") as info:
        load_pickle(truncated)
    assert str(truncated) in str(info.value)
    assert not isinstance(info.value, UnsafePickleError)


def test_garbage_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"this is not a pickle at all")
    with pytest.raises(ValueError, match="garbage.pkl"):
        load_pickle(garbage)
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        load_pickle(tmp_path / "nope.pkl")


def test_release_pickles_load(shared_data):
    vectors = load_pickle(
        shared_data
        / "nus_wide"
        / "NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300"
    )
    assert [v.shape for v in vectors] == [(1000, 300), (81, 300)]
    assert vectors[0].dtype == np.float32
    unseen = load_pickle(shared_data / "open_images" / "unseen_labels.pkl")
    assert unseen.shape == (2594,)
    assert all(isinstance(m, str) and m.startswith("/m/") for m in unseen)
