"""Which precision inference computes in, chosen from what the machine has.

bfloat16 keeps float32's range with 8 significant bits: a float32 checkpoint runs in it
without retraining, and on hardware with bf16 matrix units (NVIDIA GPUs from Ampere on,
CPUs with AMX-BF16 or AVX512-BF16) it runs about twice as fast. Elsewhere bf16 is
emulated and slower than float32, so `auto` takes bfloat16 only where such units are
found on this machine (never assumed from the platform) and float32 otherwise.

    choice = choose_precision("auto")
    print(choice.describe())      # precision: bfloat16 (auto: CPU has AMX-BF16)
    choice.precision              # "bfloat16"

CPU features come from `/proc/cpuinfo` (Linux); on other systems none are detected, so
`auto` is float32 on their CPUs. Tests pass `cpu=parse_cpuinfo(text)` and `gpus` to check
both branches.

One vocabulary for every command (`--precision`, defined once in `stabn_tf.cli`): `auto`,
`float32`, `bfloat16`, and `float16` for training only. Training's old spellings
`mixed_bfloat16` / `mixed_float16` are still read (old flag files, saved run configs).

`python -m stabn_tf.precision` prints this machine's CPU, what `auto` picks, and which
export to deploy on its CPU class (`recommend`, from figures measured on each class).
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import sys
from collections.abc import Sequence

from absl import app

from stabn_tf.errors import StabnError

#: What `--precision` takes: auto (this machine's choice, `choose_precision`) or a precision.
PRECISIONS = ("auto", "float32", "bfloat16")
#: Training also takes float16 (with loss scaling; inference never computes in it).
TRAINING_PRECISIONS = (*PRECISIONS, "float16")
#: The Keras dtype policy of each precision a model computes in.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
#: Training's old spellings, still read from old flag files and saved run configs.
OLD_NAMES = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}

#: The matrix features that decide inference speed, by their /proc/cpuinfo flag.
CPU_FEATURES = {
    "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
    "amx_tile": "AMX-TILE",
    "avx512_bf16": "AVX512-BF16",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
}
#: Flags of CPUs with bf16 arithmetic units, the best first (the one `auto` names).
BF16_CPU_FEATURES = ("amx_bf16", "avx512_bf16")
#: Where Linux describes the CPU.
CPUINFO = "/proc/cpuinfo"
#: NVIDIA GPUs run bf16 on tensor cores from compute capability 8.0 (Ampere) on.
BF16_GPU_CAPABILITY = (8, 0)
#: The help text of every command's `--precision` flag (`{names}`: what it takes).
FLAG_HELP = ("What the model computes in: {names}. auto is bfloat16 on a GPU or a CPU "
             "with AMX-BF16 / AVX512-BF16, float32 elsewhere. An exported model runs in "
             "its own precision (auto).")


class PrecisionError(ValueError, StabnError):
    """A precision that cannot be used; `str()` is one line for the user."""


@dataclasses.dataclass(frozen=True)
class CPUInfo:
    """The CPU's model name and which of `CPU_FEATURES` it has (their cpuinfo flags)."""

    model: str
    features: tuple[str, ...] = ()
    #: x86 AVX2: the vector ISA that int8 and float32 kernels fall back to without the above.
    avx2: bool = False

    @property
    def bf16_feature(self) -> str | None:
        """The best bf16 feature this CPU has ("amx_bf16", "avx512_bf16") or None."""
        return next((f for f in BF16_CPU_FEATURES if f in self.features), None)

    def describe(self) -> str:
        """"Intel(R) Xeon(R) Processor (AMX-BF16, AMX-INT8, AVX512-BF16, AVX512-VNNI)"."""
        names = [CPU_FEATURES[f] for f in CPU_FEATURES if f in self.features]
        return f"{self.model} ({', '.join(names) if names else 'no bf16/int8 matrix features'})"


def parse_cpuinfo(text: str) -> CPUInfo:
    """`CPUInfo` from the text of `/proc/cpuinfo` (the first processor's entry)."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:  # x86 / ARM spelling
            flags = set(value.split())
    return CPUInfo(model or platform.processor() or "unknown CPU",
                   tuple(f for f in CPU_FEATURES if f in flags), "avx2" in flags)


@functools.lru_cache(maxsize=1)
def cpu_info() -> CPUInfo:
    """This machine's CPU. Linux: from /proc/cpuinfo; elsewhere no features detected."""
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as f:
            return parse_cpuinfo(f.read())
    except OSError:
        return CPUInfo(platform.processor() or platform.machine() or "unknown CPU")


@dataclasses.dataclass(frozen=True)
class GPUInfo:
    """A GPU TensorFlow sees: its name and compute capability (None when TF has none)."""

    name: str
    compute_capability: tuple[int, int] | None = None

    @property
    def has_bf16(self) -> bool:
        """NVIDIA: Ampere or later. A GPU that reports no compute capability (not NVIDIA,
        e.g. ROCm) counts as capable: "a GPU" is the rule where nothing says otherwise."""
        return (self.compute_capability is None
                or tuple(self.compute_capability) >= BF16_GPU_CAPABILITY)


def gpu_info() -> list[GPUInfo]:
    """The GPUs TensorFlow can use (empty on the CPU build)."""
    import tensorflow as tf  # heavy: only when the machine is asked about

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        capability = details.get("compute_capability")
        gpus.append(GPUInfo(details.get("device_name", device.name),
                            tuple(capability) if capability else None))
    return gpus


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    """What inference computes in (`precision`: "float32" or "bfloat16"), what was asked
    for, and why."""

    precision: str
    requested: str
    reason: str

    def describe(self) -> str:
        """The one line the CLIs print: "precision: bfloat16 (auto: CPU has AMX-BF16)"."""
        return f"precision: {self.precision} ({self.reason})"

    def to_json(self) -> dict:
        return {"precision": self.precision, "requested": self.requested,
                "reason": self.reason}


def current_name(name: str) -> str:
    """`name` as the vocabulary spells it now (an old spelling → its new name)."""
    return OLD_NAMES.get(name, name)


def check_precision(requested: str, names: Sequence[str] = PRECISIONS) -> str:
    """`requested` if it is one of `names` (default `PRECISIONS`), else `PrecisionError`
    (one line). An old spelling of one of them is taken, with one line on stderr that
    names the new one."""
    new = current_name(requested)
    if new not in names:
        raise PrecisionError(f"--precision={requested}: choose from {', '.join(names)}")
    if new != requested:
        print(f"--precision={requested} is now spelled --precision={new}", file=sys.stderr,
              flush=True)
    return new


def choose_precision(requested: str = "auto", *, cpu: CPUInfo | None = None,
                     gpus: Sequence[GPUInfo] | None = None) -> PrecisionChoice:
    """`auto` → bfloat16 on a bf16-capable GPU or a CPU with AMX-BF16 / AVX512-BF16,
    float32 elsewhere; an explicit precision is taken as it is. `cpu` and `gpus` default
    to this machine's."""
    requested = check_precision(requested)
    if requested != "auto":
        return PrecisionChoice(requested, requested, "requested")
    gpus = gpu_info() if gpus is None else list(gpus)
    if gpus:
        fast = [g for g in gpus if g.has_bf16]
        if fast:
            return PrecisionChoice("bfloat16", requested, f"auto: GPU {fast[0].name}")
        return PrecisionChoice("float32", requested,
                               f"auto: GPU {gpus[0].name} has no bf16 tensor cores")
    cpu = cpu_info() if cpu is None else cpu
    feature = cpu.bf16_feature
    if feature:
        return PrecisionChoice("bfloat16", requested, f"auto: CPU has {CPU_FEATURES[feature]}")
    return PrecisionChoice("float32", requested, "auto: CPU has no AMX-BF16 or AVX512-BF16")


def resolve_precision(requested: str = "auto", **machine) -> str:
    """"float32" or "bfloat16" for `requested` on this machine (see `choose_precision`)."""
    return choose_precision(requested, **machine).precision


# --- which export to deploy on which CPU class -----------------------------------------
# The ranking of the formats depends on the CPU's matrix units, not on the vendor: with AMX
# the int8 OpenVINO IR leads TFLite int8 by a third and bf16 cuts float32's time by two
# thirds; with AVX512-BF16/VNNI but no AMX the int8 formats are level and bf16 still pays;
# with AVX2 only there are no bf16 units (bf16 is emulated). Each class's advice says where
# its figures were measured.

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
        "a 2-core AMD EPYC Zen 4 (AVX512-BF16/VNNI, no AMX), measured by the team; no "
        "result file of this class is committed yet"),
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
    """The deploy advice for `cpu`'s class."""
    return CPU_CLASSES[cpu_class(cpu)]


def describe_machine(cpu: CPUInfo | None = None) -> str:
    """The CPU, `auto`'s choice on its CPU and the deploy advice for its class, as
    `python -m stabn_tf.precision` prints them (GPUs are not asked about: deployment
    here is to CPUs)."""
    cpu = cpu_info() if cpu is None else cpu
    return (f"CPU: {cpu.describe()}\n{choose_precision('auto', cpu=cpu, gpus=[]).describe()}\n"
            f"{recommend(cpu).describe()}")


def main(argv: Sequence[str]) -> None:
    """`python -m stabn_tf.precision`: no arguments, the machine's description on stdout
    (a plain absl app: `stabn_tf.cli` itself imports this module)."""
    if len(argv) > 1:
        raise app.UsageError(f"no arguments expected, got {' '.join(argv[1:])}")
    print(describe_machine(), flush=True)


if __name__ == "__main__":
    app.run(main)
