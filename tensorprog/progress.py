"""A one-line text progress bar on stderr, for runs longer than a few seconds."""
from __future__ import annotations

import sys
import time


class Progress:
    """A progress bar drawn only when the stream is a terminal and the work has already taken
    ``delay`` seconds.  Work is counted in arbitrary units (``total``)."""

    def __init__(self, total, stream=None, delay=2.0, enabled=True, name="tpc"):
        self.total = max(float(total), 1e-300)
        self.stream = stream if stream is not None else sys.stderr
        self.delay = delay
        self.enabled = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.name = name
        self.done = 0.0
        self.start = time.perf_counter()
        self.drawn = False

    def advance(self, amount, label=""):
        self.done += amount
        elapsed = time.perf_counter() - self.start
        if not self.enabled or elapsed < self.delay:
            return
        frac = min(self.done / self.total, 1.0)
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
        self.stream.write(f"\r{self.name} [{bar}] {100 * frac:5.1f}%  {label[:30]:<30}  ETA {eta:5.0f} s ")
        self.stream.flush()
        self.drawn = True

    def close(self):
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
