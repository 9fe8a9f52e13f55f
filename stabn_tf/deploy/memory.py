"""Peak memory of an export, which every export prints: an export machine is often a
laptop, and the full-size model's float graph, its converted copies and its calibration
clips are each gigabytes."""

from __future__ import annotations

import ctypes
import functools
import gc
import resource
import sys
from collections.abc import Mapping


@functools.cache
def _malloc_trim():
    """glibc's `malloc_trim` from the symbols already loaded in this process (no library
    search, which would start `ldconfig`), or None where the C library has none (macOS,
    musl). Looked up on first use, not at import."""
    if not sys.platform.startswith("linux"):
        return None
    return getattr(ctypes.CDLL(None), "malloc_trim", None)


def release_freed_memory() -> bool:
    """Hands the memory freed so far back to the system: a garbage collection, then glibc's
    `malloc_trim`. An export runs phases of gigabytes one after another (conversion,
    calibration, quantization, the Keras reference, the exported model); the C library
    keeps what one phase freed mapped, so without this the next phase's peak sits on
    the last one's. Returns whether the C library could be asked (glibc only)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (`getrusage`: kB on Linux, bytes on
    macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def format_peak_rss(report: Mapping) -> str:
    """The report's line: "peak RSS of this export: 2.31 GB (the whole process)"."""
    return f"peak RSS of this export: {report['peak_rss_bytes'] / 1e9:.2f} GB (the whole process)"
