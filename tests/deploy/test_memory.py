"""An export's phases hand freed memory back (`release_freed_memory`), so the next phase's
peak does not sit on the last one's."""

from __future__ import annotations

import os
import sys

import numpy as np

from stabn_tf.deploy import memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_freed_inside_the_heap_goes_back_to_the_system():
    assert sys.platform.startswith("linux")  # where exports are measured (CI included)
    # 3,000 blocks of 64 KiB: below glibc's mmap threshold, so they come from the heap,
    # which cannot shrink past the one block kept at its top; freeing the rest leaves
    # ~190 MB mapped until it is trimmed.
    blocks = [np.ones(1 << 13) for _ in range(3000)]
    keep = np.ones(1 << 13)
    full = _rss_bytes()
    del blocks
    freed = _rss_bytes()
    assert memory.release_freed_memory()
    trimmed = _rss_bytes()
    assert trimmed < freed - 100e6 and trimmed < full - 100e6, (full, freed, trimmed)
    assert keep.sum() == 1 << 13
