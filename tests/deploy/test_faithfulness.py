"""`stabn_tf.deploy.faithfulness`: an export's parity is held to the explanation limits
(top-1 ≥ 99 %, Mt r ≥ 0.999, Ms r ≥ 0.99, max |Δ Mt| ≤ 0.05); one line names what fell
short, and --accept_unfaithful lets it through."""

import pytest

from stabn_tf.deploy import ExportError
from stabn_tf.deploy import faithfulness as fa

FAITHFUL = {"clips": 120.0, "top1_agreement": 1.0, "pearson/temporal_attention": 0.9998,
            "pearson/spatial_attention": 0.995, "max_abs_diff/temporal_attention": 0.01,
            "max_abs_diff/probabilities": 0.3}
# today's OpenVINO int8 IR of the demo checkpoint, as the issue reported it
BENT = {**FAITHFUL, "pearson/temporal_attention": 0.9514,
        "max_abs_diff/temporal_attention": 0.184}


def test_a_faithful_export_passes_and_says_so():
    assert fa.shortfalls(FAITHFUL) == []
    assert fa.verdict(FAITHFUL).endswith(": yes")
    fa.require_faithful(FAITHFUL, "the int8 IR", accept=False)


def test_each_limit_is_inclusive_and_checked():
    at_limits = {**FAITHFUL, "top1_agreement": 0.99, "pearson/temporal_attention": 0.999,
                 "pearson/spatial_attention": 0.99, "max_abs_diff/temporal_attention": 0.05}
    assert fa.shortfalls(at_limits) == []
    for key, value in (("top1_agreement", 0.98), ("pearson/temporal_attention", 0.998),
                       ("pearson/spatial_attention", 0.98),
                       ("max_abs_diff/temporal_attention", 0.06),
                       ("pearson/temporal_attention", float("nan"))):
        assert len(fa.shortfalls({**FAITHFUL, key: value})) == 1, key


def test_a_bent_explanation_is_refused_in_one_line_unless_accepted():
    assert fa.shortfalls(BENT) == ["Mt Pearson 0.9514 < 0.999", "max |Δ Mt| 0.184 > 0.05"]
    with pytest.raises(ExportError) as refused:
        fa.require_faithful(BENT, "the int8 IR in float32", accept=False)
    message = str(refused.value)
    assert "\n" not in message
    assert message == ("the int8 IR in float32 does not keep the explanation on 120 "
                       "validation clips against Keras float32: Mt Pearson 0.9514 < 0.999; "
                       "max |Δ Mt| 0.184 > 0.05; nothing written (--accept_unfaithful "
                       "writes it anyway)")
    fa.require_faithful(BENT, "the int8 IR", accept=True)
    assert "NO: Mt Pearson 0.9514 < 0.999" in fa.verdict(BENT)


def test_a_model_without_attention_is_held_to_top1_alone():
    baseline = {"clips": 12.0, "top1_agreement": 1.0, "max_abs_diff/probabilities": 0.2}
    assert fa.shortfalls(baseline) == []
    assert fa.shortfalls({**baseline, "top1_agreement": 0.5}) == ["top-1 agreement 0.5 < 0.99"]
