"""Generated grid kernels run as row ranges on a thread pool (tensorprog/numeric/rowpool.py)."""
import threading

import numba
import numpy as np
import pytest

import tensorprog
from gaussian_truths import relu_relu, step_step
from mlp_truths import inline_data, mlp_program, mlp_recursion, on_pairs
from tensorprog.numeric import rowpool


def test_ranges_cover_every_position_once_across_threads():
    seen = np.zeros(1000, dtype=np.int64)
    names = set()
    lock = threading.Lock()

    def kernel(lo, hi, out):
        with lock:
            names.add(threading.current_thread().name)
        out[lo:hi] += 1

    rowpool.run_ranges(kernel, 1000, seen)
    assert np.all(seen == 1)
    assert len(names) <= rowpool.threads()


def test_an_error_in_a_range_reaches_the_caller():
    def kernel(lo, hi):
        if lo <= 500 < hi:
            raise FloatingPointError(f"range {lo}:{hi}")

    with pytest.raises(FloatingPointError, match="range"):
        rowpool.run_ranges(kernel, 1000)


def test_tiled_recursion_is_identical_with_one_and_two_threads():
    # 240 inputs: 57,600 pairs per layer take the generated tiled kernel; the result must not depend
    # on how the row ranges are spread over threads, and must match the hand recursion.
    rng = np.random.default_rng(11)
    points = rng.standard_normal((240, 3))
    limit = tensorprog.derive(mlp_program("relu", 5, 2.0, 0.1, inline_data(points)))
    saved = numba.get_num_threads()
    try:
        runs = []
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n)
            runs.append(tensorprog.evaluate(limit))
    finally:
        numba.set_num_threads(saved)
    for name in ("NNGP", "NTK"):
        assert np.array_equal(runs[0][name].value, runs[1][name].value)
    # the arc-cosine recursion, entry by entry (independent of the generated code)
    nngp, ntk = mlp_recursion(lambda S: (on_pairs(relu_relu, S), on_pairs(step_step, S)), points, 5, 2.0, 0.1)
    np.testing.assert_allclose(runs[1]["NNGP"].value, nngp, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(runs[1]["NTK"].value, ntk, rtol=1e-10, atol=1e-10)
