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
line, `stabn_tf.export.client: error: ...`, and exit status 2, as for every command.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from collections.abc import Sequence

from absl import flags

from stabn_tf import cli
from stabn_tf.disk import DiskFullError, write_atomic
from stabn_tf.errors import StabnError
from stabn_tf.serving_client import (
    MAX_TIMEOUT,
    format_prediction,
    predict,
    predict_request,
    read_tfrecords,
    sequence_example,
)

FLAGS = flags.FLAGS
#: The flags that say what to send; exactly one is given.
SOURCES = ("request", "frames", "tfrecord")


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """The client's flags, in `flag_values` (absl's global ones for the command)."""
    on = {"flag_values": flag_values}
    flags.DEFINE_string("request", None, "A JSON request body to send as is.", **on)
    flags.DEFINE_string("frames", None, "Glob of one clip's JPEG frames (sorted = order).",
                        **on)
    flags.DEFINE_string("tfrecord", None, "Glob of TFRecord files in the project's format.",
                        **on)
    flags.DEFINE_integer("max_examples", 4, "Clips to send from --tfrecord.", **on)
    flags.DEFINE_string("server", "http://localhost:8501", "TF Serving REST.", **on)
    flags.DEFINE_string("model", "stabn", "Model name in TF Serving.", **on)
    flags.DEFINE_integer("version", None, "Model version.", **on)
    flags.DEFINE_string("write_request", None, "Write the request JSON here, do not send.",
                        **on)
    flags.DEFINE_float("timeout", 60.0, "Seconds the whole request may take (connect, send, "
                       "reply).", **on)
    flags.mark_flags_as_mutual_exclusive(SOURCES, required=True, flag_values=flag_values)
    flags.register_validator("timeout", lambda seconds: 0 < seconds <= MAX_TIMEOUT,
                             f"--timeout must be > 0 seconds and at most {MAX_TIMEOUT:g} "
                             "(a day)", flag_values=flag_values)


def send(args: flags.FlagValues = FLAGS) -> int:
    """Builds the request the flags describe and sends it (or writes it); prints each
    clip's prediction. Returns the exit status: `cli.ERROR_STATUS`, with one error line, when
    the input, the server or the reply is not usable."""
    try:
        if args.request:
            with open(args.request, encoding="utf-8") as f:
                try:
                    body = json.load(f)
                except ValueError as e:  # UnicodeDecodeError too
                    raise ValueError(f"--request={args.request}: not a JSON request body "
                                     f"({e})") from None
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
            _write_request(args.write_request, json.dumps(body))
            print(f"wrote {args.write_request} ({len(names)} instance(s))")
            return 0
        predictions = predict(args.server, args.model, body, args.version, args.timeout)
    except (OSError, ValueError, StabnError) as e:
        print(f"{command.prefix}{e}", file=sys.stderr)
        return cli.ERROR_STATUS
    names += [f"instance {i}" for i in range(len(names), len(predictions))]
    for name, prediction in zip(names, predictions):
        print(format_prediction(prediction, name))
    return 0


def _write_request(path: str, text: str) -> None:
    """Writes the request body to `path`; OSError in one line naming `path` (not the
    staging file beside it) when it cannot be written there."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"--write_request={path} is a folder; name a file")
    try:
        write_atomic(path, text)
    except DiskFullError:
        raise
    except OSError as e:
        raise OSError(f"--write_request={path}: cannot write it there "
                      f"({e.strerror or e})") from None


def main(argv: Sequence[str]) -> int:
    """Flags already parsed (absl's `app.run`); `argv` holds the program name only."""
    cli.no_arguments(argv)
    return send(FLAGS)


def run_args(args: Sequence[str]) -> int:
    """The command in-process on `args` (flags only), parsed into flags of its own instead
    of the global ones, so scripts and tests can call it many times. A bad flag prints one
    line and raises `SystemExit(1)`, as absl's parser exits."""
    values = flags.FlagValues()
    define_flags(values)
    try:
        values(["stabn-client", *args])
    except flags.Error as e:
        print(f"{command.prefix}{e}", file=sys.stderr)
        raise SystemExit(1) from None
    return send(values)


# The input's, the server's and the reply's errors are caught in `send` (the same line and
# status as `Command` gives every command's); a bad flag is absl's status 1.
command = cli.Command("stabn_tf.export.client", main, define_flags, __doc__)

if __name__ == "__main__":
    command()
