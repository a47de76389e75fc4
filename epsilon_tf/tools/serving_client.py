"""The TF Serving client's command line: the top labels of features saved
with `np.save` ([images, regions, channels] or one image [regions,
channels]), from an Epsilon model behind TF Serving (`serving_default`).

    python -m epsilon_tf.tools.serving_client --features=feats.npy \\
        [--host=localhost] [--port=8501 | --grpc --port=8500] \\
        [--model_name=epsilon]

The requests and replies are `epsilon_tf.export.client`'s (docs/serving.md,
section 5). Prints `image i: label (score)[*], ...` per image (`*`: a label
never trained on).
"""

import argparse
import sys

from epsilon_tf.cli import common

if __name__ == "__main__":  # quiet TensorFlow start-up, before its import
    common.prepare()

import numpy as np  # noqa: E402

from epsilon_tf.errors import CommandLineError  # noqa: E402
from epsilon_tf.export import client  # noqa: E402

PROGRAM = "python -m epsilon_tf.tools.serving_client"


def _parser():
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Sends features to an Epsilon model behind TF Serving "
        "and prints each image's top labels (serving_default).",
    )
    parser.add_argument("--features", required=True,
                        help=".npy of [images, regions, channels] (or one "
                        "image [regions, channels]) float features.")
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=None,
                        help="8501 (REST) or, with --grpc, 8500.")
    parser.add_argument("--grpc", action="store_true",
                        help="Use gRPC instead of REST.")
    parser.add_argument("--model_name", default="epsilon")
    parser.add_argument("--version", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--debug", action="store_true",
                        help="Show tracebacks.")
    return parser


def main(argv=None):
    """Command line: prints `image i: label (score)[*], ...` per image."""
    args = _parser().parse_args(argv)
    try:
        features = np.load(args.features, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CommandLineError(
            f"--features: cannot read {args.features} as an .npy array "
            f"({' '.join(str(e).split())})"
        ) from None
    if features.ndim == 2:
        features = features[None]
    if features.ndim != 3:
        raise CommandLineError(
            f"--features must hold [images, regions, channels] (or one image "
            f"[regions, channels]). Received: shape={features.shape}"
        )
    features = features.astype(np.float32)
    if args.grpc:
        response = client.predict_via_grpc(
            args.host, args.port or 8500, {"features": features},
            model_name=args.model_name, version=args.version,
            timeout=args.timeout,
        )
        labels = client.parse_predict_response(response)
    else:
        url = client.rest_url(args.host, args.port or 8501, args.model_name,
                       args.version)
        body = client.rest_request_body({"features": features})
        labels = client.parse_rest_response(
            client.predict_via_rest(url, body, timeout=args.timeout)
        )
    for i, row in enumerate(labels):
        shown = ", ".join(
            f"{name} ({score:.3f}){'*' if unseen else ''}"
            for name, score, unseen in row
        )
        print(f"image {i}: {shown}")
    return 0


if __name__ == "__main__":
    with common.clean_exit(PROGRAM):
        sys.exit(main())
