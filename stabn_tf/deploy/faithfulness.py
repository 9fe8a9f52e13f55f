"""Whether an exported model keeps the explanation, not only the class.

An int8 or bf16 export can agree with Keras on every top-1 class and still move the
temporal attention Mt ("when") by a fifth of its range: a user who picks the fastest
format would then read a different explanation. Every export measures its parity with
Keras float32 on the validation clips (`tflite.compare_outputs`) and holds it to
`LIMITS`; below them it is refused with one line naming what fell short, unless the user
passes `--accept_unfaithful` (the same flag on every export command).

The limits: top-1 agreement ≥ 99 %, Mt Pearson ≥ 0.999, Ms Pearson ≥ 0.99 (Ms has many
near-zero cells whose rounding lowers r without changing the map a person sees), max |Δ Mt|
≤ 0.05 (a frame weight read to two decimals stays the same).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from stabn_tf.deploy import ExportError
from stabn_tf.outputs import SPATIAL_ATTENTION, TEMPORAL_ATTENTION

#: The flag (on every export command) that writes an export below `LIMITS` anyway.
ACCEPT_FLAG = "accept_unfaithful"
#: (parity key, short name, lowest allowed) — higher is better.
LOWER_LIMITS = (("top1_agreement", "top-1 agreement", 0.99),
                (f"pearson/{TEMPORAL_ATTENTION}", "Mt Pearson", 0.999),
                (f"pearson/{SPATIAL_ATTENTION}", "Ms Pearson", 0.99))
#: (parity key, short name, highest allowed) — lower is better.
UPPER_LIMITS = ((f"max_abs_diff/{TEMPORAL_ATTENTION}", "max |Δ Mt|", 0.05),)


def shortfalls(parity: Mapping[str, float]) -> list[str]:
    """What in `parity` (a `compare_outputs` result) misses `LIMITS`, e.g. ["Mt Pearson
    0.9514 < 0.999"]; empty for a faithful export. Outputs a model lacks (the baseline has
    no attention) are not checked."""
    missed = [f"{name} {parity[key]:.4g} < {limit:g}" for key, name, limit in LOWER_LIMITS
              if key in parity and not parity[key] >= limit]
    missed += [f"{name} {parity[key]:.3g} > {limit:g}" for key, name, limit in UPPER_LIMITS
               if key in parity and not parity[key] <= limit]
    return missed


def verdict(parity: Mapping[str, float]) -> str:
    """The report's line: "keeps the explanation (top-1 ≥ 99 %, ...): yes" or "NO: ..."."""
    missed = shortfalls(parity)
    return (f"keeps the explanation ({describe_limits()}): "
            + ("yes" if not missed else f"NO: {'; '.join(missed)}"))


def describe_limits() -> str:
    return ", ".join([f"{name} ≥ {limit:g}" for _, name, limit in LOWER_LIMITS]
                     + [f"{name} ≤ {limit:g}" for _, name, limit in UPPER_LIMITS])


def require_faithful(parity: Mapping[str, float], what: str, accept: bool,
                     details: str = "",
                     notify: Callable[[str], None] = lambda message: None) -> None:
    """`ExportError` (one line, nothing written) when `parity` misses the limits and the
    user did not pass `--accept_unfaithful`; `what` names the export, e.g. "the int8 IR".
    `details` (the full parity block) goes to `notify` first, so the numbers are shown
    with the refusal."""
    missed = shortfalls(parity)
    if missed and not accept:
        if details:
            notify(details)
        raise ExportError(
            f"{what} does not keep the explanation on {int(parity['clips'])} validation "
            f"clips against Keras float32: {'; '.join(missed)}; nothing written "
            f"(--{ACCEPT_FLAG} writes it anyway)")
