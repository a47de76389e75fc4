"""Clients of an Epsilon model behind TF Serving (REST and gRPC).

Builds TF Serving request bodies and `PredictRequest` protos, and turns the
responses into per-image label lists `[(name, score, unseen), ...]`.

REST (`POST http://HOST:8501/v1/models/epsilon:predict`):

>>> body = rest_request_body({"features": features})
>>> labels = parse_rest_response(predict_via_rest(url, body))

gRPC (port 8500):

>>> response = predict_via_grpc("localhost", 8500, {"features": features})
>>> labels = parse_predict_response(response)

`score_labels` takes a request-time vocabulary `label_embeddings` [K', E]
that is not batched like `features`, so its REST body must use the
columnar `{"inputs": ...}` format; `labels_from_scores` ranks its scores.

From the command line, the top labels of features saved with `np.save`
([images, regions, channels] or one image [regions, channels]):

    python -m epsilon_tf.tools.serving_client --features=feats.npy \
        [--host=localhost] [--port=8501 | --grpc --port=8500] \
        [--model_name=epsilon]
"""

import base64
import json
import os
import urllib.error
import urllib.request

import numpy as np
import tensorflow as tf

SERVING_DEFAULT = "serving_default"
LABEL_OUTPUTS = ("top_k_labels", "top_k_scores", "top_k_unseen")
REST_FORMATS = ("instances", "inputs")


def _json_value(value):
    """A JSON-ready value; bytes become TF Serving's `{"b64": ...}`."""
    if isinstance(value, (bytes, np.bytes_)):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [_json_value(v) for v in value]
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _as_input(value):
    if (
        isinstance(value, (list, tuple))
        and value
        and isinstance(value[0], (bytes, np.bytes_))
    ):
        return np.asarray(value, dtype=object)
    if isinstance(value, (bytes, np.bytes_)):
        return np.asarray([value], dtype=object)
    array = np.asarray(value)
    if array.dtype.kind == "f":
        array = array.astype(np.float32)
    return array


def rest_request_body(
    inputs, signature_name=SERVING_DEFAULT, format="instances"
):
    """A TF Serving REST predict body.

    Args:
        inputs: dict `{input name: array-like}`, e.g. `{"features": x}`
            [batch, N, C], `{"images": [jpeg_bytes, ...]}` or
            `{"features": x, "label_embeddings": w}`. Bytes are sent as
            `{"b64": ...}`.
        signature_name: str. Defaults to "serving_default".
        format: str. "instances" (row format: one dict per image; every
            input must share the batch axis) or "inputs" (columnar).
            Defaults to "instances".

    Returns:
        dict, ready for `json.dumps`.
    """
    if format not in REST_FORMATS:
        raise ValueError(
            f"`format` must be one of {REST_FORMATS}. "
            f"Received: format={format!r}"
        )
    if not isinstance(inputs, dict) or not inputs:
        raise ValueError(
            "`inputs` must be a non-empty dict {input name: value}. "
            f"Received: {type(inputs).__name__}"
        )
    arrays = {name: _as_input(value) for name, value in inputs.items()}
    body = {"signature_name": signature_name}
    if format == "inputs":
        body["inputs"] = {k: _json_value(v) for k, v in arrays.items()}
        return body
    sizes = {k: (len(v) if v.ndim else None) for k, v in arrays.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(
            "The row (`instances`) format needs every input batched along "
            "its first axis with the same size; `label_embeddings` "
            "[num_labels, E] is not batched, so use format='inputs'. "
            f"Received first-axis sizes {sizes}"
        )
    (count,) = set(sizes.values())
    body["instances"] = [
        {k: _json_value(v[i]) for k, v in arrays.items()} for i in range(count)
    ]
    return body


def predict_request(
    inputs, model_name="epsilon", signature_name=SERVING_DEFAULT, version=None
):
    """A gRPC `tensorflow.serving.PredictRequest`.

    Args:
        inputs: dict `{input name: array-like}` (see `rest_request_body`);
            floats are sent as float32, bytes as DT_STRING.
        model_name: str. The served model's name (`MODEL_NAME`). Defaults
            to "epsilon".
        signature_name: str. Defaults to "serving_default".
        version: int or None. A specific version (None: the latest).

    Returns:
        `predict_pb2.PredictRequest`.
    """
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        array = _as_input(value)
        dtype = tf.string if array.dtype.kind in "SO" else None
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array, dtype=dtype))
    return request


def _decode(name):
    if isinstance(name, dict) and "b64" in name:
        name = base64.b64decode(name["b64"])
    if isinstance(name, (bytes, np.bytes_)):
        return bytes(name).decode("utf-8")
    return str(name)


def _label_lists(names, scores, unseen):
    names = np.asarray(names, dtype=object)
    scores = np.asarray(scores, dtype=np.float64)
    unseen = np.asarray(unseen, dtype=bool)
    if not (names.shape == scores.shape == unseen.shape) or names.ndim != 2:
        raise ValueError(
            "`top_k_labels`, `top_k_scores` and `top_k_unseen` must share "
            f"one [batch, k] shape. Received: {names.shape}, "
            f"{scores.shape}, {unseen.shape}"
        )
    return [
        [
            (_decode(n), float(s), bool(u))
            for n, s, u in zip(names[i], scores[i], unseen[i], strict=True)
        ]
        for i in range(names.shape[0])
    ]


def _missing(outputs):
    missing = [k for k in LABEL_OUTPUTS if k not in outputs]
    if missing:
        raise ValueError(
            f"The response lacks the outputs {missing} (only "
            "serving_default and serving_images return labels; rank "
            "score_labels' `scores` with `labels_from_scores`). "
            f"Received outputs: {sorted(outputs)}"
        )


def response_to_numpy(response):
    """`{output name: np.ndarray}` of a `PredictResponse`."""
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def parse_predict_response(response):
    """Per-image label lists of a gRPC `PredictResponse`.

    Args:
        response: `predict_pb2.PredictResponse` of `serving_default` or
            `serving_images`.

    Returns:
        list (one per image) of lists `[(name, score, unseen), ...]`, best
        first.
    """
    outputs = response_to_numpy(response)
    _missing(outputs)
    return _label_lists(*(outputs[k] for k in LABEL_OUTPUTS))


def parse_rest_response(response):
    """Per-image label lists of a TF Serving REST predict response.

    Args:
        response: dict (parsed JSON) or str. Row format
            `{"predictions": [{output: value}, ...]}` or columnar
            `{"outputs": {output: value}}`.

    Returns:
        list (one per image) of lists `[(name, score, unseen), ...]`.
    """
    if isinstance(response, (str, bytes)):
        response = json.loads(response)
    if "error" in response:
        raise RuntimeError(f"TF Serving error: {response['error']}")
    if "predictions" in response:
        rows = response["predictions"]
        if rows and not isinstance(rows[0], dict):
            raise ValueError(
                "The predictions hold a single output; serving_default "
                "returns named label outputs"
            )
        outputs = {
            k: [row[k] for row in rows] for k in (rows[0] if rows else {})
        }
        if not rows:
            return []
    elif "outputs" in response:
        outputs = response["outputs"]
        if not isinstance(outputs, dict):
            raise ValueError(
                "The outputs hold a single tensor; serving_default returns "
                "named label outputs"
            )
    else:
        raise ValueError(
            "A REST predict response has `predictions` or `outputs`. "
            f"Received keys: {sorted(response)}"
        )
    _missing(outputs)
    names = [[_decode(n) for n in row] for row in outputs["top_k_labels"]]
    return _label_lists(names, outputs["top_k_scores"], outputs["top_k_unseen"])


def labels_from_scores(scores, names, k=10, unseen_mask=None, trained=None):
    """Ranks `score_labels` scores [batch, K'] into label lists.

    Which labels are unseen (never trained on) must be said: by
    `unseen_mask`, or by `trained`, the names the model was trained on
    (its seen labels, e.g. `trained_label_names(version_dir)`): a label
    not among them is unseen.

    Args:
        scores: array [batch, K'].
        names: sequence of K' label names (the request's vocabulary).
        k: int. Labels per image. Defaults to 10.
        unseen_mask: bool array [K'] or None.
        trained: iterable of str or None. The model's seen label names.

    Returns:
        list of lists `[(name, score, unseen), ...]`, best first (ties
        keep the vocabulary order).

    Raises:
        ValueError: `scores` not [batch, K'], or neither (or both) of
            `unseen_mask` and `trained` given.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(names):
        raise ValueError(
            f"`scores` must be [batch, {len(names)}] (one column per name). "
            f"Received: shape={scores.shape}"
        )
    if (unseen_mask is None) == (trained is None):
        raise ValueError(
            "Say which labels are unseen: give `unseen_mask` (one bool per "
            "name) or `trained` (the names the model was trained on), one "
            "of them"
        )
    if trained is not None:
        trained = set(trained)
        unseen = np.asarray([str(n) not in trained for n in names], bool)
    else:
        unseen = np.asarray(unseen_mask, bool).reshape(-1)
        if unseen.shape != (len(names),):
            raise ValueError(
                f"`unseen_mask` must hold one bool per name ({len(names)}). "
                f"Received: shape={unseen.shape}"
            )
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [
        [(str(names[j]), float(scores[i, j]), bool(unseen[j])) for j in row]
        for i, row in enumerate(order)
    ]


def trained_label_names(version_dir):
    """The seen label names of an export (`assets/labels.txt`, `unseen.txt`).

    Raises:
        FileNotFoundError: the version has no such assets.
    """
    paths = [os.path.join(version_dir, "assets", name)
             for name in ("labels.txt", "unseen.txt")]
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} not found: {version_dir} is not an epsilon_tf "
                "export version"
            )
    with open(paths[0], encoding="utf-8") as f:
        names = [line.rstrip("\n") for line in f]
    with open(paths[1], encoding="utf-8") as f:
        unseen = [line.strip() == "1" for line in f if line.strip()]
    return [n for n, u in zip(names, unseen, strict=True) if not u]


def rest_url(host="localhost", port=8501, model_name="epsilon", version=None):
    """The REST predict URL of a served model."""
    path = f"/v1/models/{model_name}"
    if version is not None:
        path += f"/versions/{int(version)}"
    return f"http://{host}:{port}{path}:predict"


def predict_via_rest(url, body, timeout=30.0):
    """POSTs a REST body (see `rest_request_body`); returns the JSON dict."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        # TF Serving answers a bad request with {"error": "..."}: return
        # it, so that the parsers raise its message.
        text = e.read().decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            raise ConnectionError(
                f"{url}: HTTP {e.code} {e.reason}: {' '.join(text.split())}"
            ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ConnectionError(
            f"{url}: cannot reach the model server ({reason}); is TF "
            "Serving running with --rest_api_port there?"
        ) from None


def predict_via_grpc(
    host,
    port,
    inputs,
    model_name="epsilon",
    signature_name=SERVING_DEFAULT,
    version=None,
    timeout=30.0,
):
    """Calls TF Serving's gRPC `Predict`; returns the `PredictResponse`."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    request = predict_request(inputs, model_name, signature_name, version)
    with grpc.insecure_channel(
        f"{host}:{port}",
        options=[("grpc.max_receive_message_length", 256 * 2**20)],
    ) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            return stub.Predict(request, timeout=timeout)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            details = e.details() if hasattr(e, "details") else str(e)
            text = f"{host}:{port}: gRPC {getattr(code, 'name', code)}: " \
                f"{' '.join(str(details).split())}"
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ConnectionError(
                    f"{text} (is TF Serving running with --port there?)"
                ) from None
            raise ValueError(text) from None
