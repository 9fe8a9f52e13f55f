"""A tiny TF Serving REST client for ST-ABN, Python standard library only.

    python export/client.py --request=export/request_example.json
    python export/client.py --frames='clip_frames/*.jpg'            # one clip, JPEG frames
    python export/client.py --tfrecord='data/.../validation-*.tfrecord' --max_examples=4

Sends to `serve_examples` (serialized SequenceExamples, base64 in JSON, the compact way to
ship video over REST): JPEG frames are packed into a SequenceExample here (a minimal
protobuf writer), TFRecord files are read record by record. Prints the top classes and the
temporal attention of each clip; `--write_request=FILE` saves the JSON instead of sending.
A reply that is not what the signatures return (another JSON shape, missing or non-numeric
outputs, a short or malformed body) is one line saying what is wrong, and `--timeout`
bounds the whole request, so a server that trickles its reply cannot hang the client.
A `--request` for `serving_default` must hold uint8 pixel values (integers 0..255): the
signature is uint8, and a float or out-of-range number could be cast rather than refused
on the way in, so the client refuses it before sending. No TensorFlow needed on the client machine.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import glob
import http.client
import json
import math
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse
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


#: What both signatures return per instance (`stabn_tf.deploy.saved_model`); a baseline has
#: no attention outputs.
NUMBER_OUTPUTS = ("probabilities", "top_k_probabilities")
INDEX_OUTPUTS = ("top_k_indices",)
ATTENTION_OUTPUTS = ("spatial_attention", "temporal_attention")
LABELS = "top_k_labels"
#: How much of a malformed reply an error shows.
SHOWN_BYTES = 80


class ReplyError(RuntimeError):
    """The server answered with something that is not what the signatures return."""


def _post(url: str, data: bytes, timeout: float) -> tuple[int, bytes]:
    """POSTs JSON `data`; (status, body), all within `timeout` seconds.

    A socket timeout bounds each read only: a server that sends a byte every few seconds
    would hold the client for ever. A timer shuts the socket down at the deadline instead,
    which ends whatever read or write is waiting."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RuntimeError("--server must be an http:// or https:// address")
    connection_type = (http.client.HTTPSConnection if parts.scheme == "https"
                       else http.client.HTTPConnection)
    connection = connection_type(parts.netloc, timeout=timeout)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    start = time.monotonic()
    expired = threading.Event()

    try:
        connection.connect()
    except TimeoutError:
        raise
    except OSError as e:
        connection.close()
        raise RuntimeError(f"cannot connect ({e.strerror or e}); is TF Serving running?") \
            from None
    sock = connection.sock  # kept: the connection lets go of it once a reply is read

    def cut() -> None:
        expired.set()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(max(0.0, timeout - (time.monotonic() - start)), cut)
    timer.daemon = True
    timer.start()
    try:
        connection.request("POST", path, body=data,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        body = response.read()
        status = response.status
    except http.client.IncompleteRead as e:
        if expired.is_set():
            raise TimeoutError from None
        raise ReplyError(f"the reply ended after {len(e.partial)} bytes of its body, "
                         f"{e.expected} bytes short of its announced length") from None
    except (OSError, http.client.HTTPException) as e:
        if expired.is_set() or isinstance(e, TimeoutError):
            raise TimeoutError from None
        raise RuntimeError(f"the connection broke before a complete reply ({e})") from None
    finally:
        timer.cancel()
        connection.close()
    if expired.is_set():  # a reply without a length, cut short at the deadline
        raise TimeoutError
    return status, body


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _first_non_number(value: object, where: str, *, integer: bool = False
                      ) -> tuple[str, object] | None:
    """(position, value) of the first entry of nested lists that is not a number (an
    integer with `integer`), or None."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _first_non_number(item, f"{where}[{i}]", integer=integer)
            if found:
                return found
        return None
    ok = _is_number(value) and (not integer or float(value).is_integer())
    return None if ok and math.isfinite(value) else (where, value)


def _show(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:40] + "..."


def check_prediction(prediction: object, where: str) -> None:
    """Raises ReplyError naming the first thing in one instance's outputs that the
    signatures do not return: a missing output, a non-number, top-k lists that disagree."""
    if not isinstance(prediction, dict):
        raise ReplyError(f"{where} is {_show(prediction)}, not the signature's outputs "
                         f"(an object with {LABELS}, top_k_probabilities, ...)")
    missing = [k for k in (*NUMBER_OUTPUTS, *INDEX_OUTPUTS, LABELS) if k not in prediction]
    if missing:
        raise ReplyError(f"{where} has no {', '.join(missing)} (outputs: "
                         f"{', '.join(sorted(prediction)) or 'none'}): not an ST-ABN "
                         "signature's reply")
    for key in (*NUMBER_OUTPUTS, *INDEX_OUTPUTS, *ATTENTION_OUTPUTS):
        if key not in prediction:
            continue
        value = prediction[key]
        if not isinstance(value, list) or not value:
            raise ReplyError(f"{where}.{key} is {_show(value)}, not a list of numbers")
        found = _first_non_number(value, f"{where}.{key}", integer=key in INDEX_OUTPUTS)
        if found:
            kind = "an integer" if key in INDEX_OUTPUTS else "a number"
            raise ReplyError(f"{found[0]} is {_show(found[1])}, not {kind}")
    labels = prediction[LABELS]
    if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
        raise ReplyError(f"{where}.{LABELS} is {_show(labels)}, not a list of class names")
    if not len(labels) == len(prediction["top_k_probabilities"]) == \
            len(prediction["top_k_indices"]):
        raise ReplyError(f"{where}: {len(labels)} top_k_labels for "
                         f"{len(prediction['top_k_probabilities'])} top_k_probabilities and "
                         f"{len(prediction['top_k_indices'])} top_k_indices")


def parse_reply(body: bytes, instances: int | None = None) -> list[dict]:
    """A `:predict` reply body → one dict of outputs per instance, checked
    (`check_prediction`); ReplyError in one line otherwise. Row replies (`predictions`)
    and column replies (`outputs`, to an `inputs` request) are both read."""
    try:
        reply = json.loads(body)
    except ValueError:
        raise ReplyError(f"the server's response is malformed (not JSON, {len(body)} bytes): "
                         f"{body[:SHOWN_BYTES]!r}") from None
    if isinstance(reply, dict) and isinstance(reply.get("outputs"), dict):
        columns = reply["outputs"]
        sizes = {len(v) if isinstance(v, list) else None for v in columns.values()}
        if len(sizes) != 1 or None in sizes:
            raise ReplyError(f"'outputs' of the reply are not lists of one batch size: "
                             f"{_show(columns)}")
        reply = {"predictions": [{k: v[i] for k, v in columns.items()}
                                 for i in range(sizes.pop())]}
    if not isinstance(reply, dict) or "predictions" not in reply:
        raise ReplyError(f"the reply is {_show(reply)}, not a TF Serving predict reply "
                         "(an object with 'predictions')")
    predictions = reply["predictions"]
    if not isinstance(predictions, list):
        raise ReplyError(f"'predictions' is {_show(predictions)}, not a list with one entry "
                         "per instance")
    if instances is not None and len(predictions) != instances:
        raise ReplyError(f"{len(predictions)} predictions for {instances} instances sent")
    for i, prediction in enumerate(predictions):
        check_prediction(prediction, f"predictions[{i}]")
    return predictions


def predict(server: str, model: str, body: dict, version: int | None = None,
            timeout: float = 60.0) -> list[dict]:
    """POSTs `body` to `<server>/v1/models/<model>[/versions/<v>]:predict` and returns the
    predictions, one dict of outputs per instance, within `timeout` seconds in all.

    Raises RuntimeError with one line: the server's message for an HTTP error, what is
    wrong with a reply that is not the signature's outputs (`ReplyError`), the time limit
    when the whole reply did not arrive in `timeout` s; ValueError for a `serving_default`
    body that is not uint8 pixels (nothing is sent)."""
    check_frames_request(body)
    if not timeout > 0:
        raise ValueError(f"the timeout must be > 0 seconds, got {timeout}")
    url = f"{server.rstrip('/')}/v1/models/{model}"
    if version:
        url += f"/versions/{version}"
    try:
        status, reply = _post(f"{url}:predict", json.dumps(body).encode("utf-8"), timeout)
    except TimeoutError:
        raise RuntimeError(f"{url}: no complete reply within {timeout:g} s (--timeout)") \
            from None
    except RuntimeError as e:
        raise type(e)(f"{url}: {e}") from None
    if status != 200:
        detail = reply.decode("utf-8", "replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(detail).get("error", detail)
        raise RuntimeError(f"{url}: HTTP {status}: {str(detail)[:500]}")
    instances = body.get("instances")
    try:
        return parse_reply(reply, len(instances) if isinstance(instances, list) else None)
    except ReplyError as e:
        raise ReplyError(f"{url}: {e}") from None


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
            with open(args.write_request, "w", encoding="utf-8") as f:
                json.dump(body, f)
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


if __name__ == "__main__":
    sys.exit(main())
