"""A dependency-free progress bar: redraws in place on a terminal, prints milestones in logs/CI."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``bar = ProgressBar(total, "experiments"); bar.update(done, "note")``."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, every: int | None = None) -> None:
        self.total = max(1, int(total))
        self.label = label
        self.stream = stream or sys.stderr
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every if every is not None else max(1, self.total // 20)
        self.start = time.time()
        self._last_draw = 0.0

    def update(self, done: int, note: str = "") -> None:
        now = time.time()
        final = done >= self.total
        if self.interactive:
            if not final and now - self._last_draw < 0.2:
                return
        elif not final and done % self.every:
            return
        self._last_draw = now
        frac = min(1.0, done / self.total)
        filled = int(28 * frac)
        line = (
            f"{self.label} [{'#' * filled}{'-' * (28 - filled)}] {done}/{self.total} "
            f"{now - self.start:5.0f}s {note}"
        ).rstrip()
        if self.interactive:
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
