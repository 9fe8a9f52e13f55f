"""Progress of an evaluation pass with the time left: a tqdm bar on a terminal, a log line
every `interval` seconds otherwise (a batch job's log file gets no carriage returns)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from tqdm import tqdm


def duration(seconds: float) -> str:
    """`1h02m`, `3m05s`, `12s`: short enough for a log line."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Videos done out of `total` in one pass, with its rate and the time it has left.

    `done` videos were finished before (a resume): they count as done but not in the rate.
    On a terminal (`bar=None`: when stderr is one) a tqdm bar; else `log` gets
    `<title>: 120/1000 videos, 3.2 videos/s, about 4m35s left` every `interval` seconds
    and when the pass ends.
    """

    def __init__(self, title: str, total: int, done: int = 0, *,
                 log: Callable[[str], None] = print, bar: bool | None = None,
                 interval: float = 30.0):
        self.title, self.total, self.done, self.log, self.interval = \
            title, total, done, log, interval
        self._resumed = done
        self._start = self._last = time.monotonic()
        if bar is None:
            bar = sys.stderr.isatty()
        self._bar = tqdm(total=total, initial=done, desc=title, unit="video",
                         dynamic_ncols=True, leave=True) if bar else None

    def update(self, videos: int) -> None:
        self.done += videos
        if self._bar is not None:
            self._bar.update(videos)
        elif time.monotonic() - self._last >= self.interval:
            self._say()

    def rate(self) -> float:
        """Videos per second in this process so far (0 before the first)."""
        seconds = time.monotonic() - self._start
        return (self.done - self._resumed) / seconds if seconds > 0 else 0.0

    def left(self) -> float | None:
        """Seconds this pass has left at the current rate (None before the first video)."""
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 else None

    def _say(self) -> None:
        self._last = time.monotonic()
        left = self.left()
        eta = "" if left is None else \
            f", {self.rate():.2f} videos/s, about {duration(left)} left"
        self.log(f"{self.title}: {self.done}/{self.total} videos{eta}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            self._say()
