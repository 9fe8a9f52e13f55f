"""`OpenVINORunner`: the `Runner` of an ST-ABN (or baseline) exported as an OpenVINO IR.

`python -m export.openvino` writes `model.xml` (the graph), `model.bin` (its weights) and
`model.json` (the model's config: class names, clip shape, preprocessing); the runner needs
all three. The IR takes normalised float32 clips `[1, T, S, S, 3]` named `clips` (an IR with
another or a dynamic batch runs too) and gives `probabilities`, `logits` and, for ST-ABN,
`spatial_attention [1, T, h, w]` and `temporal_attention [1, T]`, all float32 whatever the
IR computes in.

`precision` is what the CPU computes the float parts in, OpenVINO's
`INFERENCE_PRECISION_HINT`. It is always set: OpenVINO's own default is bf16 on CPUs with
AMX or AVX512-BF16 and f32 elsewhere, so leaving it unset would make float32 depend on the
machine. OpenVINO itself is an optional dependency (`pip install "stabn_tf[openvino]"`),
imported when a runner is made.
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np

from stabn_tf.inference.runner import (
    InferenceError,
    Runner,
    config_path,
    exported_preprocessor,
    read_export_config,
)
from stabn_tf.outputs import LOGITS, PROBABILITIES, SPATIAL_ATTENTION, TEMPORAL_ATTENTION
from stabn_tf.precision import PrecisionChoice, choose_precision

#: OpenVINO CPU's `INFERENCE_PRECISION_HINT` for each precision it computes in.
HINTS = {"float32": "f32", "bfloat16": "bf16"}
INPUT_NAME = "clips"
#: What a config written by `export.openvino` says it is.
FORMAT = "openvino"


def import_openvino() -> ModuleType:
    """The `openvino` module, or one line saying how to install it."""
    try:
        import openvino  # optional dependency: the package imports without it
    except ImportError:
        raise InferenceError('OpenVINO is not installed: pip install "stabn_tf[openvino]" '
                             "(or openvino>=2026.0)") from None
    return openvino


def weights_path(model_path: str | os.PathLike) -> str:
    """Where an IR's weights lie: `model.xml` → `model.bin`."""
    return os.path.splitext(os.fspath(model_path))[0] + ".bin"


def cpu_supports_bfloat16(core) -> bool:
    """Whether OpenVINO's CPU plugin computes in bf16 on this machine (AMX or AVX512-BF16)."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def compile_config(core, precision: str, num_threads: int | None) -> dict[str, str]:
    """The CPU plugin settings of a runner: one clip at a time as fast as possible
    (`PERFORMANCE_HINT=LATENCY`), `precision`'s hint, and `num_threads` if given; one
    line when `precision` is unknown or `core`'s CPU cannot compute in it."""
    if precision not in HINTS:
        raise InferenceError(f"precision={precision!r}: choose from {sorted(HINTS)}")
    if precision == "bfloat16" and not cpu_supports_bfloat16(core):
        raise InferenceError("precision=bfloat16: this CPU has no bf16 units OpenVINO "
                             "uses (AMX or AVX512-BF16); use float32")
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": HINTS[precision]}
    if num_threads:
        config["INFERENCE_NUM_THREADS"] = str(num_threads)
    return config


class OpenVINORunner(Runner):
    """An OpenVINO IR (`.xml` with its `.bin` and `.json`) run on the CPU.

    `precision` ("auto", "float32" or "bfloat16") sets what float ops compute in (an int8
    IR's quantized convolutions run in int8 either way); `auto` is bfloat16 where the CPU
    has bf16 units (`stabn_tf.precision`, the CPU alone: OpenVINO runs here on the CPU) and
    float32 elsewhere; bfloat16 on a CPU without bf16 units is refused. `num_threads` caps
    the CPU threads. `runner.run(clips)` gives the raw outputs by name for `[T, S, S, 3]`
    or `[B, T, S, S, 3]` clips.
    """

    def __init__(self, model_path: str | os.PathLike, *, precision: str = "auto",
                 num_threads: int | None = None):
        ov = import_openvino()
        self.path = os.fspath(model_path)
        choice = choose_precision(precision, gpus=[])
        core = ov.Core()
        if precision == "auto" and not cpu_supports_bfloat16(core):
            choice = PrecisionChoice("float32", "auto", "auto: OpenVINO finds no bf16 units")
        self.precision_choice = choice
        settings = compile_config(core, choice.precision, num_threads)
        for needed, what in ((self.path, "model file"), (weights_path(self.path), "weights"),
                             (config_path(self.path), "config")):
            if not os.path.isfile(needed):
                raise InferenceError(f"{self.path}: its {what} {needed} is missing (export "
                                     "writes .xml, .bin and .json side by side)")
        config = self._read_config()
        try:
            model = core.read_model(self.path)
        except RuntimeError as e:
            raise InferenceError(f"{self.path}: not an OpenVINO IR "
                                 f"({_first_line(e)})") from None
        self._check(model, config)
        self.compiled = core.compile_model(model, "CPU", settings)
        self._request = self.compiled.create_infer_request()

    def _read_config(self) -> dict:
        return read_export_config(self.path, FORMAT, "not the config of an OpenVINO export "
                                  "(python -m export.openvino writes it)")

    def _check(self, model, config: dict) -> None:
        """Takes the IR's shape, classes and outputs, or says in one line it is not ours."""
        inputs = [i.get_any_name() for i in model.inputs]
        self.output_names = sorted(name for o in model.outputs for name in o.get_names()
                                   if name in (PROBABILITIES, LOGITS, SPATIAL_ATTENTION,
                                               TEMPORAL_ATTENTION))
        if inputs != [INPUT_NAME] or PROBABILITIES not in self.output_names:
            raise InferenceError(f"{self.path}: not an ST-ABN IR (inputs {inputs}, outputs "
                                 f"{sorted(n for o in model.outputs for n in o.get_names())})"
                                 ": export one with python -m export.openvino")
        shape = model.input(INPUT_NAME).get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape]
        if len(dims) != 5 or None in dims[1:] or dims[-1] != 3 or dims[2] != dims[3]:
            raise InferenceError(f"{self.path}: expected input clips [B, T, S, S, 3], the IR "
                                 f"has {shape}")
        self.batch_size = dims[0]  # None: any batch in one call
        num_classes = model.output(PROBABILITIES).get_partial_shape()[-1].get_length()
        names = config.get("class_names") or [f"class {i}" for i in range(num_classes)]
        if len(names) != num_classes:
            raise InferenceError(f"{len(names)} class names in the model's config for "
                                 f"{num_classes} outputs")
        self.class_names = list(names)
        self.name = config.get("name", os.path.basename(self.path))
        self.quantize = config.get("quantize", "none")
        self.preprocessor = exported_preprocessor(config, dims[1], dims[2],
                                                  config_path(self.path))
        self.has_attention = TEMPORAL_ATTENTION in self.output_names

    def run(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        """The model's raw outputs (float32, batched) for `[T, S, S, 3]` or `[B, ...]`."""
        clips = np.asarray(clips, np.float32)
        batch = self.batched(clips)
        step = self.batch_size or len(batch)
        outs = []
        for start in range(0, len(batch), step):
            result = self._request.infer({INPUT_NAME: batch[start:start + step]})
            outs.append({name: np.array(result[self.compiled.output(name)], np.float32)
                         for name in self.output_names})
        return {name: np.concatenate([o[name] for o in outs]) for name in self.output_names}

    def outputs(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        raw = self.run(clips)
        return {k: raw[k] for k in (PROBABILITIES, SPATIAL_ATTENTION, TEMPORAL_ATTENTION)
                if k in raw}


def _first_line(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()
             and not line.startswith(("Exception from", "Check "))]
    return lines[0].strip() if lines else type(error).__name__
