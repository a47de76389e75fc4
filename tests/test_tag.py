"""epsilon-tag: images (or features) in, top-k labels out (issue 23)."""

import csv
import http.server
import json
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from epsilon_tf.config import ModelConfig
from epsilon_tf.export import export_saved_model
from epsilon_tf.export.backbones import make_backbone
from epsilon_tf.labels import LabelSpace
from epsilon_tf.models import build_epsilon, with_labels
from epsilon_tf.tools import tag as tag_tool
from tests.helpers import tiny
from tests.test_extract_features import write_images

TRAINED = ["cat", "dog", "sky", "tree", "car", "boat"]  # 4 seen, 2 unseen
WORDS = ["cat", "dog", "sky", "tree", "car", "boat", "zebra", "street", "art"]
DIM = 6
SHAPE = (4, 512)  # vgg19 at 32x32


def _word_vectors():
    rng = np.random.default_rng(3)
    return {w: rng.normal(size=DIM).astype(np.float32) for w in WORDS}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tag")
    vectors = _word_vectors()
    (root / "glove.txt").write_text("".join(
        f"{w} " + " ".join(f"{v:.6f}" for v in vec) + "\n"
        for w, vec in vectors.items()
    ))
    glove = {w: np.asarray([float(f"{v:.6f}") for v in vec], np.float32)
             for w, vec in vectors.items()}
    space = LabelSpace.from_arrays(
        TRAINED, np.stack([glove[n] for n in TRAINED]), seen=[0, 1, 2, 3]
    )
    keras.utils.set_random_seed(5)
    model = build_epsilon(
        ModelConfig(feature_shape=SHAPE, hidden_dim=8, gpa_heads=2,
                    num_prompts=2, gfp_blocks=1),
        space.subset("seen"),
    )
    tiny.perturb_weights(model, seed=5)
    run = root / "run"
    space.save(run / "label_space")
    model.save(run / "model.keras")
    export = export_saved_model(model, space, str(run / "export"), top_k=3)
    images = root / "images"
    images.mkdir()
    names = write_images(images, count=3)
    # Another vocabulary: two trained labels, three never trained on.
    (root / "new.txt").write_text("dog\nzebra\nstreet_art\ncat\nboat\n")
    return dict(root=root, run=run, export=export, images=images,
                names=names, model=model, glove=glove, space=space)


def _expected(setup, vocab):
    backbone, preprocess = make_backbone("vgg19", None, 32, seed=0)
    pixels = np.stack([
        tf.image.resize(tf.cast(tf.io.decode_image(tf.io.read_file(
            str(setup["images"] / n)), channels=3), tf.float32),
            (32, 32)).numpy()
        for n in sorted(setup["names"])
    ])
    features = backbone(preprocess(pixels)).numpy()
    vectors = np.stack([
        setup["glove"][n] if n in setup["glove"]
        else (setup["glove"]["street"] + setup["glove"]["art"]) / 2
        for n in vocab
    ])
    return with_labels(setup["model"], vectors)(features)["scores"].numpy()


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_images_with_a_new_vocabulary(setup, tmp_path):
    vocab = ["dog", "zebra", "street_art", "cat", "boat"]
    expected = _expected(setup, vocab)
    outputs = {}
    for name, model in (("run", setup["run"]), ("saved", setup["export"])):
        out = tmp_path / f"{name}.csv"
        assert tag_tool.main([
            "--images_dir", str(setup["images"]), "--model", str(model),
            "--names", str(setup["root"] / "new.txt"), "--vectors",
            str(setup["root"] / "glove.txt"), "--weights", "none",
            "--image_size", "32", "--top_k", "5", "--output", str(out),
            "--no_progress",
        ]) == 0
        outputs[name] = _read_csv(out)
    for rows in outputs.values():
        assert len(rows) == 15
        for i, image in enumerate(sorted(setup["names"])):
            mine = [r for r in rows if r["image"] == image]
            assert [r["rank"] for r in mine] == ["1", "2", "3", "4", "5"]
            order = np.argsort(-expected[i], kind="stable")
            assert [r["label"] for r in mine] == [vocab[j] for j in order]
            np.testing.assert_allclose(
                [float(r["score"]) for r in mine], expected[i][order],
                atol=1e-4,
            )
            # Unseen: not one of the model's seen labels ("boat" was in
            # its vocabulary, but unseen).
            assert {r["label"]: r["unseen"] for r in mine} == {
                "dog": "0", "cat": "0", "zebra": "1", "street_art": "1",
                "boat": "1"}


def test_features_file_json_and_own_vocabulary(setup, tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2,) + SHAPE).astype(np.float32)
    np.save(tmp_path / "f.npy", features)
    out = tmp_path / "tags.json"
    assert tag_tool.main([
        "--features", str(tmp_path / "f.npy"), "--model", str(setup["run"]
                                                               / "export"),
        "--top_k", "2", "--output", str(out),
    ]) == 0
    doc = json.loads(out.read_text())
    scores = setup["model"](features)["scores"].numpy()
    assert doc["num_labels"] == 6 and doc["num_unseen"] == 2
    for i, entry in enumerate(doc["images"]):
        order = np.argsort(-scores[i], kind="stable")[:2]
        assert entry["image"] == str(i)
        assert [x["label"] for x in entry["labels"]] == [
            TRAINED[j] for j in order]
        assert [x["unseen"] for x in entry["labels"]] == [
            bool(j >= 4) for j in order]
        np.testing.assert_allclose(
            [x["score"] for x in entry["labels"]], scores[i][order],
            atol=1e-4)


class _StandIn(http.server.BaseHTTPRequestHandler):
    """A stand-in for TF Serving's REST predict API (the model server
    cannot be installed here): it answers `POST /v1/models/NAME:predict`
    with the columnar `inputs` request as TF Serving documents it, running
    the exported `score_labels` signature, and replies `{"outputs": ...}`.
    """

    signature = None
    requests = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, body))
        inputs = body["inputs"]
        out = type(self).signature(
            features=tf.constant(inputs["features"], tf.float32),
            label_embeddings=tf.constant(inputs["label_embeddings"],
                                         tf.float32),
        )
        reply = json.dumps({"outputs": out["scores"].numpy().tolist()})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(reply.encode())

    def log_message(self, *args):
        pass


def test_rest_client_gives_the_same_tags(setup, tmp_path):
    _StandIn.signature = tf.saved_model.load(
        setup["export"]).signatures["score_labels"]
    server = http.server.HTTPServer(("127.0.0.1", 0), _StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        common = ["--images_dir", str(setup["images"]), "--model",
                  str(setup["export"]), "--weights", "none", "--image_size",
                  "32", "--top_k", "4", "--no_progress"]
        tag_tool.main(common + ["--output", str(tmp_path / "local.csv")])
        tag_tool.main(common + [
            "--server", f"127.0.0.1:{server.server_port}", "--model_name",
            "mine", "--output", str(tmp_path / "rest.csv")])
    finally:
        server.shutdown()
    path, body = _StandIn.requests[-1]
    assert path == "/v1/models/mine:predict"
    assert body["signature_name"] == "score_labels"
    local, rest = (_read_csv(tmp_path / f) for f in ("local.csv", "rest.csv"))
    assert [(r["image"], r["label"], r["unseen"]) for r in local] == [
        (r["image"], r["label"], r["unseen"]) for r in rest]
    np.testing.assert_allclose([float(r["score"]) for r in local],
                               [float(r["score"]) for r in rest], atol=1e-5)


def test_mistakes_in_one_line(setup, tmp_path, capsys):
    from epsilon_tf.cli import common

    (tmp_path / "wide.txt").write_text("cat 1 2 3\n")
    (tmp_path / "names.txt").write_text("cat\n")
    base = ["--model", str(setup["run"]), "--weights", "none", "--output",
            str(tmp_path / "t.csv")]
    # The command line's own error handler, in-process.
    with pytest.raises(SystemExit) as info:
        with common.clean_exit(tag_tool.PROGRAM):
            tag_tool.main(base + [
                "--names", str(tmp_path / "names.txt"), "--vectors",
                str(tmp_path / "wide.txt"), "--images_dir",
                str(setup["images"])])
    assert info.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        "epsilon-tag: error: The vocabulary's vectors have 3 dimensions but "
        f"the model scores {DIM}-dimensional word vectors: give vectors of "
        "the kind the model was trained with"
    ]
    for extra, error, message in [
        (["--images_dir", str(setup["images"]), "--image_size", "64"],
         ValueError, r"^--backbone=vgg19 at --image_size=64 gives features "
         r"16x512 but the model takes 4x512"),
        (["--images_dir", str(tmp_path / "nope")],
         tag_tool.CommandLineError, "is not a directory"),
        (["--features", str(tmp_path / "names.txt"), "--images_dir",
          str(setup["images"])],
         tag_tool.CommandLineError, "one of them"),
    ]:
        with pytest.raises(error, match=message):
            tag_tool.main(base + extra)
    assert not (tmp_path / "t.csv").exists()
