"""Which of a frame's denoising steps are reported: its first and last, and in between at most one per interval.

A UI needs a few updates a second, not SDXL's 20-40 steps a second per frame, while every report is a message from
the renderer to the gateway, an event the gateway stores and a message to each of its watchers. The renderer thins
its reports to the interval the gateway asks for (``RenderRequest.progress_interval_seconds``); the gateway thins
them again, as a guard against a renderer that does not.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ProgressThrottle:
    """Decides, step by step, whether one frame's step is reported."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last_sent: float | None = None

    def passes(self, step: int, total_steps: int) -> bool:
        """Whether step ``step`` of ``total_steps`` is reported; the steps that pass are counted as sent."""
        now = self._clock()
        due = self._last_sent is None or now - self._last_sent >= self._interval
        if not (due or step >= total_steps):
            return False
        self._last_sent = now
        return True
