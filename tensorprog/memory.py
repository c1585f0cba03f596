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


def largest_array_bytes(*roots) -> int:
    """Bytes of the largest numpy buffer reachable from ``roots``."""
    from .numeric.footprint import array_buffers

    return max(array_buffers(*roots).values(), default=0)


def parse_workspace(program) -> int:
    """Bytes a parse holds besides the program's arrays at its peak: at most one more table as large
    as the largest (frontend/terms.py computes a formula's chain of tables in place on one array,
    a formula used twice once; an operation on two full tables holds both and its result)."""
    return largest_array_bytes(program)


def estimate_run(program, limit=None, backend="auto") -> dict:
    """Predicted peak memory (bytes above the interpreter's own) of parsing ``program`` and, with its
    derived ``limit``, evaluating it: ``{"resident", "parse", "evaluate", "peak"}``.

    resident: the program's (and limit's) arrays, counted once per buffer. parse: resident plus
    ``parse_workspace``. evaluate: the step-by-step model of ``numeric/footprint.py`` on top of
    the resident arrays. peak: the larger of the two.
    """
    from .numeric.footprint import evaluation_peak, resident_bytes

    roots = (program,) if limit is None else (program, limit)
    resident = resident_bytes(*roots)
    out = {"resident": resident, "parse": resident + parse_workspace(program) + RUN_OVERHEAD}
    if limit is not None:
        from .numeric.fused import FUSE_MIN_POINTS

        min_points = {"auto": FUSE_MIN_POINTS, "numba": 0}.get(backend)
        out["evaluate"] = evaluation_peak(limit, min_points, resident) + RUN_OVERHEAD
    out["peak"] = max(out["parse"], out.get("evaluate", 0))
    return out


#: What a run grows by besides its arrays (symbolic derivation, allocator arenas), measured with
#: bench/bench_memory.py: 0-13 MiB over an interpreter that ran a small program of the same shape.
RUN_OVERHEAD = 8 << 20
