"""`LiteRTRunner`: the `Runner` of an exported ST-ABN (or baseline) TFLite model.

A `.tflite` file from `python -m export.tflite` runs here with the LiteRT runtime. Its
input is `[1, T, S, S, 3]` normalised clips (float32, or int8/int16 quantized with the
scale stored in the model; this runner quantizes); its outputs are `probabilities`,
`logits` and, for ST-ABN, `spatial_attention [1, T, h, w]` and `temporal_attention [1, T]`.
The export writes the model's config next to it (`<model>.json`: class names, clip shape,
preprocessing), which the runner reads. Only such models are run: a `.tflite` file without
a signature, with other inputs or outputs, or without its config (or with one that does
not describe it) is refused in one line saying what it is and what is expected. Model
bytes in memory (`model_content`, the export's own parity check) may go without a config:
their classes are numbered.
"""

from __future__ import annotations

import os

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from stabn_tf.inference.runner import (
    InferenceError,
    Runner,
    config_path,
    exported_preprocessor,
    read_export_config,
)
from stabn_tf.outputs import LOGITS, PROBABILITIES, SPATIAL_ATTENTION, TEMPORAL_ATTENTION
from stabn_tf.precision import PrecisionChoice, check_precision
from stabn_tf.quiet import caught_stderr

#: What an exported model computes in, by its export's `--quantize`.
QUANTIZE_PRECISIONS = {"none": "float32", "float16": "float16 weights",
                       "dynamic": "int8 weights", "int8": "int8", "int16x8": "int16x8"}

#: What a `.tflite` file must be to run here.
EXPECTED = ("expected a model exported by `python -m export.tflite` (one signature: input "
            "clips [1, T, S, S, 3]; outputs probabilities [1, K], for ST-ABN "
            "spatial_attention [1, T, h, w] and temporal_attention [1, T]) with its config "
            "<model>.json beside it")


def _read_config(model_path: str) -> dict:
    """The config the export wrote beside `model_path`; InferenceError if it is missing,
    unreadable, or not a stabn_tf model's config."""
    path = config_path(model_path)
    if not os.path.exists(path):
        raise InferenceError(f"{model_path}: a TFLite model without its stabn_tf config "
                             f"({path} is missing), so its classes and clips are unknown; "
                             + EXPECTED)
    return read_export_config(model_path, "tflite", "not the config of a stabn_tf TFLite "
                              "export (no \"format\": \"tflite\" and \"class_names\"); "
                              + EXPECTED, lists=("class_names",))


class LiteRTRunner(Runner):
    """A TFLite model file (or its bytes, `model_content`).

    `num_threads` sets the CPU threads; `xnnpack=False` runs the builtin kernels without
    the default XNNPACK delegate (for comparisons). `runner.run(clips)` gives the raw
    outputs by name for `[T, S, S, 3]` or `[B, T, S, S, 3]` clips (one interpreter call
    per clip: the model has batch 1).

    A TFLite model computes in the precision it was exported in: `precision="auto"` takes
    it, an explicit one it does not have (e.g. "bfloat16") is an `InferenceError`.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, *,
                 model_content: bytes | None = None, num_threads: int | None = None,
                 xnnpack: bool = True, config: dict | None = None, precision: str = "auto"):
        resolver = (OpResolverType.AUTO if xnnpack
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.path = os.fspath(model_path) if model_path is not None else None
        try:
            with caught_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
                self.interpreter = Interpreter(model_path=self.path,
                                               model_content=model_content,
                                               num_threads=num_threads,
                                               experimental_op_resolver_type=resolver)
        except (ValueError, RuntimeError) as e:
            raise InferenceError(f"{self.path or 'model'}: not a loadable TFLite model "
                                 f"({str(e).splitlines()[0] if str(e) else e})") from None
        where = self.path or "model"
        signatures = self.interpreter.get_signature_list()
        if len(signatures) != 1:
            raise InferenceError(f"{where}: a TFLite model with {len(signatures)} signatures "
                                 f"({', '.join(signatures) or 'none'}); {EXPECTED}")
        self._runner = self.interpreter.get_signature_runner()
        inputs = self._runner.get_input_details()
        details = self._runner.get_output_details()
        self.output_names = sorted(details)
        shapes = {name: [int(v) for v in d["shape"]] for name, d in
                  [*inputs.items(), *details.items()]}
        what = (f"{where}: a TFLite model with input(s) "
                f"{', '.join(f'{n} {shapes[n]}' for n in sorted(inputs))} and output(s) "
                f"{', '.join(f'{n} {shapes[n]}' for n in self.output_names)}, not an "
                "ST-ABN/baseline export; " + EXPECTED)
        if len(inputs) != 1:
            raise InferenceError(what)
        self.input_name, self._input = next(iter(inputs.items()))
        shape = tuple(shapes[self.input_name])
        if len(shape) != 5 or shape[0] != 1 or shape[-1] != 3:
            raise InferenceError(what)
        num_frames, height, width = shape[1:4]
        if height != width:
            raise InferenceError(f"the model takes {height}×{width} frames; clip preparation "
                                 "makes square clips")
        if PROBABILITIES not in details or shapes[PROBABILITIES][:1] != [1] or \
                len(shapes[PROBABILITIES]) != 2:
            raise InferenceError(what)
        num_classes = shapes[PROBABILITIES][-1]
        attention = {SPATIAL_ATTENTION: 4, TEMPORAL_ATTENTION: 2}
        for name, rank in attention.items():
            if name in details and (len(shapes[name]) != rank or
                                    shapes[name][:2] != [1, num_frames]):
                raise InferenceError(what)
        if (SPATIAL_ATTENTION in details) != (TEMPORAL_ATTENTION in details):
            raise InferenceError(what)
        if config is None and self.path is not None:
            config = _read_config(self.path)
        config = config or {}
        names = config.get("class_names") or [f"class {i}" for i in range(num_classes)]
        if len(names) != num_classes:
            raise InferenceError(f"{len(names)} class names in the model's config for "
                                 f"{num_classes} outputs")
        clip = (config.get("num_frames", num_frames), config.get("image_size", height))
        if clip not in ((num_frames, height), (num_frames, [height, height])):
            raise InferenceError(f"{config_path(where)} describes clips of {clip[0]} frames "
                                 f"of {clip[1]}, {where} takes {num_frames} frames of "
                                 f"{height}: not the config it was exported with")
        self.class_names = list(names)
        self.name = config.get("name", os.path.basename(self.path or "model.tflite"))
        self.preprocessor = exported_preprocessor(config, num_frames, height,
                                                  config_path(where))
        self.has_attention = TEMPORAL_ATTENTION in self.output_names
        own = QUANTIZE_PRECISIONS.get(config.get("quantize"), self.input_dtype.name)
        precision = check_precision(precision)
        if precision not in ("auto", own):
            raise InferenceError(f"--precision={precision}: {self.path or 'this TFLite model'} "
                                 f"computes in {own}, the precision it was exported in; "
                                 "use --precision=auto, or the .keras checkpoint")
        self.precision_choice = PrecisionChoice(own, precision, "a TFLite model's own")

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    def _quantize(self, clip: np.ndarray) -> np.ndarray:
        clip = np.asarray(clip, np.float32)[None]
        if self.input_dtype == np.float32:
            return clip
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(self.input_dtype)
        q = np.round(clip / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def run(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        """The model's raw outputs (float32, batched) for `[T, S, S, 3]` or `[B, ...]`."""
        clips = np.asarray(clips)
        batch = self.batched(clips)
        with caught_stderr():  # the first run applies XNNPACK, which says so on stderr
            outs = [self._runner(**{self.input_name: self._quantize(clip)}) for clip in batch]
        return {name: np.concatenate([np.asarray(o[name], np.float32) for o in outs])
                for name in self.output_names}

    def outputs(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        raw = self.run(clips)
        # Rank by logits where the model has them: int8 probabilities tie at 1/256 steps.
        probabilities = raw[PROBABILITIES]
        if LOGITS in raw:
            logits = raw[LOGITS] - raw[LOGITS].max(axis=-1, keepdims=True)
            probabilities = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
        out = {PROBABILITIES: probabilities.astype(np.float32)}
        for key in (SPATIAL_ATTENTION, TEMPORAL_ATTENTION):
            if key in raw:
                out[key] = raw[key]
        return out
