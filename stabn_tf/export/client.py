"""A tiny TF Serving REST client for ST-ABN, without TensorFlow.

    python export/client.py --request=export/request_example.json
    python export/client.py --frames='clip_frames/*.jpg'            # one clip, JPEG frames
    python export/client.py --tfrecord='data/.../validation-*.tfrecord' --max_examples=4

(also `python -m stabn_tf.export.client` and the console script `stabn-client`). Sends to
`serve_examples` (serialized SequenceExamples, base64 in JSON, the compact way to ship video
over REST): JPEG frames are packed into a SequenceExample here, TFRecord files are read
record by record. Prints the top classes and the temporal attention of each clip;
`--write_request=FILE` saves the JSON instead of sending. A reply that is not what the
signatures return (another JSON shape, missing or non-numeric outputs, a short or malformed
body) is one line saying what is wrong, and `--timeout` bounds the whole request, so a
server that trickles its reply cannot hang the client. A `--request` for `serving_default`
must hold uint8 pixel values (integers 0..255): the signature is uint8, and a float or
out-of-range number could be cast rather than refused on the way in, so the client refuses
it before sending. Flags only: the client is `stabn_tf.serving_client`; an error is one
line, `error: ...`, and exit status 1.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections.abc import Sequence

from stabn_tf.disk import write_atomic
from stabn_tf.serving_client import (
    format_prediction,
    predict,
    predict_request,
    read_tfrecords,
    sequence_example,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--request", help="A JSON request body to send as is.")
    source.add_argument("--frames", help="Glob of one clip's JPEG frames (sorted = order).")
    source.add_argument("--tfrecord", help="Glob of TFRecord files in the project's format.")
    parser.add_argument("--max_examples", type=int, default=4,
                        help="Clips to send from --tfrecord.")
    parser.add_argument("--server", default="http://localhost:8501", help="TF Serving REST.")
    parser.add_argument("--model", default="stabn", help="Model name in TF Serving.")
    parser.add_argument("--version", type=int, default=None, help="Model version.")
    parser.add_argument("--write_request", help="Write the request JSON here, do not send.")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="Seconds the whole request may take (connect, send, reply).")
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error(f"--timeout must be > 0 seconds, got {args.timeout}")

    try:
        if args.request:
            with open(args.request, encoding="utf-8") as f:
                body = json.load(f)
            if not isinstance(body, dict):
                raise ValueError(f"{args.request}: a request body is a JSON object")
            names = [f"instance {i}" for i in range(len(body.get("instances", [])))]
        elif args.frames:
            paths = sorted(glob.glob(args.frames))
            if not paths:
                raise FileNotFoundError(f"no frames match {args.frames!r}")
            frames = []
            for path in paths:
                with open(path, "rb") as f:
                    frames.append(f.read())
            clip_id = os.path.basename(os.path.dirname(os.path.abspath(paths[0])))
            body = predict_request([sequence_example(frames, clip_id=clip_id)])
            names = [f"{args.frames} ({len(frames)} frames)"]
        else:
            records = []
            for record in read_tfrecords(args.tfrecord):
                records.append(record)
                if len(records) == args.max_examples:
                    break
            body = predict_request(records)
            names = [f"{args.tfrecord} record {i}" for i in range(len(records))]
        if args.write_request:
            write_atomic(args.write_request, json.dumps(body))
            print(f"wrote {args.write_request} ({len(names)} instance(s))")
            return 0
        predictions = predict(args.server, args.model, body, args.version, args.timeout)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    names += [f"instance {i}" for i in range(len(names), len(predictions))]
    for name, prediction in zip(names, predictions):
        print(format_prediction(prediction, name))
    return 0


def run() -> None:
    """The console script `stabn-client`."""
    sys.exit(main())


if __name__ == "__main__":
    run()
