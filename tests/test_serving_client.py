"""Tests of the TF Serving clients against TF Serving's own contracts.

No TF Serving binary or container exists here, so the server side is
emulated with the exported SavedModel itself: gRPC `PredictRequest` ->
`tf.make_ndarray` -> the loaded signature -> `tf.make_tensor_proto` ->
`PredictResponse` (also over a real in-process gRPC server using the
`tensorflow_serving` service stubs), and the REST predict API's JSON
row/columnar encodings over a local HTTP server.
"""

import base64
import http.server
import io
import json
import threading
from concurrent import futures

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny
from PIL import Image
from tensorflow_serving.apis import (
    predict_pb2,
    prediction_service_pb2_grpc,
)

from epsilon_tf.export import client, export_saved_model
from epsilon_tf.labels import LabelSpace
from epsilon_tf.models import build_epsilon, with_labels
from epsilon_tf.tools import serving_client

CONFIG = tiny.model_config(
    feature_shape=(16, 8), embedding_dim=12, num_global=2
)
TOP_K = 4


def _preprocess(x):
    return x / 127.5 - 1.0


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(model, space, backbone, loaded SavedModel) with serving_images."""
    rng = np.random.default_rng(0)
    space = LabelSpace.from_arrays(
        [f"tag_{i}" for i in range(18)],
        rng.normal(size=(18, 12)).astype("float32"),
        seen=np.arange(14),
    )
    keras.utils.set_random_seed(1)
    model = build_epsilon(CONFIG, space.subset("seen"))
    backbone = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, strides=8)],
        name="tiny_backbone",
    )
    base = tmp_path_factory.mktemp("served")
    path = export_saved_model(
        model, space, str(base), top_k=TOP_K, backbone=(backbone, _preprocess)
    )
    return model, space, backbone, tf.saved_model.load(path)


def _features(batch=3, seed=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, 16, 8)).astype("float32")


def _expected_labels(scores, space, k=TOP_K):
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    unseen = space.unseen_mask
    return [
        [(space.names[j], float(scores[i, j]), bool(unseen[j])) for j in row]
        for i, row in enumerate(order)
    ]


def _assert_labels_equal(got, expected, atol=1e-5):
    assert len(got) == len(expected)
    for got_row, exp_row in zip(got, expected, strict=True):
        assert [g[0] for g in got_row] == [e[0] for e in exp_row]
        assert [g[2] for g in got_row] == [e[2] for e in exp_row]
        np.testing.assert_allclose(
            [g[1] for g in got_row], [e[1] for e in exp_row], atol=atol
        )


# --- server emulation (what TF Serving does with the protos / JSON) --------


def _call_signature(loaded, signature_name, arrays):
    inputs = {
        k: tf.constant(v, dtype=tf.string if v.dtype.kind in "SO" else None)
        for k, v in arrays.items()
    }
    return {
        k: v.numpy()
        for k, v in loaded.signatures[signature_name](**inputs).items()
    }


def _serve_predict_request(loaded, request):
    """TF Serving's Predict: tensors in, tensors out, as protos."""
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    arrays = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    outputs = _call_signature(
        loaded, request.model_spec.signature_name or "serving_default", arrays
    )
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return predict_pb2.PredictResponse.FromString(response.SerializeToString())


def _from_json(value):
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _to_json(value):
    if value.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(
            value
        ).tolist()
    return value.tolist()


def _serve_rest(loaded, body):
    """TF Serving's REST predict API (row and columnar formats)."""
    body = json.loads(json.dumps(body))  # what goes over the wire
    signature = body.get("signature_name", "serving_default")
    if "instances" in body:
        rows = body["instances"]
        arrays = {
            k: np.asarray([_from_json(r[k]) for r in rows]) for k in rows[0]
        }
    else:
        arrays = {
            k: np.asarray(_from_json(v)) for k, v in body["inputs"].items()
        }
    arrays = {
        k: v.astype(object) if v.dtype.kind == "S" else v.astype("float32")
        for k, v in arrays.items()
    }
    outputs = _call_signature(loaded, signature, arrays)
    if "instances" in body:
        batch = len(body["instances"])
        return {
            "predictions": [
                {k: _to_json(v[i : i + 1])[0] for k, v in outputs.items()}
                for i in range(batch)
            ]
        }
    return {"outputs": {k: _to_json(v) for k, v in outputs.items()}}


# --- REST bodies ------------------------------------------------------------


def test_rest_bodies_row_and_columnar():
    x = _features(batch=2)
    row = client.rest_request_body({"features": x})
    assert row["signature_name"] == "serving_default"
    assert len(row["instances"]) == 2
    assert np.asarray(row["instances"][1]["features"]).shape == (16, 8)
    np.testing.assert_allclose(row["instances"][1]["features"], x[1])
    col = client.rest_request_body({"features": x}, format="inputs")
    assert np.asarray(col["inputs"]["features"]).shape == (2, 16, 8)

    w = np.ones((5, 12), "float32")
    body = client.rest_request_body(
        {"features": x, "label_embeddings": w},
        signature_name="score_labels",
        format="inputs",
    )
    assert body["signature_name"] == "score_labels"
    assert np.asarray(body["inputs"]["label_embeddings"]).shape == (5, 12)
    with pytest.raises(ValueError, match="format='inputs'"):
        client.rest_request_body({"features": x, "label_embeddings": w})
    with pytest.raises(ValueError, match="format"):
        client.rest_request_body({"features": x}, format="rows")

    images = client.rest_request_body(
        {"images": [b"\xff\xd8jpeg", b"\x89PNG"]},
        signature_name="serving_images",
    )
    assert images["instances"][0] == {
        "images": {"b64": base64.b64encode(b"\xff\xd8jpeg").decode()}
    }
    json.dumps(images)  # JSON-ready


def test_parse_rest_responses():
    row = {
        "predictions": [
            {
                "top_k_labels": ["cat", "dog"],
                "top_k_scores": [0.9, 0.5],
                "top_k_unseen": [False, True],
                "scores": [0.1, 0.2],
            },
            {
                "top_k_labels": [
                    {"b64": base64.b64encode(b"sky").decode()},
                    "sea",
                ],
                "top_k_scores": [0.7, 0.1],
                "top_k_unseen": [True, False],
                "scores": [0.3, 0.4],
            },
        ]
    }
    expected = [
        [("cat", 0.9, False), ("dog", 0.5, True)],
        [("sky", 0.7, True), ("sea", 0.1, False)],
    ]
    assert client.parse_rest_response(row) == expected
    columnar = {
        "outputs": {
            "top_k_labels": [["cat", "dog"], ["sky", "sea"]],
            "top_k_scores": [[0.9, 0.5], [0.7, 0.1]],
            "top_k_unseen": [[False, True], [True, False]],
        }
    }
    assert client.parse_rest_response(json.dumps(columnar)) == expected
    assert client.parse_rest_response({"predictions": []}) == []
    with pytest.raises(RuntimeError, match="Input `features`"):
        client.parse_rest_response({"error": "Input `features` must ..."})
    with pytest.raises(ValueError, match="labels_from_scores"):
        client.parse_rest_response({"outputs": {"scores": [[1.0]]}})


def test_labels_from_scores():
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.3, 0.2]], "float32")
    got = client.labels_from_scores(
        scores, ["a", "b", "c"], k=2, unseen_mask=[False, True, False]
    )
    assert [[n for n, _, _ in row] for row in got] == [["b", "c"], ["a", "b"]]
    assert got[0][0][2] is True
    with pytest.raises(ValueError, match="one column per name"):
        client.labels_from_scores(scores, ["a", "b"], unseen_mask=[0, 0])
    # Issue 23: without a mask every label came back as seen.
    with pytest.raises(ValueError, match="Say which labels are unseen"):
        client.labels_from_scores(scores, ["a", "b", "c"])
    got = client.labels_from_scores(scores, ["a", "b", "c"], k=3,
                                    trained=["a", "c"])
    assert [(n, u) for n, _, u in got[0]] == [
        ("b", True), ("c", False), ("a", False)]


def test_rest_round_trip_through_the_saved_model(served):
    model, space, _, loaded = served
    x = _features()
    expected = _expected_labels(
        with_labels(model, space.vectors)(x)["scores"].numpy(), space
    )
    for fmt in ("instances", "inputs"):
        body = client.rest_request_body({"features": x}, format=fmt)
        response = _serve_rest(loaded, body)
        _assert_labels_equal(client.parse_rest_response(response), expected)


def test_predict_via_rest_against_a_local_http_server(served):
    model, space, _, loaded = served
    seen = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            seen["path"] = self.path
            length = int(self.headers["Content-Length"])
            body = json.loads(self.rfile.read(length))
            payload = json.dumps(_serve_rest(loaded, body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = client.rest_url("127.0.0.1", server.server_port)
        x = _features(batch=2)
        response = client.predict_via_rest(
            url, client.rest_request_body({"features": x})
        )
    finally:
        server.shutdown()
        server.server_close()
    assert seen["path"] == "/v1/models/epsilon:predict"
    expected = _expected_labels(
        with_labels(model, space.vectors)(x)["scores"].numpy(), space
    )
    _assert_labels_equal(client.parse_rest_response(response), expected)
    assert client.rest_url("h", 1, "m", version=3) == (
        "http://h:1/v1/models/m/versions/3:predict"
    )


# --- gRPC protos ------------------------------------------------------------


def test_predict_request_fields():
    request = client.predict_request(
        {"features": _features(batch=2)}, model_name="tagger", version=5
    )
    assert request.model_spec.name == "tagger"
    assert request.model_spec.signature_name == "serving_default"
    assert request.model_spec.version.value == 5
    proto = request.inputs["features"]
    assert proto.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in proto.tensor_shape.dim] == [2, 16, 8]
    images = client.predict_request(
        {"images": [b"a", b"bc"]}, signature_name="serving_images"
    )
    assert images.inputs["images"].dtype == tf.string.as_datatype_enum
    assert images.inputs["images"].string_val == [b"a", b"bc"]


def test_grpc_proto_contract_serving_default(served):
    model, space, _, loaded = served
    x = _features()
    request = client.predict_request({"features": x})
    response = _serve_predict_request(loaded, request)
    expected = _expected_labels(
        with_labels(model, space.vectors)(x)["scores"].numpy(), space
    )
    _assert_labels_equal(client.parse_predict_response(response), expected)
    outputs = client.response_to_numpy(response)
    assert outputs["scores"].shape == (3, space.num_labels)


def test_grpc_proto_contract_score_labels_open_vocabulary(served):
    model, _, _, loaded = served
    x = _features(batch=2)
    rng = np.random.default_rng(9)
    vectors = rng.normal(size=(6, 12)).astype("float32")
    names = ["zebra", "kayak", "lantern", "cactus", "violin", "glacier"]
    request = client.predict_request(
        {"features": x, "label_embeddings": vectors},
        signature_name="score_labels",
    )
    response = _serve_predict_request(loaded, request)
    scores = client.response_to_numpy(response)["scores"]
    expected = with_labels(model, vectors)(x)["scores"].numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    got = client.labels_from_scores(scores, names, k=3, trained=["kayak"])
    assert [n for n, _, _ in got[0]] == [
        names[j] for j in np.argsort(-expected[0], kind="stable")[:3]
    ]
    assert [u for n, _, u in got[0]] == [n != "kayak" for n, _, _ in got[0]]
    with pytest.raises(ValueError, match="labels_from_scores"):
        client.parse_predict_response(response)


def _jpeg_and_png():
    rng = np.random.default_rng(6)
    blobs = []
    for fmt, size in (("JPEG", (48, 40)), ("PNG", (20, 28))):
        buffer = io.BytesIO()
        pixels = rng.integers(0, 256, size=size + (3,), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format=fmt)
        blobs.append(buffer.getvalue())
    return blobs


def test_grpc_server_round_trip_with_images(served):
    """A real gRPC server (TF Serving's service definition) in-process."""
    model, space, backbone, loaded = served

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802
            return _serve_predict_request(loaded, request)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        Servicer(), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        blobs = _jpeg_and_png()
        response = client.predict_via_grpc(
            "127.0.0.1",
            port,
            {"images": blobs},
            signature_name="serving_images",
        )
    finally:
        server.stop(None)
    pixels = tf.stack(
        [
            tf.image.resize(
                tf.io.decode_image(b, channels=3, expand_animations=False),
                (32, 32),
            )
            for b in blobs
        ]
    )
    features = tf.reshape(backbone(_preprocess(pixels)), (2, 16, 8))
    expected = _expected_labels(
        with_labels(model, space.vectors)(features)["scores"].numpy(), space
    )
    assert response.model_spec.signature_name == "serving_images"
    _assert_labels_equal(
        client.parse_predict_response(response), expected, atol=1e-4
    )


def test_unreachable_servers_in_one_line(tmp_path, capsys):
    """Issue 23: the gRPC client without a server printed a 23-line
    traceback. (The command line's own error handler, run in-process.)"""
    from epsilon_tf.cli import common

    program = "python -m epsilon_tf.tools.serving_client"
    np.save(tmp_path / "f.npy", _features(batch=1))
    (port,) = tiny.free_ports(1)
    for extra, needle in ((["--grpc"], "gRPC UNAVAILABLE"),
                          ([], "cannot reach the model server")):
        with pytest.raises(SystemExit) as info:
            with common.clean_exit(program):
                serving_client.main(["--features", str(tmp_path / "f.npy"),
                             "--port", str(port), "--timeout", "5", *extra])
        assert info.value.code == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        prefix = f"{program}: error: " + (
            f"localhost:{port}: " if extra else f"http://localhost:{port}/")
        assert lines[0].startswith(prefix), lines[0]
        assert needle in lines[0]
