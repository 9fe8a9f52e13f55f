"""A TF Serving REST client for ST-ABN models, without TensorFlow.

    from stabn_tf import serving_client as client

    body = client.predict_request([client.sequence_example(jpeg_frames, clip_id="c1")])
    for prediction in client.predict("http://localhost:8501", "stabn", body):
        print(client.format_prediction(prediction))

Sends to `serve_examples` (serialized SequenceExamples, base64 in JSON, the compact way to
ship video over REST): JPEG frames are packed into a SequenceExample of the project's
TFRecord schema (`sequence_example`, with the protobuf messages `example_messages` defines),
TFRecord files are read record by record, checksums checked (`read_tfrecords`). A reply
that is not what the signatures return (another JSON shape, missing or non-numeric outputs,
a short, malformed or oversized body) is a `ReplyError` saying what is wrong, and the
timeout (at most a day) bounds the whole request, so a server that trickles its reply
cannot hang the client. A `serving_default` body must hold
uint8 pixel values (integers 0..255): the signature is uint8, and a float or out-of-range
number could be cast rather than refused on the way in, so the client refuses it before
sending. Imports the standard library, protobuf and `stabn_tf.errors` only: no TensorFlow
(the command line is `python -m stabn_tf.export.client`).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import glob
import http.client
import json
import math
import os
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from stabn_tf.errors import StabnError

# The keys of the project's TFRecord schema (`stabn_tf.data.tfrecord`, which imports
# TensorFlow; tests/deploy checks they agree).
IMAGE_ENCODED = "image/encoded"
CLIP_ID = "clip/id"
NUM_FRAMES = "clip/num_frames"


# --- tf.train.SequenceExample, as protobuf messages of our own ----------------------------

_PACKAGE = "stabn_tf.example"
_FIELD = descriptor_pb2.FieldDescriptorProto


def _add_field(message, name: str, number: int, kind: int, label: int = _FIELD.LABEL_OPTIONAL,
               type_name: str = "", oneof: int | None = None) -> None:
    field = message.field.add(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = f".{_PACKAGE}.{type_name}"
    if oneof is not None:
        field.oneof_index = oneof


def _add_map(message, name: str, value_type: str) -> None:
    """`map<string, value_type> name = 1`: a repeated nested `<Name>Entry` (key 1, value 2)."""
    entry_name = "".join(part.title() for part in name.split("_")) + "Entry"
    entry = message.nested_type.add(name=entry_name)
    entry.options.map_entry = True
    _add_field(entry, "key", 1, _FIELD.TYPE_STRING)
    _add_field(entry, "value", 2, _FIELD.TYPE_MESSAGE, type_name=value_type)
    _add_field(message, name, 1, _FIELD.TYPE_MESSAGE, _FIELD.LABEL_REPEATED,
               f"{message.name}.{entry_name}")


@functools.cache
def example_messages() -> dict[str, type]:
    """The message classes of TensorFlow's `Feature`, `Features`, `FeatureList`,
    `FeatureLists` and `SequenceExample` (same field numbers and types, so the same wire
    format), by name. Built in a private descriptor pool, so they never clash with
    TensorFlow's own `tensorflow.*` messages in the same process."""
    file = descriptor_pb2.FileDescriptorProto(name="stabn_tf/example.proto",
                                              package=_PACKAGE, syntax="proto3")
    repeated = _FIELD.LABEL_REPEATED
    for name, kind in (("BytesList", _FIELD.TYPE_BYTES), ("FloatList", _FIELD.TYPE_FLOAT),
                       ("Int64List", _FIELD.TYPE_INT64)):
        _add_field(file.message_type.add(name=name), "value", 1, kind, repeated)
    feature = file.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(("BytesList", "FloatList", "Int64List"), start=1):
        field_name = name.replace("List", "_list").lower()
        _add_field(feature, field_name, number, _FIELD.TYPE_MESSAGE, type_name=name, oneof=0)
    _add_map(file.message_type.add(name="Features"), "feature", "Feature")
    _add_field(file.message_type.add(name="FeatureList"), "feature", 1, _FIELD.TYPE_MESSAGE,
               repeated, "Feature")
    _add_map(file.message_type.add(name="FeatureLists"), "feature_list", "FeatureList")
    sequence = file.message_type.add(name="SequenceExample")
    _add_field(sequence, "context", 1, _FIELD.TYPE_MESSAGE, type_name="Features")
    _add_field(sequence, "feature_lists", 2, _FIELD.TYPE_MESSAGE, type_name="FeatureLists")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    classes = message_factory.GetMessageClassesForFiles([file.name], pool)
    return {name.rsplit(".", 1)[1]: cls for name, cls in classes.items()}


def sequence_example(frames_jpeg: Sequence[bytes], clip_id: str = "") -> bytes:
    """Serialized `tf.train.SequenceExample` with one JPEG per frame in `image/encoded`
    (the project's TFRecord schema, `stabn_tf.data.tfrecord`)."""
    if not frames_jpeg:
        raise ValueError("a clip needs at least one frame")
    example = example_messages()["SequenceExample"]()
    context = example.context.feature
    context[CLIP_ID].bytes_list.value.append(clip_id.encode("utf-8"))
    context[NUM_FRAMES].int64_list.value.append(len(frames_jpeg))
    frames = example.feature_lists.feature_list[IMAGE_ENCODED].feature
    for jpeg in frames_jpeg:
        frames.add().bytes_list.value.append(jpeg)
    # Deterministic: map entries in key order, so the same clip is always the same bytes.
    return example.SerializeToString(deterministic=True)


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ 0x82F63B78 if n & 1 else n >> 1
        table.append(n)
    return tuple(table)


_CRC32C = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """The CRC-32C of `data`, masked as TFRecord files store it (rotated, plus a constant).
    Pure Python, about 10 MB/s: enough for the few records the client sends."""
    crc, table = 0xFFFFFFFF, _CRC32C
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_tfrecords(pattern: str) -> Iterator[bytes]:
    """Records of TFRecord files matching `pattern`, in sorted file order. Each record's
    length and data are checked against their CRCs, and no read goes past the file's end,
    so a file that is not a TFRecord (or is damaged) is a ValueError naming it and the
    record, not a read of whatever size its first bytes happen to spell."""
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {pattern!r}")
    for path in files:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            index = 0
            while header := f.read(12):  # length (uint64, little-endian), its CRC
                where = f"{path}, record {index}"
                if len(header) < 12:
                    raise ValueError(f"{where}: truncated record header")
                (length,) = struct.unpack("<Q", header[:8])
                (length_crc,) = struct.unpack("<I", header[8:])
                if masked_crc32c(header[:8]) != length_crc:
                    raise ValueError(f"{where}: not a TFRecord file (or damaged: the "
                                     "record length does not match its checksum)")
                if length + 4 > size - f.tell():
                    raise ValueError(f"{where}: truncated record ({length} bytes announced, "
                                     f"{max(0, size - f.tell() - 4)} left in the file)")
                data = f.read(length)
                (data_crc,) = struct.unpack("<I", f.read(4))
                if masked_crc32c(data) != data_crc:
                    raise ValueError(f"{where}: damaged (the data does not match its "
                                     "checksum)")
                index += 1
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
#: The largest reply read (the signatures' outputs are a few kB per clip): a longer one,
#: announced or sent, is refused instead of filling the memory.
MAX_REPLY_BYTES = 256 << 20
#: The longest `--timeout` (a day); longer ones are refused rather than overflow a timer.
MAX_TIMEOUT = 24 * 3600.0
_CHUNK = 1 << 16


class ReplyError(RuntimeError, StabnError):
    """The server answered with something that is not what the signatures return."""


class ServerError(RuntimeError, StabnError):
    """The server cannot be reached, answers with an HTTP error, or not in time."""


def _post(url: str, data: bytes, timeout: float) -> tuple[int, bytes]:
    """POSTs JSON `data`; (status, body), all within `timeout` seconds.

    A socket timeout bounds each read only: a server that sends a byte every few seconds
    would hold the client for ever. A timer shuts the socket down at the deadline instead,
    which ends whatever read or write is waiting."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServerError("--server must be an http:// or https:// address")
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
        raise ServerError(f"cannot connect ({e.strerror or e}); is TF Serving running?") \
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
        body = _read_body(response)
        status = response.status
    except ReplyError:
        if expired.is_set():  # cut short by the deadline, not by the server
            raise TimeoutError from None
        raise
    except (OSError, http.client.HTTPException) as e:
        if expired.is_set() or isinstance(e, TimeoutError):
            raise TimeoutError from None
        raise ServerError(f"the connection broke before a complete reply ({e})") from None
    finally:
        timer.cancel()
        connection.close()
    if expired.is_set():  # a reply without a length, cut short at the deadline
        raise TimeoutError
    return status, body


def _read_body(response: http.client.HTTPResponse) -> bytes:
    """The reply's body, read a chunk at a time up to `MAX_REPLY_BYTES`; ReplyError for a
    longer one (announced or sent) and for one shorter than it announced."""
    announced = response.length  # None: no (valid) Content-Length, or chunked
    if announced is not None and announced > MAX_REPLY_BYTES:
        raise ReplyError(f"the reply announces {announced} bytes, more than the "
                         f"{MAX_REPLY_BYTES >> 20} MB a prediction reply can need")
    chunks, received = [], 0
    while chunk := response.read(_CHUNK):
        received += len(chunk)
        if received > MAX_REPLY_BYTES:
            raise ReplyError(f"the reply goes on past {MAX_REPLY_BYTES >> 20} MB, more than "
                             "a prediction reply can need")
        chunks.append(chunk)
    if announced is not None and received < announced:
        raise ReplyError(f"the reply ended after {received} bytes of its body, "
                         f"{announced - received} bytes short of its announced length")
    return b"".join(chunks)


def check_timeout(seconds: float) -> None:
    """ValueError unless `seconds` is a usable time limit: > 0 and at most a day."""
    if not 0 < seconds <= MAX_TIMEOUT:
        raise ValueError(f"the timeout must be > 0 seconds and at most {MAX_TIMEOUT:g} "
                         f"(a day), got {seconds}")


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
    check_timeout(timeout)
    url = f"{server.rstrip('/')}/v1/models/{model}"
    if version:
        url += f"/versions/{version}"
    try:
        status, reply = _post(f"{url}:predict", json.dumps(body).encode("utf-8"), timeout)
    except TimeoutError:
        raise ServerError(f"{url}: no complete reply within {timeout:g} s (--timeout)") \
            from None
    except RuntimeError as e:
        raise type(e)(f"{url}: {e}") from None
    if status != 200:
        detail = reply.decode("utf-8", "replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(detail).get("error", detail)
        raise ServerError(f"{url}: HTTP {status}: {str(detail)[:500]}")
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
