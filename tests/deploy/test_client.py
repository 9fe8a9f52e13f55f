"""The REST client (`stabn_tf.serving_client`; its command line is `export/client.py`)
against a tiny local server (127.0.0.1, a thread) that answers with what TF Serving should
not: every reply that is not the signature's outputs, a malformed or short body, and a
reply trickled a byte at a time, is one line and exit 1."""

import http.server
import json
import threading
import time

import pytest

from stabn_tf import serving_client as client
from stabn_tf.export.client import command
from stabn_tf.export.client import run_args as client_main

#: Every command's error line: `<command>: error: ` and the message.
PREFIX = command.prefix

GOOD = {"probabilities": [0.1, 0.7, 0.2], "top_k_indices": [1, 2],
        "top_k_labels": ["pushing", "pulling"], "top_k_probabilities": [0.7, 0.2],
        "spatial_attention": [[[0.5, 0.5]], [[0.1, 0.9]]], "temporal_attention": [0.4, 0.6]}




class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers every POST with `reply` (bytes), announcing `length` bytes (default: the
    reply's; -1: no Content-Length, the body ends when the connection closes), sending one
    byte every `trickle` seconds when set (at most 40 bytes)."""

    reply = b""
    length = None
    trickle = 0.0

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.length != -1:
            self.send_header("Content-Length", str(self.length or len(self.reply)))
        self.end_headers()
        if not self.trickle:
            self.wfile.write(self.reply)
            return
        for byte in self.reply[:40]:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(self.trickle)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """`serve(reply, length=None, trickle=0)` → the server's address."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def serve(reply: bytes, length: int | None = None, trickle: float = 0.0) -> str:
        _Scripted.reply, _Scripted.length, _Scripted.trickle = reply, length, trickle
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield serve
    httpd.shutdown()
    httpd.server_close()


def _request(tmp_path, instances: int = 1) -> str:
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"signature_name": "serve_examples",
                                "instances": [{"b64": "AA=="}] * instances}))
    return str(path)


def _run(args, capsys) -> tuple[int, list[str], str]:
    status = client_main(args)
    captured = capsys.readouterr()
    return status, captured.err.strip().splitlines(), captured.out


def test_a_good_reply_prints_the_prediction(server, tmp_path, capsys):
    address = server(json.dumps({"predictions": [GOOD]}).encode())
    status, err, out = _run(["--server", address, "--request", _request(tmp_path)], capsys)
    assert (status, err) == (0, [])
    assert "1. pushing  70.0%" in out and "when (temporal attention): 0.40 0.60" in out
    # Column replies (to an `inputs` request) are read too.
    columns = {k: [v] for k, v in GOOD.items()}
    address = server(json.dumps({"outputs": columns}).encode())
    assert client.predict(address, "stabn", {"inputs": {"examples": [{"b64": "AA=="}]}}) \
        == [GOOD]


@pytest.mark.parametrize("reply, expected", [
    ([1, 2, 3], "the reply is [1, 2, 3], not a TF Serving predict reply (an object with "
                "'predictions')"),
    ({"predictions": 5}, "'predictions' is 5, not a list with one entry per instance"),
    ({"predictions": ["oops"]}, 'predictions[0] is "oops", not the signature\'s outputs (an '
                                "object with top_k_labels, top_k_probabilities, ...)"),
    ({"predictions": [{}]}, "predictions[0] has no probabilities, top_k_probabilities, "
                            "top_k_indices, top_k_labels (outputs: none): not an ST-ABN "
                            "signature's reply"),
    ({"predictions": [{**GOOD, "top_k_probabilities": [0.7, "x"]}]},
     'predictions[0].top_k_probabilities[1] is "x", not a number'),
    ({"predictions": [{**GOOD, "temporal_attention": [0.4, None]}]},
     "predictions[0].temporal_attention[1] is null, not a number"),
    ({"predictions": [{**GOOD, "top_k_indices": [1.5, 2]}]},
     "predictions[0].top_k_indices[0] is 1.5, not an integer"),
    ({"predictions": [{**GOOD, "top_k_labels": ["pushing"]}]},
     "predictions[0]: 1 top_k_labels for 2 top_k_probabilities and 2 top_k_indices"),
    ({"predictions": [GOOD, GOOD]}, "2 predictions for 1 instances sent"),
])
def test_a_reply_that_is_not_the_signature_is_one_line(server, tmp_path, capsys, reply,
                                                        expected):
    address = server(json.dumps(reply).encode())
    status, err, out = _run(["--server", address, "--request", _request(tmp_path)], capsys)
    assert status == 2 and out == ""
    assert err == [f"{PREFIX}{address}/v1/models/stabn: {expected}"], err


def test_a_malformed_or_short_body_is_one_line(server, tmp_path, capsys):
    address = server(b"<html>502 Bad Gateway</html>")
    status, err, _ = _run(["--server", address, "--request", _request(tmp_path)], capsys)
    assert status == 2
    assert err == [f"{PREFIX}{address}/v1/models/stabn: the server's response is malformed "
                   "(not JSON, 28 bytes): b'<html>502 Bad Gateway</html>'"], err
    body = json.dumps({"predictions": [GOOD]}).encode()
    address = server(body[:50], length=len(body))  # the connection closes 50 bytes in
    status, err, _ = _run(["--server", address, "--request", _request(tmp_path)], capsys)
    assert status == 2
    assert err == [f"{PREFIX}{address}/v1/models/stabn: the reply ended after 50 bytes of "
                   f"its body, {len(body) - 50} bytes short of its announced length"], err


def test_timeout_bounds_the_whole_request(server, tmp_path, capsys):
    """A byte every 0.3 s never lets a single read time out; --timeout=1 still ends the
    request at about 1 s."""
    address = server(json.dumps({"predictions": [GOOD]}).encode(), trickle=0.3)
    start = time.monotonic()
    status, err, _ = _run(["--server", address, "--request", _request(tmp_path),
                           "--timeout", "1"], capsys)
    elapsed = time.monotonic() - start
    assert status == 2 and 0.9 < elapsed < 3.0, elapsed
    assert err == [f"{PREFIX}{address}/v1/models/stabn: no complete reply within 1 s "
                   "(--timeout)"], err
    with pytest.raises(SystemExit):
        client_main(["--server", address, "--request", _request(tmp_path), "--timeout", "0"])
    assert "--timeout must be > 0" in capsys.readouterr().err


def test_no_server_is_one_line(tmp_path, capsys):
    status, err, _ = _run(["--server", "http://127.0.0.1:9", "--request", _request(tmp_path),
                           "--timeout", "5"], capsys)
    assert status == 2 and len(err) == 1
    assert err[0].startswith(f"{PREFIX}http://127.0.0.1:9/v1/models/stabn: cannot connect")


def test_huge_or_lying_reply_lengths_are_one_line(server, tmp_path, capsys, monkeypatch):
    body = json.dumps({"predictions": [GOOD]}).encode()
    address = server(body, length=10 ** 12)  # announced, never sent: nothing is allocated
    status, err, _ = _run(["--server", address, "--request", _request(tmp_path)], capsys)
    assert status == 2
    assert err == [f"{PREFIX}{address}/v1/models/stabn: the reply announces 1000000000000 "
                   "bytes, more than the 256 MB a prediction reply can need"], err
    address = server(body, length=20)  # fewer than sent: the JSON is cut
    status, err, _ = _run(["--server", address, "--request", _request(tmp_path)], capsys)
    assert status == 2 and len(err) == 1 and "malformed (not JSON, 20 bytes)" in err[0], err
    monkeypatch.setattr(client, "MAX_REPLY_BYTES", 100)
    address = server(body, length=-1)  # no length: read up to the bound, no further
    status, err, _ = _run(["--server", address, "--request", _request(tmp_path)], capsys)
    assert status == 2
    assert err == [f"{PREFIX}{address}/v1/models/stabn: the reply goes on past 0 MB, more "
                   "than a prediction reply can need"], err
    monkeypatch.undo()
    address = server(body, length=-1)
    assert _run(["--server", address, "--request", _request(tmp_path)], capsys)[:2] == (0, [])


@pytest.mark.parametrize("timeout", ["inf", "nan", "1e300", "-1"])
def test_absurd_timeouts_are_one_line(tmp_path, capsys, timeout):
    with pytest.raises(SystemExit) as exit_:
        client_main(["--request", _request(tmp_path), f"--timeout={timeout}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 1 and len(err) == 1, err
    assert "--timeout must be > 0 seconds and at most 86400 (a day)" in err[0]
    with pytest.raises(ValueError, match="the timeout must be > 0 seconds"):
        client.predict("http://127.0.0.1:9", "stabn", {"instances": []},
                       timeout=float(timeout))


def _tfrecord(path, records):
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return path


def test_a_file_that_is_not_a_tfrecord_is_one_line(tmp_path, capsys):
    records = [b"first", b"x" * 3000, b""]
    good = _tfrecord(tmp_path / "good.tfrecord", records)
    assert list(client.read_tfrecords(str(good))) == records  # TensorFlow's CRCs agree
    damaged = tmp_path / "damaged.tfrecord"
    data = bytearray(good.read_bytes())
    data[12 + 2] ^= 1  # a byte of the first record's data
    damaged.write_bytes(bytes(data))
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(good.read_bytes()[:40])
    other = tmp_path / "other.tfrecord"  # its first 8 bytes spell a length of ~10^18
    other.write_bytes(b"\xff" * 7 + b"\x0f" + bytes(range(256)) * 4)
    for path, expected in [
            (damaged, "damaged.tfrecord, record 0: damaged (the data does not match its "
                      "checksum)"),
            (cut, "cut.tfrecord, record 1: truncated record (3000 bytes announced, 3 left "
                  "in the file)"),
            (other, "other.tfrecord, record 0: not a TFRecord file (or damaged: the record "
                    "length does not match its checksum)")]:
        status, err, out = _run(["--tfrecord", str(path), "--write_request",
                                 str(tmp_path / "r.json")], capsys)
        assert (status, out) == (2, "") and err == [f"{PREFIX}{path.parent}/{expected}"], err


def test_bad_request_files_and_targets_are_one_line(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("{} {}")
    status, err, _ = _run(["--request", str(text)], capsys)
    assert status == 2
    assert err == [f"{PREFIX}--request={text}: not a JSON request body (Extra data: line 1 "
                   "column 4 (char 3))"], err
    binary = tmp_path / "clip.mp4"
    binary.write_bytes(b"\x00\xff\xfe" * 10)
    status, err, _ = _run(["--request", str(binary)], capsys)
    assert status == 2 and len(err) == 1 and f"--request={binary}: not a JSON" in err[0]
    for target, expected in [
            ("/proc/stabn-request.json", "--write_request=/proc/stabn-request.json: cannot "
                                         "write it there (No such file or directory)"),
            (str(tmp_path), f"--write_request={tmp_path} is a folder; name a file")]:
        status, err, _ = _run(["--request", _request(tmp_path), "--write_request", target],
                              capsys)
        assert status == 2 and err == [f"{PREFIX}{expected}"], err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
