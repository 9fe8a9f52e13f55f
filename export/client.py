"""A tiny TF Serving REST client for ST-ABN, Python standard library only.

    python export/client.py --request=export/request_example.json
    python export/client.py --frames='clip_frames/*.jpg'            # one clip, JPEG frames
    python export/client.py --tfrecord='data/.../validation-*.tfrecord' --max_examples=4

Sends to `serve_examples` (serialized SequenceExamples, base64 in JSON, the compact way to
ship video over REST): JPEG frames are packed into a SequenceExample here (a minimal
protobuf writer), TFRecord files are read record by record. Prints the top classes and the
temporal attention of each clip; `--write_request=FILE` saves the JSON instead of sending.
A `--request` for `serving_default` must hold uint8 pixel values (integers 0..255): the
signature is uint8, and a float or out-of-range number could be cast rather than refused
on the way in, so the client refuses it before sending. No TensorFlow needed on the client machine.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import glob
import json
import os
import struct
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence

IMAGE_ENCODED = "image/encoded"  # stabn_tf.data.tfrecord.IMAGE_ENCODED
CLIP_ID = "clip/id"  # stabn_tf.data.tfrecord.CLIP_ID
NUM_FRAMES = "clip/num_frames"  # stabn_tf.data.tfrecord.NUM_FRAMES


# --- protobuf wire format, just enough for a SequenceExample -------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes negatives
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _bytes_feature(values: Sequence[bytes]) -> bytes:
    return _field(1, b"".join(_field(1, v) for v in values))  # Feature.bytes_list


def _int64_feature(values: Sequence[int]) -> bytes:
    packed = b"".join(_varint(v) for v in values)
    return _field(3, _field(1, packed))  # Feature.int64_list, packed values


def _map_entry(key: str, value: bytes) -> bytes:
    return _field(1, _field(1, key.encode("utf-8")) + _field(2, value))


def sequence_example(frames_jpeg: Sequence[bytes], clip_id: str = "") -> bytes:
    """Serialized `tf.train.SequenceExample` with one JPEG per frame in `image/encoded`
    (the project's TFRecord schema, `stabn_tf.data.tfrecord`)."""
    if not frames_jpeg:
        raise ValueError("a clip needs at least one frame")
    context = _map_entry(CLIP_ID, _bytes_feature([clip_id.encode("utf-8")]))
    context += _map_entry(NUM_FRAMES, _int64_feature([len(frames_jpeg)]))
    frame_list = b"".join(_field(1, _bytes_feature([jpeg])) for jpeg in frames_jpeg)
    feature_lists = _map_entry(IMAGE_ENCODED, frame_list)
    return _field(1, context) + _field(2, feature_lists)


def read_tfrecords(pattern: str) -> Iterator[bytes]:
    """Records of TFRecord files matching `pattern`, in sorted file order (CRCs not
    checked: the server parses every record anyway)."""
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {pattern!r}")
    for path in files:
        with open(path, "rb") as f:
            while header := f.read(12):
                if len(header) < 12:
                    raise ValueError(f"{path}: truncated record header")
                (length,) = struct.unpack("<Q", header[:8])
                data = f.read(length)
                if len(data) < length or len(f.read(4)) < 4:
                    raise ValueError(f"{path}: truncated record")
                yield data


# --- REST ----------------------------------------------------------------------------

SERVING_DEFAULT = "serving_default"
FRAMES = "frames"


def _first_non_pixel(value, where: str) -> tuple[str, object] | None:
    """(position, value) of the first number in nested lists that is not an integer
    0..255 (JSON true/false included), or None."""
    if isinstance(value, list):
        if all(type(v) is int and 0 <= v <= 255 for v in value):  # the fast, common case
            return None
        for i, item in enumerate(value):
            found = _first_non_pixel(item, f"{where}[{i}]")
            if found:
                return found
        return None
    if type(value) is int and 0 <= value <= 255:
        return None
    return where, value


def check_frames_request(body: dict) -> None:
    """Raises ValueError naming the first value of a `serving_default` request that is not
    a uint8 pixel (e.g. normalised floats): the signature would cast it silently."""
    if body.get("signature_name", SERVING_DEFAULT) != SERVING_DEFAULT:
        return
    for key in ("instances", "inputs"):
        if key not in body:
            continue
        value = body[key]
        rows = value if key == "instances" and isinstance(value, list) else [value]
        for i, row in enumerate(rows):
            where = f"{key}[{i}]" if key == "instances" else key
            if isinstance(row, dict):
                row, where = row.get(FRAMES, []), f"{where}.{FRAMES}"
            found = _first_non_pixel(row, where)
            if found:
                raise ValueError(
                    f"{found[0]} = {json.dumps(found[1])[:40]}: {SERVING_DEFAULT} takes uint8 "
                    "RGB frames (integers 0..255) and would not see this value as sent; "
                    "send pixel values, not normalised floats")


def predict_request(examples: Sequence[bytes], signature: str = "serve_examples") -> dict:
    """The JSON body of a TF Serving `:predict` call on serialized examples."""
    return {"signature_name": signature,
            "instances": [{"b64": base64.b64encode(e).decode("ascii")} for e in examples]}


def predict(server: str, model: str, body: dict, version: int | None = None,
            timeout: float = 60.0) -> list[dict]:
    """POSTs `body` to `<server>/v1/models/<model>[/versions/<v>]:predict`; returns the
    predictions, one dict per instance. Raises RuntimeError with the server's message,
    ValueError for a `serving_default` body that is not uint8 pixels (nothing is sent)."""
    check_frames_request(body)
    url = f"{server.rstrip('/')}/v1/models/{model}"
    if version:
        url += f"/versions/{version}"
    request = urllib.request.Request(f"{url}:predict", data=json.dumps(body).encode("utf-8"),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply = json.load(response)
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(detail).get("error", detail)
        raise RuntimeError(f"{url}: HTTP {e.code}: {detail}") from None
    except urllib.error.URLError as e:
        raise RuntimeError(f"{url}: cannot connect ({e.reason}); is TF Serving running?") from None
    predictions = reply.get("predictions")
    if predictions is None:
        raise RuntimeError(f"{url}: no predictions in the reply: {str(reply)[:300]}")
    return predictions


def format_prediction(prediction: dict, name: str = "") -> str:
    labels = prediction.get("top_k_labels", [])
    probs = prediction.get("top_k_probabilities", [])
    lines = [name] if name else []
    lines += [f"  {rank}. {label}  {prob:.1%}"
              for rank, (label, prob) in enumerate(zip(labels, probs), start=1)]
    if "temporal_attention" in prediction:
        mt = prediction["temporal_attention"]
        lines.append("  when (temporal attention): " + " ".join(f"{v:.2f}" for v in mt))
    return "\n".join(lines)


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
    args = parser.parse_args(argv)

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
            with open(args.write_request, "w", encoding="utf-8") as f:
                json.dump(body, f)
            print(f"wrote {args.write_request} ({len(names)} instance(s))")
            return 0
        predictions = predict(args.server, args.model, body, args.version)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, prediction in zip(names, predictions):
        print(format_prediction(prediction, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
