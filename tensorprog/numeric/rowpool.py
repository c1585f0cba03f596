"""Generated grid kernels run as row ranges on a pool of threads: dynamic scheduling.

A generated kernel is compiled as a plain (``nogil``) loop over a range of outer grid positions,
``kernel(lo, hi, ...)``, not as a numba ``prange`` loop: this process's threads take the ranges
one at a time from a queue, so a thread slowed by another process does less of the work instead of
holding up its fixed half of the grid (numba's static ``prange`` split), and the kernel compiles in
about half the time (no parallel-loop lowering). Each position is computed by the same code
whatever thread runs it, so results do not depend on the number of threads or on the schedule.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

# Ranges per run: enough that a slow thread is left with little of the grid (each range is then
# 1/64 of the work), few enough that a range's fixed costs (a scratch buffer, a call) stay small.
CHUNKS = 64

_lock = threading.Lock()
_pool = None
_pool_size = 0


def threads() -> int:
    """The number of threads a run uses: numba's setting (``--threads``, ``NUMBA_NUM_THREADS``)."""
    import numba

    return max(1, int(numba.get_num_threads()))


def _executor(n):
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != n:
            if _pool is not None:
                _pool.shutdown(wait=True)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="tensorprog")
            _pool_size = n
        return _pool


def run_ranges(kernel, outer, *args):
    """Call ``kernel(lo, hi, *args)`` for contiguous ranges [lo, hi) covering ``range(outer)``:
    up to ``CHUNKS`` ranges, taken by the threads as they become free (errors re-raised here)."""
    if outer <= 0:
        return
    chunks = min(outer, CHUNKS)
    bounds = [outer * c // chunks for c in range(chunks + 1)]
    n = min(threads(), chunks)
    if n == 1:
        kernel(0, outer, *args)
        return
    futures = [_executor(n).submit(kernel, bounds[c], bounds[c + 1], *args) for c in range(chunks)]
    for f in futures:
        f.result()
