"""Peak memory of an export, which every export prints: an export machine is often a
laptop, and the full-size model's float graph, its converted copies and its calibration
clips are each gigabytes."""

from __future__ import annotations

import resource
import sys
from collections.abc import Mapping


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (`getrusage`: kB on Linux, bytes on
    macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def format_peak_rss(report: Mapping) -> str:
    """The report's line: "peak RSS of this export: 2.31 GB (the whole process)"."""
    return f"peak RSS of this export: {report['peak_rss_bytes'] / 1e9:.2f} GB (the whole process)"
