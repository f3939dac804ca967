"""A dependency-free progress bar: redraws in place on a terminal, prints every 10 % elsewhere."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int, stream=None):
        self.label, self.total = label, max(total, 1)
        self.stream = stream or sys.stderr
        self.start = time.time()
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self._last_decile = -1
        self.done = 0

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        frac = min(done / self.total, 1.0)
        elapsed = time.time() - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        bar = "#" * int(frac * 24)
        line = f"{self.label:<18} [{bar:<24}] {done}/{self.total} {elapsed:5.0f}s eta {eta:4.0f}s {note}"
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
            self.stream.flush()
        elif int(frac * 10) != self._last_decile:
            self._last_decile = int(frac * 10)
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
