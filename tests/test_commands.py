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


#: The converter's console script: its --output_dir lock, then its `command`.
CONVERT_LOCKED_FIRST = "stabn_tf.data.convert.__main__:locked_first"


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
        # What run_command calls (the converter's script takes its lock first, then runs
        # the same command: tests/data/test_data_convert_faults.py).
        assert attribute == "command" or target == CONVERT_LOCKED_FIRST, name
        monkeypatch.setattr(sys.modules["__main__"], "__doc__", None)
        proc = run_command(module, "--help", prog=name)
        assert "Traceback" not in proc.stderr, (name, proc.stderr)
        assert proc.returncode in (0, 1), (name, proc.returncode)  # absl's --help: 1
        documented = "stabn_tf.data.convert.cli" if target == CONVERT_LOCKED_FIRST else module
        first_line = importlib.import_module(documented).__doc__.strip().splitlines()[0]
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


# --- one error rule and one --precision for every command ---------------------------------

def _run(command, capsys) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exit_:
        command._run(["prog"])
    return exit_.value.code, capsys.readouterr().err.splitlines()


def test_a_project_error_or_a_full_disk_is_one_line_with_status_2(capsys, tmp_path):
    import errno

    from stabn_tf import cli
    from stabn_tf.errors import StabnError

    def fails(error):
        def main(argv):
            raise error
        return cli.Command("stabn_tf.thing", main, errors=(FileNotFoundError,))

    assert _run(fails(StabnError("bad input")), capsys) == (
        2, ["stabn_tf.thing: error: bad input"])
    assert _run(fails(FileNotFoundError("no such file: x")), capsys) == (
        2, ["stabn_tf.thing: error: no such file: x"])
    # A full disk, as any library says it: the one DiskFullError line.
    deep = RuntimeError("write failed")
    deep.__cause__ = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "m.bin"))
    status, lines = _run(fails(deep), capsys)
    assert status == 2 and len(lines) == 1
    assert lines[0].startswith(f"stabn_tf.thing: error: {tmp_path / 'm.bin'}: the disk is full")


def test_an_unexpected_exception_keeps_its_traceback(capsys):
    from stabn_tf import cli

    def main(argv):
        raise ValueError("a bug deep inside")

    with pytest.raises(ValueError, match="a bug deep inside"):
        cli.Command("stabn_tf.thing", main)._run(["prog"])
    assert capsys.readouterr().err == ""


def test_ctrl_c_is_one_line_and_status_130(capsys):
    """A command stopped with Ctrl-C (e.g. the converter, whose finished shards stay for
    the rerun) says so in one line instead of a KeyboardInterrupt traceback."""
    from stabn_tf import cli

    def main(argv):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stopped:
        cli.Command("stabn_tf.thing", main)._run(["prog"])
    assert stopped.value.code == 130
    assert capsys.readouterr().err == "stabn_tf.thing: error: interrupted (Ctrl-C)\n"


@pytest.mark.parametrize("error", [ValueError("a bug in NumPy"), OSError("a bug in TF")])
def test_the_converter_lets_an_unexpected_error_through(error, run_command, monkeypatch,
                                                        tmp_path):
    """Only project errors and a full disk are its one-line errors; a ValueError or OSError
    from inside TensorFlow or NumPy keeps its traceback."""
    def convert_dataset(*args, **kwargs):
        raise error

    monkeypatch.setattr("stabn_tf.data.convert.cli.convert_dataset", convert_dataset)
    with pytest.raises(type(error), match="a bug in"):
        run_command("stabn_tf.data.convert", "--dataset=folder", f"--input_dir={tmp_path}",
                    f"--output_dir={tmp_path / 'out'}")


#: The commands with a --precision flag and its default there.
PRECISION_DEFAULTS = {"stabn_tf.predict": "auto", "stabn_tf.explain": "auto",
                      "stabn_tf.evaluate": "auto", "stabn_tf.report": "auto",
                      "stabn_tf.train": "float32", "stabn_tf.export.saved_model": "float32",
                      "stabn_tf.export.openvino": "float32"}


def test_every_precision_flag_is_the_one_definition(monkeypatch):
    from absl import flags

    from stabn_tf import cli, precision

    defined = []
    original = cli.define_precision

    def spy(*args, **kwargs):
        defined.append((args, kwargs))
        original(*args, **kwargs)

    monkeypatch.setattr(cli, "define_precision", spy)
    for name, default in PRECISION_DEFAULTS.items():
        module = importlib.import_module(name)
        if hasattr(module, "__path__"):
            module = importlib.import_module(f"{name}.__main__")
        before, defined[:] = set(flags.FLAGS), []
        module.command.define_flags()
        try:
            assert len(defined) == 1, name
            flag = flags.FLAGS["precision"]
            assert flag.default == default, name
            names = precision.TRAINING_PRECISIONS if name == "stabn_tf.train" \
                else precision.PRECISIONS
            assert flag.help.startswith(precision.FLAG_HELP.format(names=", ".join(names)))
        finally:
            for new in set(flags.FLAGS) - before:
                delattr(flags.FLAGS, new)


def test_no_command_defines_precision_itself():
    import re

    for path in (ROOT / "stabn_tf").rglob("*.py"):
        if path.name != "cli.py":
            assert not re.search(r"DEFINE_\w+\(\s*\"precision\"", path.read_text()), path
