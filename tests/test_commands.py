"""Every command: its console script (setup.cfg) resolves to a callable whose `--help`
lists the command's own flags, and the REST client runs without TensorFlow."""

import configparser
import importlib
import json
import pathlib
import sys

import pytest

from stabn_tf import serving_client

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _console_scripts() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=")) for line in lines)


SCRIPTS = _console_scripts()


def test_every_console_script_points_into_stabn_tf_at_a_callable():
    assert {"stabn-train", "stabn-convert", "stabn-predict", "stabn-explain", "stabn-evaluate",
            "stabn-report", "stabn-summary", "stabn-client"} <= set(SCRIPTS)
    for name, target in SCRIPTS.items():
        module, attribute = target.split(":")
        assert module.split(".")[0] == "stabn_tf", name  # the one installed package
        assert callable(getattr(importlib.import_module(module), attribute)), name


def test_the_commands_page_lists_every_console_script_with_its_module():
    page = (ROOT / "docs" / "commands.md").read_text()
    for name, target in SCRIPTS.items():
        module = target.split(":")[0].removesuffix(".__main__").removesuffix(".cli")
        assert f"| `{name}` | `{module}`" in page, name


def test_help_of_every_console_script_shows_its_docstring_and_its_own_flags(run_command,
                                                                           monkeypatch):
    """`<name> --help` as the console script runs it (its argv[0], no docstring in
    __main__), every command in this one process."""
    for name, target in SCRIPTS.items():
        module, attribute = target.split(":")
        assert attribute == "command", name  # what run_command calls
        monkeypatch.setattr(sys.modules["__main__"], "__doc__", None)
        proc = run_command(module, "--help", prog=name)
        assert "Traceback" not in proc.stderr, (name, proc.stderr)
        assert proc.returncode in (0, 1), (name, proc.returncode)  # absl's --help: 1
        first_line = importlib.import_module(module).__doc__.strip().splitlines()[0]
        assert first_line in proc.stdout, (name, proc.stdout[:300])
        # The command's flags are listed as its own, not left under another module.
        assert f"{name}:\n" in proc.stdout, (name, proc.stdout)
        assert "  --" in proc.stdout, (name, proc.stdout)


#: Imports of TensorFlow (and Keras, which loads it) fail in the client's process.
_NO_TENSORFLOW = """
import sys
sys.modules["tensorflow"] = None
sys.modules["keras"] = None
from stabn_tf.export.client import run_args
status = run_args(sys.argv[1:])
print("modules:", sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")
                         and sys.modules[m] is not None))
sys.exit(status)
"""


def test_the_client_runs_and_writes_requests_without_tensorflow(tmp_path, python):
    frames = tmp_path / "clip"
    frames.mkdir()
    for i in range(3):
        (frames / f"{i}.jpg").write_bytes(b"\xff\xd8" + bytes([i]) * 5)
    request = tmp_path / "request.json"
    proc = python("-c", _NO_TENSORFLOW, "--frames", frames / "*.jpg", "--write_request", request,
                  timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "modules: []" in proc.stdout
    body = json.loads(request.read_text())
    assert body["signature_name"] == "serve_examples" and len(body["instances"]) == 1


def test_importing_the_client_imports_no_tensorflow(python):
    code = ("import sys; import stabn_tf.export.client, stabn_tf.serving_client; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    proc = python("-c", code, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_sequence_examples_are_the_bytes_the_hand_written_encoder_gave():
    """The protobuf-built SequenceExample is byte for byte what the client sent before it
    used protobuf (the bytes below), so servers and saved requests see no change."""
    expected = bytes.fromhex(
        "0a2d0a110a07636c69702f696412060a040a0263310a180a0f636c69702f6e756d5f6672616d6573"
        "12051a030a010212260a240a0d696d6167652f656e636f64656412130a070a050a03ffd8610a080a"
        "060a04ffd86263")
    assert serving_client.sequence_example([b"\xff\xd8a", b"\xff\xd8bc"], clip_id="c1") \
        == expected


@pytest.mark.parametrize("size", [0, 127, 128, 16384, 70000])
def test_sequence_example_lengths_are_varints_as_protobuf_writes_them(size):
    """Frames whose lengths need 1, 2 and 3 varint bytes round-trip through the messages."""
    messages = serving_client.example_messages()
    frame = bytes(range(256)) * (size // 256) + bytes(size % 256)
    data = serving_client.sequence_example([frame, b"x"], clip_id="é")
    parsed = messages["SequenceExample"].FromString(data)
    assert parsed.context.feature[serving_client.CLIP_ID].bytes_list.value == ["é".encode()]
    assert parsed.context.feature[serving_client.NUM_FRAMES].int64_list.value == [2]
    frames = parsed.feature_lists.feature_list[serving_client.IMAGE_ENCODED].feature
    assert [f.bytes_list.value[0] for f in frames] == [frame, b"x"]
