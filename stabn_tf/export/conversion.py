"""What the TFLite and OpenVINO export commands share: the flags of the data they calibrate
and check parity on, and finding that data (the checkpoint's run by default)."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator, Sequence

from absl import flags

from stabn_tf import cli
from stabn_tf.deploy import ExportError, RunData
from stabn_tf.deploy.faithfulness import ACCEPT_FLAG, describe_limits
from stabn_tf.disk import disk_full_as_error
from stabn_tf.runs import RunError, check_writable_dir

FLAGS = flags.FLAGS


def define_flags(extension: str, calibrated: str, output_note: str = "") -> None:
    """--checkpoint, --output (default `exported/<checkpoint name>_<quantize><extension>`),
    the calibration and parity data flags, --evaluate and --report_json. `calibrated`
    names the modes that calibrate, for the help text, as `output_note` adds to --output's."""
    cli.define_checkpoint("A .keras model of stabn_tf (ST-ABN or baseline).")
    flags.DEFINE_string("output", None, f"The {extension} file to write{output_note}; default: "
                        f"exported/<checkpoint name>_<quantize>{extension}.")
    flags.DEFINE_list("representative_data", None, "TFRecord pattern(s) of real clips for "
                      "calibration; default: the run's training split.")
    flags.DEFINE_integer("num_representative", 128, f"Calibration clips ({calibrated}); all "
                         "the data holds when fewer.")
    flags.DEFINE_list("eval_data", None, "TFRecord pattern(s) for the parity numbers; "
                      "default: the run's validation split.")
    flags.DEFINE_integer("num_eval", 0, "Parity clips; 0: the whole split.")
    flags.DEFINE_bool("evaluate", True, "Measure parity with Keras after converting.")
    flags.DEFINE_string("report_json", None, "Also write the report as JSON here.")
    define_faithfulness_flag()


def define_faithfulness_flag() -> None:
    """--accept_unfaithful, the same on every export command."""
    flags.DEFINE_bool(ACCEPT_FLAG, False, "Write the export even where it does not keep the "
                      f"explanation against Keras float32 ({describe_limits()} on the "
                      "validation clips); by default such an export is refused.")


def output_path(extension: str) -> str:
    """--output, or its default beside the working directory; its folder is created and
    proven writable first (`RunError`, one line), before any slow conversion."""
    stem = os.path.splitext(os.path.basename(FLAGS.checkpoint))[0]
    path = FLAGS.output or os.path.join("exported", f"{stem}_{FLAGS.quantize}{extension}")
    try:
        check_writable_dir(os.path.dirname(os.path.abspath(path)))
    except RunError as e:
        raise RunError(f"--output={path}: {e}") from None
    return path


#: errno values of a folder that refuses a file (no permission, a read-only file system).
REFUSED = (errno.EACCES, errno.EPERM, errno.EROFS)


@contextlib.contextmanager
def output_errors(output: str, needed: Callable[[], int | None]) -> Iterator[None]:
    """A full disk (`DiskFullError`) or a folder that refuses the files while converting
    or writing (`ExportError`): one line naming the file (`needed()`: about how many bytes
    the output takes)."""
    with disk_full_as_error(output, needed):
        try:
            yield
        except OSError as e:
            if e.errno in REFUSED:
                raise ExportError(f"{output}: cannot be written there ({e.strerror or e})"
                                  ) from e
            raise


def run_data(calibrating: Sequence[str]) -> RunData:
    """The flags' calibration and parity data, the rest from the checkpoint's run; an
    `ExportError` when --quantize is one of `calibrating` and there are no training clips."""
    data = RunData.of_checkpoint(FLAGS.checkpoint, FLAGS.representative_data,
                                 FLAGS.eval_data)
    if FLAGS.quantize in calibrating and not data.train and data.problem:
        raise ExportError(f"--quantize={FLAGS.quantize} calibrates on real clips and "
                          f"there are none ({data.problem}): pass "
                          "--representative_data=<training TFRecord pattern>")
    return data


def no_parity_note(data: RunData, report: dict) -> None:
    """Says on stderr why the report has no parity numbers, when --evaluate asked for them."""
    if FLAGS.evaluate and "parity" not in report:
        cli.log(f"no parity numbers: no validation TFRecords ({data.problem}); pass "
                "--eval_data")
