"""`stabn_tf.precision`: CPU features read from cpuinfo text, GPUs by compute capability,
and `auto` resolved both ways; bad values are one line."""

import pathlib

import pytest

from stabn_tf import precision as pr

ROOT = pathlib.Path(__file__).resolve().parents[1]

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme avx2 avx512f avx512_vnni avx512_bf16 avx_vnni amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme avx2 avx512f avx512_vnni avx512_bf16 avx_vnni amx_bf16 amx_tile amx_int8
"""
ZEN4 = """processor\t: 0
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni
"""
ZEN3 = """processor\t: 0
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu avx2 fma
"""
GRAVITON = """processor\t: 0
Features\t: fp asimd sve bf16 i8mm
"""


def test_cpuinfo_features_and_description():
    spr = pr.parse_cpuinfo(SAPPHIRE_RAPIDS)
    assert spr.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert spr.features == ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni",
                            "avx_vnni")
    assert spr.bf16_feature == "amx_bf16"
    assert spr.describe() == ("Intel(R) Xeon(R) Platinum 8480+ (AMX-BF16, AMX-INT8, AMX-TILE, "
                              "AVX512-BF16, AVX512-VNNI, AVX-VNNI)")
    assert pr.parse_cpuinfo(ZEN4).bf16_feature == "avx512_bf16"
    zen3 = pr.parse_cpuinfo(ZEN3)
    assert zen3.features == () and zen3.bf16_feature is None
    assert zen3.describe().endswith("(no bf16/int8 matrix features)")
    # ARM's bf16 is not one of the x86 matrix features auto relies on.
    assert pr.parse_cpuinfo(GRAVITON).features == ()


def test_auto_resolves_both_ways_on_cpus():
    def auto(text):
        return pr.choose_precision("auto", cpu=pr.parse_cpuinfo(text), gpus=[])

    assert auto(SAPPHIRE_RAPIDS) == pr.PrecisionChoice("bfloat16", "auto",
                                                       "auto: CPU has AMX-BF16")
    assert auto(SAPPHIRE_RAPIDS).describe() == "precision: bfloat16 (auto: CPU has AMX-BF16)"
    assert auto(ZEN4).reason == "auto: CPU has AVX512-BF16"
    for text in (ZEN3, GRAVITON, ""):
        assert auto(text).precision == "float32"
    assert pr.resolve_precision("auto", cpu=pr.parse_cpuinfo(ZEN3), gpus=[]) == "float32"


def test_auto_on_gpus_and_explicit_choices():
    zen3 = pr.parse_cpuinfo(ZEN3)
    a100 = pr.GPUInfo("NVIDIA A100-SXM4-80GB", (8, 0))
    t4 = pr.GPUInfo("Tesla T4", (7, 5))
    assert pr.resolve_precision("auto", cpu=zen3, gpus=[a100]) == "bfloat16"
    older = pr.choose_precision("auto", cpu=pr.parse_cpuinfo(SAPPHIRE_RAPIDS), gpus=[t4])
    assert older.precision == "float32" and "no bf16 tensor cores" in older.reason
    for requested in ("float32", "bfloat16"):  # taken as asked, whatever the machine
        choice = pr.choose_precision(requested, cpu=zen3, gpus=[])
        assert choice.precision == requested and choice.reason == "requested"
        assert choice.to_json() == {"precision": requested, "requested": requested,
                                    "reason": "requested"}


def test_bad_value_is_one_line():
    with pytest.raises(pr.PrecisionError) as err:
        pr.choose_precision("fp16")
    assert str(err.value) == "--precision=fp16: choose from auto, float32, bfloat16"


def test_no_cpuinfo_means_no_features(monkeypatch, tmp_path):
    """Off Linux there is no /proc/cpuinfo: nothing is detected, so auto is float32."""
    monkeypatch.setattr(pr, "CPUINFO", str(tmp_path / "missing"))
    pr.cpu_info.cache_clear()
    try:
        cpu = pr.cpu_info()
        assert cpu.features == () and cpu.model
        assert pr.resolve_precision("auto", gpus=[]) == "float32"
    finally:
        pr.cpu_info.cache_clear()


@pytest.mark.parametrize("cpuinfo, cpu_class", [
    (SAPPHIRE_RAPIDS, "AMX"), (ZEN4, "AVX512-BF16/VNNI"), (ZEN3, "AVX2 only"),
    (GRAVITON, "other")])
def test_each_cpu_class_gets_its_advice_and_says_where_the_figures_came_from(cpuinfo,
                                                                           cpu_class):
    cpu = pr.parse_cpuinfo(cpuinfo)
    assert pr.cpu_class(cpu) == cpu_class
    text = pr.describe_machine(cpu)
    assert text.startswith(f"CPU: {cpu.describe()}\nprecision: ")
    assert f"CPU class: {cpu_class}\n" in text
    advice = pr.recommend(cpu)
    assert advice.fastest in text and advice.serving in text and f"figures: {advice.source}" \
        in text
    # bf16 serving only where auto picks bf16: the advice and `auto` agree
    bf16 = pr.choose_precision("auto", cpu=cpu, gpus=[]).precision == "bfloat16"
    assert ("bfloat16" in advice.serving) == bf16


def test_result_files_the_advice_cites_are_committed():
    for advice in pr.CPU_CLASSES.values():
        for word in advice.source.split():
            if word.startswith("benchmarks/results/"):
                assert (ROOT / word).is_file(), word


def test_module_prints_this_machines_advice(python):
    result = python("-m", "stabn_tf.precision")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == pr.describe_machine() + "\n"


def test_one_vocabulary_with_training_s_old_spellings(capsys):
    """Training takes float16 besides the vocabulary of every command; its old spellings
    are read with one line naming the new one, and every precision has its Keras policy."""
    assert pr.TRAINING_PRECISIONS == ("auto", "float32", "bfloat16", "float16")
    assert set(pr.POLICIES) == set(pr.TRAINING_PRECISIONS) - {"auto"}
    assert pr.check_precision("bfloat16") == "bfloat16" and capsys.readouterr().err == ""
    for old, new in (("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")):
        assert pr.check_precision(old, pr.TRAINING_PRECISIONS) == new
        assert capsys.readouterr().err == f"--precision={old} is now spelled --precision={new}\n"
        assert pr.current_name(old) == new and pr.current_name(new) == new
    assert pr.choose_precision("mixed_bfloat16", gpus=[]).precision == "bfloat16"
    capsys.readouterr()
    with pytest.raises(pr.PrecisionError, match="choose from auto, float32, bfloat16$"):
        pr.check_precision("float16")  # inference never computes in float16
    with pytest.raises(pr.PrecisionError, match="^--precision=mixed_float16: choose from"):
        pr.check_precision("mixed_float16")
