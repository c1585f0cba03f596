"""Throughput of tensorprog.numeric.special against the libm functions of the math module.

Usage: python bench/bench_special.py [--n N] [--repeat R] [--only acos exp ...]  (R = 15)
For each function, a numba prange loop out[i] = f(x[i]) over N values (default 10**7) is timed
with our branch-free function and with the math-module (libm) equivalent, on 1 and 2 threads
(numba.set_num_threads).  After a warm-up call, the median and the best of R timed calls are
reported; the speed-up uses the best times, the robust figure on a shared machine (other
processes only ever slow a call down).  The last column is the largest relative difference
between the two results (for sin2pi/cos2pi it reflects the rounding of 2 pi u in the libm form
near the zeros); "lanes" is the SIMD width of the fused multiply-adds in our compiled loop
(1 would mean it did not vectorise).  A plain copy loop gives the memory-bandwidth floor.
Target on the 2-core reference machine: 3-5x over libm on 2 threads for acos/exp/log/erf/tanh.
"""
import argparse
import math
import re
import time

import numba
import numpy as np
from numba import njit, prange

from tensorprog.numeric import special as sp

_INV_SQRT2 = 0.7071067811865476
_TWO_PI = 2.0 * math.pi


@njit(error_model='numpy', fastmath={'contract'})
def _libm_ndtr(x):
    return 0.5 * math.erfc(-x * _INV_SQRT2)


@njit(error_model='numpy', fastmath={'contract'})
def _libm_sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@njit(error_model='numpy', fastmath={'contract'})
def _libm_softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@njit(error_model='numpy', fastmath={'contract'})
def _libm_sin2pi(u):
    return math.sin(_TWO_PI * u)


@njit(error_model='numpy', fastmath={'contract'})
def _libm_cos2pi(u):
    return math.cos(_TWO_PI * u)


@njit(error_model='numpy', fastmath={'contract'})
def _sp_sin2pi(u):
    return sp.sincos2pi(u)[0]


@njit(error_model='numpy', fastmath={'contract'})
def _sp_cos2pi(u):
    return sp.sincos2pi(u)[1]


# name -> (ours, libm equivalent, input domain (lo, hi))
UNARY = {
    'acos': (sp.acos, math.acos, (-1.0, 1.0)),
    'asin': (sp.asin, math.asin, (-1.0, 1.0)),
    'atan': (sp.atan, math.atan, (-10.0, 10.0)),
    'exp': (sp.exp, math.exp, (-50.0, 50.0)),
    'expm1': (sp.expm1, math.expm1, (-5.0, 5.0)),
    'log': (sp.log, math.log, (1e-3, 100.0)),
    'log1p': (sp.log1p, math.log1p, (-0.9, 10.0)),
    'tanh': (sp.tanh, math.tanh, (-10.0, 10.0)),
    'erf': (sp.erf, math.erf, (-5.0, 5.0)),
    'erfc': (sp.erfc, math.erfc, (-5.0, 10.0)),
    'ndtr': (sp.ndtr, _libm_ndtr, (-10.0, 10.0)),
    'sigmoid': (sp.sigmoid, _libm_sigmoid, (-20.0, 20.0)),
    'softplus': (sp.softplus, _libm_softplus, (-20.0, 20.0)),
    'sin': (sp.sin, math.sin, (-10.0, 10.0)),
    'cos': (sp.cos, math.cos, (-10.0, 10.0)),
    'sin2pi': (_sp_sin2pi, _libm_sin2pi, (0.0, 1.0)),
    'cos2pi': (_sp_cos2pi, _libm_cos2pi, (0.0, 1.0)),
}


def _unary_loop(f):
    @njit(parallel=True, error_model='numpy', fastmath={'contract'})
    def loop(x, out):
        for i in prange(x.size):
            out[i] = f(x[i])
    return loop


@njit(parallel=True, error_model='numpy', fastmath={'contract'})
def _atan2_ours(y, x, out):
    for i in prange(x.size):
        out[i] = sp.atan2(y[i], x[i])


@njit(parallel=True, error_model='numpy', fastmath={'contract'})
def _atan2_libm(y, x, out):
    for i in prange(x.size):
        out[i] = math.atan2(y[i], x[i])


@njit(parallel=True, error_model='numpy')
def _copy(x, out):
    for i in prange(x.size):
        out[i] = x[i]


def _times(call, repeat):
    """(median, best) wall time of call() over repeat calls after a warm-up call."""
    call()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2], min(times)


def _lanes(loop):
    """Widest <N x double> fused multiply-add in the compiled loop: N > 1 means it vectorised."""
    ir = loop.inspect_llvm(loop.signatures[0])
    return max([int(n) for n in re.findall(r'@llvm\.fma\.v(\d+)f64', ir)] or [1])


def _max_rel_diff(a, b):
    with np.errstate(divide='ignore', invalid='ignore'):
        d = np.abs(a - b) / np.abs(b)
    return float(np.max(np.where(np.isfinite(d), d, 0.0)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n', type=int, default=10**7)
    ap.add_argument('--repeat', type=int, default=15)
    ap.add_argument('--only', nargs='*', default=None)
    args = ap.parse_args()
    names = args.only or list(UNARY) + ['atan2']
    threads = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})
    rng = np.random.default_rng(0)
    n = args.n
    out_a, out_b = np.empty(n), np.empty(n)

    print(f"n = {n:.0e} values per call, {args.repeat} calls; times in ms as median / best "
          f"(M values/s of the best in brackets)")
    x = rng.uniform(-1.0, 1.0, n)
    for th in threads:
        numba.set_num_threads(th)
        t, tmin = _times(lambda: _copy(x, out_a), args.repeat)
        print(f"{'copy':9s} threads={th}  {t * 1e3:7.2f} / {tmin * 1e3:7.2f} ms "
              f"({n / tmin / 1e6:5.0f})  memory floor")
    for name in names:
        if name == 'atan2':
            y, xx = rng.standard_normal(n), rng.standard_normal(n)
            ours = lambda: _atan2_ours(y, xx, out_a)            # noqa: E731
            libm = lambda: _atan2_libm(y, xx, out_b)            # noqa: E731
            ours()
            lanes = _lanes(_atan2_ours)
        else:
            f_ours, f_libm, (lo, hi) = UNARY[name]
            xs = rng.uniform(lo, hi, n)
            l_ours, l_libm = _unary_loop(f_ours), _unary_loop(f_libm)
            ours = lambda: l_ours(xs, out_a)                    # noqa: E731
            libm = lambda: l_libm(xs, out_b)                    # noqa: E731
            ours()
            lanes = _lanes(l_ours)
        for th in threads:
            numba.set_num_threads(th)
            ta, ta_min = _times(ours, args.repeat)
            tb, tb_min = _times(libm, args.repeat)
            print(f"{name:9s} threads={th}  ours {ta * 1e3:7.2f} / {ta_min * 1e3:7.2f} ms "
                  f"({n / ta_min / 1e6:5.0f})  libm {tb * 1e3:7.2f} / {tb_min * 1e3:7.2f} ms "
                  f"({n / tb_min / 1e6:5.0f})  speed-up {tb_min / ta_min:5.2f}x  "
                  f"max rel diff {_max_rel_diff(out_a, out_b):.1e}  lanes {lanes}", flush=True)


if __name__ == '__main__':
    main()
