"""Which export to deploy on which CPU, from figures measured on each CPU class.

The ranking of the formats depends on the CPU's matrix units, not on the vendor: with AMX
the int8 OpenVINO IR leads TFLite int8 by a third and bf16 halves float32's time; with
AVX512-BF16/VNNI but no AMX the int8 formats are level and bf16 still pays; with AVX2 only
there are no bf16 units at all (bf16 is emulated, slower than float32). `CPU_CLASSES` holds
the advice per class and where its figures come from; `python -m stabn_tf.precision` prints
the one for the machine it runs on.
"""

from __future__ import annotations

import dataclasses

from stabn_tf.precision import CPUInfo

AMX, AVX512, AVX2, OTHER = "AMX", "AVX512-BF16/VNNI", "AVX2 only", "other"


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """What to deploy on one CPU class: the fastest export that keeps the explanation
    (`fastest`), what to serve with TF Serving (`serving`), and where the figures behind
    them were measured (`source`)."""

    cpu_class: str
    fastest: str
    serving: str
    source: str

    def describe(self) -> str:
        return (f"CPU class: {self.cpu_class}\n"
                f"  fastest faithful export: {self.fastest}\n"
                f"  TF Serving: {self.serving}\n"
                f"  figures: {self.source}")


CPU_CLASSES = {
    AMX: Recommendation(
        AMX,
        "export.openvino --quantize=int8 (1.32-1.47x TFLite int8 on the full R50)",
        "export.saved_model --precision=bfloat16 (3.3x float32)",
        "benchmarks/results/inference_r50_amx_2core.md (2-core Xeon with AMX, measured by "
        "the team, with the int8 IR before its attention heads were kept float32)"),
    AVX512: Recommendation(
        AVX512,
        "export.openvino --quantize=int8 or export.tflite --quantize=int8: level "
        "(OpenVINO int8 1.08x TFLite int8 on the full R50)",
        "export.saved_model --precision=bfloat16 (2.25x float32 under load)",
        "a 2-core AMD EPYC Zen 4 (AVX512-BF16/VNNI, no AMX), the figures reported in issue "
        "35; no result file of this class is committed"),
    AVX2: Recommendation(
        AVX2,
        "export.openvino --quantize=int8 (the demo model: 3.5 ms against TFLite int8's "
        "6.3 ms by minimum latency; level by median on a loaded machine)",
        "export.saved_model --precision=float32 (no bf16 units: bf16 is emulated)",
        "benchmarks/results/inference_demo_avx2_2core.md (2-core AMD EPYC, AVX2 only, "
        "load 16; the demo model, not the full size)"),
    OTHER: Recommendation(
        OTHER,
        "export.tflite --quantize=int8 (LiteRT/XNNPACK runs on any CPU; not measured here)",
        "export.saved_model --precision=float32",
        "none measured on this class"),
}


def cpu_class(cpu: CPUInfo) -> str:
    """AMX, AVX512 (AVX512-BF16 or -VNNI without AMX), AVX2 (neither) or OTHER (not x86
    with AVX2, e.g. ARM)."""
    if {"amx_int8", "amx_bf16"} & set(cpu.features):
        return AMX
    if {"avx512_bf16", "avx512_vnni"} & set(cpu.features):
        return AVX512
    return AVX2 if cpu.avx2 else OTHER


def recommend(cpu: CPUInfo) -> Recommendation:
    """The advice for `cpu`'s class."""
    return CPU_CLASSES[cpu_class(cpu)]
