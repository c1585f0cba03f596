"""How much memory a run may use, and a clear refusal when it would not fit."""
from __future__ import annotations

from .errors import error


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where that file does not exist)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def gib(nbytes) -> str:
    return f"{nbytes / 2 ** 30:.1f} GiB"


def require(nbytes, what, limit=None):
    """Raise a TPError if ``nbytes`` exceeds ``limit`` (default: the memory available now)."""
    limit = available_memory() if limit is None else limit
    if limit is not None and nbytes > limit:
        raise error(None, f"{what} needs about {gib(nbytes)} of memory, but only {gib(limit)} is available")
