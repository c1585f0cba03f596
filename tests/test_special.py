"""Accuracy and special values of tensorprog.numeric.special against independent truths.

Truths: mpmath at 40-50 significant digits for every function value on dense grids and edge
cases; C99 special values (written out here, or taken from Python's math module, which follows
C99); exact identities (sin^2 + cos^2 = 1, acos + asin = pi/2, erf + erfc = 1).  The relative
errors are measured in exact arithmetic (mpmath), so a reported error is the error of the
float64 result, not of the reference.
"""
import functools
import math

import mpmath as mp
import numba
import numpy as np
import pytest
from numba import njit, prange

from tensorprog.numeric import special as sp

TINY = 2.2250738585072014e-308          # smallest normal float64: relative error is checked above
INF = math.inf
NAN = math.nan


@functools.lru_cache(maxsize=None)
def _vectorised(name):
    """A serial njit loop applying sp.<name> elementwise (one compile per function)."""
    f = getattr(sp, name)

    @njit(error_model='numpy')
    def loop(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = f(x[i])
        return out
    return loop


@njit(error_model='numpy')
def _atan2_loop(y, x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = sp.atan2(y[i], x[i])
    return out


@njit(error_model='numpy')
def _sincos2pi_loop(u):
    s = np.empty_like(u)
    c = np.empty_like(u)
    for i in range(u.size):
        s[i], c[i] = sp.sincos2pi(u[i])
    return s, c


def _max_rel_err(got, xs, ref, dps=40):
    """max |got - ref(x)| / |ref(x)| in exact arithmetic, over x with |ref(x)| >= TINY."""
    worst, at = 0.0, None
    with mp.workdps(dps):
        for g, x in zip(got, xs):
            r = ref(*(mp.mpf(float(v)) for v in np.atleast_1d(x)))
            if abs(r) < TINY:
                continue
            e = float(abs(mp.mpf(float(g)) - r) / abs(r)) if math.isfinite(g) else INF
            if e > worst:
                worst, at = e, x
    return worst, at


def _both_signs(v):
    return np.concatenate([v, -v])


_RNG = np.random.default_rng(20240611)


def _uniform(lo, hi, n):
    return _RNG.uniform(lo, hi, n)


def _logu(lo, hi, n):
    """|x| log-uniform in [10^lo, 10^hi], random sign."""
    return _RNG.choice([-1.0, 1.0], n) * 10.0 ** _RNG.uniform(lo, hi, n)


def _near_one(n):
    """Points within 1e-16 .. 0.5 of +-1, including the float64 neighbours of +-1."""
    d = np.concatenate([10.0 ** _RNG.uniform(-16, -0.3, n), [2.0**-53, 2.0**-52, 2.0**-30]])
    return _both_signs(1.0 - d)


# name -> (mpmath truth, sample points, bound on the max relative error)
CASES = {
    'exp': (mp.exp, np.concatenate([_uniform(-708.3, 709.78, 500), _logu(-20, 1, 300),
                                     [709.78, -708.39, 1e-300, -1e-300]]), 4e-16),
    'expm1': (mp.expm1, np.concatenate([_uniform(-40, 709.78, 400), _logu(-300, 1, 400),
                                        [0.34657359, -0.34657359, 1e-12, -1e-12]]), 4e-16),
    'log': (mp.log, np.concatenate([10.0 ** _uniform(-323, 308, 400), _uniform(0.5, 2, 300),
                                    1 + _logu(-16, -1, 200), [5e-324, TINY, 1.7e308]]), 4e-16),
    'log1p': (mp.log1p, np.concatenate([_logu(-300, 0, 300), 10.0 ** _uniform(0, 308, 200),
                                        _uniform(-0.99, 3, 300), [-1 + 2**-53, 1e308]]), 4e-16),
    'tanh': (mp.tanh, np.concatenate([_uniform(-22, 22, 500), _logu(-300, 1, 300)]), 4e-16),
    'sigmoid': (lambda x: 1 / (1 + mp.exp(-x)),
                np.concatenate([_uniform(-740, 740, 400), _logu(-12, 1.5, 400)]), 4e-16),
    'softplus': (lambda x: mp.log1p(mp.exp(x)),
                 np.concatenate([_uniform(-740, 740, 400), _logu(-12, 1.5, 400)]), 4e-16),
    'asin': (mp.asin, np.concatenate([_uniform(-1, 1, 500), _near_one(150), _logu(-300, 0, 150),
                                      [0.5, -0.5, 0.5 + 2**-53, 0.5 - 2**-54]]), 4e-16),
    'acos': (mp.acos, np.concatenate([_uniform(-1, 1, 500), _near_one(150), _logu(-300, 0, 150),
                                      [0.5, -0.5, 0.5 + 2**-53, 0.5 - 2**-54]]), 4e-16),
    'atan': (mp.atan, np.concatenate([_uniform(-5, 5, 500), _logu(-300, 300, 300),
                                      [0.41421356237309503, 2.414213562373095]]), 4e-16),
    'sin': (mp.sin, np.concatenate([_uniform(-10, 10, 400), _uniform(-1e5, 1e5, 200),
                                    _logu(-300, 5, 200)]), 4e-16),
    'cos': (mp.cos, np.concatenate([_uniform(-10, 10, 400), _uniform(-1e5, 1e5, 200),
                                    _logu(-300, 5, 200)]), 4e-16),
    'erf': (mp.erf, np.concatenate([_uniform(-6, 6, 600), _logu(-300, 0.8, 300),
                                    [0.75, -0.75, 0.75 - 2**-53]]), 4e-16),
    # erfc / ndtr: densest where erfcx is a quotient of two long positive sums (x in 1/2..5/2)
    'erfc': (mp.erfc, np.concatenate([_uniform(-6, 26.5, 600), _logu(-300, 0.8, 300),
                                      _uniform(0.5, 2.6, 4000),
                                      [0.5, 0.5 - 2**-54, 2.5, 2.5 + 2**-51, 26.0]]), 4e-16),
    'ndtr': (mp.ncdf, np.concatenate([_uniform(-37.5, 9, 600), _logu(-300, 0.8, 300),
                                      _uniform(-3.7, -0.7, 4000),
                                      [-37.5, -1 / 0.7071067811865475]]), 4e-16),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_relative_error_against_mpmath(name):
    ref, xs, bound = CASES[name]
    worst, at = _max_rel_err(_vectorised(name)(xs), xs, ref)
    assert worst <= bound, (name, worst, at)


def test_atan2_relative_error_against_mpmath():
    n = 600
    y = _RNG.standard_normal(n) * 10.0 ** _RNG.uniform(-8, 8, n)
    x = _RNG.standard_normal(n) * 10.0 ** _RNG.uniform(-8, 8, n)
    y[:100] = x[:100] * _RNG.choice([-1.0, 1.0], 100)         # on the diagonals
    y[100:120] = x[100:120] * 0.41421356237309503             # at the reduction switches
    y[120:140] = x[120:140] * 2.414213562373095
    worst, at = _max_rel_err(_atan2_loop(y, x), np.stack([y, x], axis=1), mp.atan2)
    assert worst <= 4e-16, (worst, at)


def test_sin_cos_near_multiples_of_half_pi():
    """x = fl(k pi/2): the reduced argument is tiny for odd (cos) or even (sin) multiples."""
    k = np.concatenate([np.arange(1, 200), _RNG.integers(200, 60000, 300)])
    xs = np.array([float(mp.mpf(int(j)) * mp.pi / 2) for j in k])
    for name, ref in (('sin', mp.sin), ('cos', mp.cos)):
        worst, at = _max_rel_err(_vectorised(name)(xs), xs, ref, dps=60)
        assert worst <= 4e-16, (name, worst, at)


def test_sincos2pi_against_mpmath():
    u = np.concatenate([_uniform(0, 1, 600), 10.0 ** _uniform(-300, -1, 200),
                        0.25 + _logu(-16, -2, 100), 0.5 + _logu(-16, -2, 100)])
    s, c = _sincos2pi_loop(u)
    for got, ref in ((s, lambda t: mp.sinpi(2 * t)), (c, lambda t: mp.cospi(2 * t))):
        worst, at = _max_rel_err(got, u, ref)
        assert worst <= 4e-16, (worst, at)
    s, c = _sincos2pi_loop(np.array([0.0, 0.25, 0.5, 0.75]))
    assert list(s) == [0.0, 1.0, 0.0, -1.0] and list(c) == [1.0, 0.0, -1.0, 0.0]


def _same(a, b):
    """Equal as float64 values including the sign of zero, or both nan."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


# (function, argument, exact C99 / closed-form result)
SPECIAL_VALUES = [
    ('exp', 0.0, 1.0), ('exp', 710.0, INF), ('exp', 1e300, INF), ('exp', INF, INF),
    ('exp', -746.0, 0.0), ('exp', -1e300, 0.0), ('exp', -INF, 0.0), ('exp', NAN, NAN),
    ('expm1', 0.0, 0.0), ('expm1', -0.0, -0.0), ('expm1', 1e-300, 1e-300), ('expm1', -50.0, -1.0),
    ('expm1', -INF, -1.0), ('expm1', 710.0, INF), ('expm1', INF, INF), ('expm1', NAN, NAN),
    ('log', 1.0, 0.0), ('log', 0.0, -INF), ('log', -0.0, -INF), ('log', -1.0, NAN),
    ('log', -INF, NAN), ('log', INF, INF), ('log', NAN, NAN),
    ('log1p', 0.0, 0.0), ('log1p', -0.0, -0.0), ('log1p', 1e-300, 1e-300), ('log1p', -1.0, -INF),
    ('log1p', -1.5, NAN), ('log1p', INF, INF), ('log1p', NAN, NAN),
    ('tanh', 0.0, 0.0), ('tanh', -0.0, -0.0), ('tanh', 1e-300, 1e-300), ('tanh', 19.1, 1.0),
    ('tanh', -19.1, -1.0), ('tanh', 1e300, 1.0), ('tanh', -INF, -1.0), ('tanh', NAN, NAN),
    ('sigmoid', 0.0, 0.5), ('sigmoid', 1000.0, 1.0), ('sigmoid', -1000.0, 0.0),
    ('sigmoid', INF, 1.0), ('sigmoid', -INF, 0.0), ('sigmoid', NAN, NAN),
    ('softplus', 1000.0, 1000.0), ('softplus', -1000.0, 0.0), ('softplus', INF, INF),
    ('softplus', -INF, 0.0), ('softplus', NAN, NAN),
    ('asin', 1.0, math.pi / 2), ('asin', -1.0, -math.pi / 2), ('asin', -0.0, -0.0),
    ('asin', 1.0 + 2**-52, NAN), ('asin', -1.0 - 2**-52, NAN), ('asin', 2.0, NAN),
    ('asin', INF, NAN), ('asin', NAN, NAN),
    ('acos', 1.0, 0.0), ('acos', -1.0, math.pi), ('acos', 0.0, math.pi / 2),
    ('acos', 1.0 + 2**-52, NAN), ('acos', -1.0 - 2**-52, NAN), ('acos', -INF, NAN),
    ('acos', NAN, NAN),
    ('atan', -0.0, -0.0), ('atan', INF, math.pi / 2), ('atan', -INF, -math.pi / 2),
    ('atan', 1e308, math.pi / 2), ('atan', NAN, NAN),
    ('sin', 0.0, 0.0), ('sin', -0.0, -0.0), ('sin', INF, NAN), ('sin', NAN, NAN),
    ('sin', 2.0**51, NAN), ('cos', 0.0, 1.0), ('cos', -INF, NAN), ('cos', 2.0**51, NAN),
    ('erf', 0.0, 0.0), ('erf', -0.0, -0.0), ('erf', 6.0, 1.0), ('erf', -6.0, -1.0),
    ('erf', INF, 1.0), ('erf', -INF, -1.0), ('erf', NAN, NAN),
    ('erfc', 0.0, 1.0), ('erfc', 27.3, 0.0), ('erfc', INF, 0.0), ('erfc', -30.0, 2.0),
    ('erfc', -INF, 2.0), ('erfc', NAN, NAN),
    ('ndtr', 0.0, 0.5), ('ndtr', 40.0, 1.0), ('ndtr', INF, 1.0), ('ndtr', -40.0, 0.0),
    ('ndtr', -INF, 0.0), ('ndtr', NAN, NAN),
]


@pytest.mark.parametrize('name,x,want', SPECIAL_VALUES)
def test_special_values(name, x, want):
    got = float(_vectorised(name)(np.array([x]))[0])
    assert _same(got, want), (name, x, got, want)


def test_exp_gradual_underflow_matches_exact_rounding():
    """Below -708.4 exp is subnormal: within one subnormal spacing of the exact value."""
    xs = np.concatenate([_uniform(-745.13, -708.4, 200), [-745.0, -745.13]])
    got = _vectorised('exp')(xs)
    with mp.workdps(40):
        for g, x in zip(got, xs):
            assert abs(mp.mpf(float(g)) - mp.exp(mp.mpf(float(x)))) <= 2.0**-1074, x
    assert got[-2] == 5e-324


def test_deep_tails_keep_relative_accuracy():
    """erfc(26) ~ 5.7e-296, ndtr(-37) ~ 5.7e-300, sigmoid / softplus(-700) ~ 9.9e-305."""
    for name, x, ref in (('erfc', 26.0, mp.erfc), ('ndtr', -37.0, mp.ncdf),
                         ('sigmoid', -700.0, lambda t: 1 / (1 + mp.exp(-t))),
                         ('softplus', -700.0, lambda t: mp.log1p(mp.exp(t))),
                         ('erfc', -26.0, mp.erfc), ('log1p', -1 + 2**-52, mp.log1p)):
        worst, _ = _max_rel_err(_vectorised(name)(np.array([x])), [x], ref)
        assert worst <= 4e-16, (name, x, worst)


def test_atan2_c99_special_cases_against_math_module():
    vals = [0.0, -0.0, 1e-310, -1e-310, 1.0, -1.0, 1e308, -1e308, INF, -INF, NAN]
    y, x = (np.array(v) for v in zip(*[(a, b) for a in vals for b in vals]))
    got = _atan2_loop(y, x)
    for g, a, b in zip(got, y, x):
        want = math.atan2(a, b)
        if math.isnan(want) or want == 0.0 or math.isinf(a) or math.isinf(b):
            assert _same(g, want), (a, b, g, want)
        else:
            assert abs(g - want) <= 4e-16 * abs(want), (a, b, g, want)


def test_clamp():
    assert sp.clamp(5.0, 0.0, 1.0) == 1.0
    assert sp.clamp(-5.0, 0.0, 1.0) == 0.0
    assert sp.clamp(0.25, 0.0, 1.0) == 0.25
    assert sp.clamp(-INF, -2.0, 3.0) == -2.0
    assert math.isnan(sp.clamp(NAN, 0.0, 1.0))


def test_identities():
    x = np.concatenate([_uniform(-1e4, 1e4, 20000), _uniform(-7, 7, 20000)])
    s, c = _vectorised('sin')(x), _vectorised('cos')(x)
    assert np.max(np.abs(s * s + c * c - 1.0)) <= 1e-15
    s, c = _sincos2pi_loop(_uniform(0, 1, 20000))
    assert np.max(np.abs(s * s + c * c - 1.0)) <= 1e-15

    t = np.concatenate([_uniform(-1, 1, 20000), _near_one(1000)])
    total = _vectorised('acos')(t) + _vectorised('asin')(t)
    assert np.max(np.abs(total - math.pi / 2)) <= 4.5e-16        # two ulp of pi/2

    e = _uniform(-7, 7, 20000)
    assert np.max(np.abs(_vectorised('erf')(e) + _vectorised('erfc')(e) - 1.0)) <= 4.5e-16

    # Phi(x) + Phi(-x) = 1 and the logistic symmetry sigmoid(x) + sigmoid(-x) = 1
    assert np.max(np.abs(_vectorised('ndtr')(e) + _vectorised('ndtr')(-e) - 1.0)) <= 4.5e-16
    assert np.max(np.abs(_vectorised('sigmoid')(e) + _vectorised('sigmoid')(-e) - 1.0)) <= 4.5e-16


@njit(parallel=True, error_model='numpy', fastmath={'contract'})
def _all_in_prange(x, out):
    """Every public function called from a parallel loop of another njit function."""
    for i in prange(x.size):
        v = x[i]
        w = 0.5 * v
        s, c = sp.sincos2pi(0.1 * v - math.floor(0.1 * v))
        out[i, 0] = sp.acos(w)
        out[i, 1] = sp.asin(w)
        out[i, 2] = sp.atan(v)
        out[i, 3] = sp.atan2(v, w - 0.3)
        out[i, 4] = sp.exp(v)
        out[i, 5] = sp.expm1(v)
        out[i, 6] = sp.log(abs(v))
        out[i, 7] = sp.log1p(abs(v))
        out[i, 8] = sp.tanh(v)
        out[i, 9] = sp.erf(v)
        out[i, 10] = sp.erfc(v)
        out[i, 11] = sp.ndtr(v)
        out[i, 12] = sp.sigmoid(v)
        out[i, 13] = sp.softplus(v)
        out[i, 14] = sp.sin(v)
        out[i, 15] = sp.cos(v)
        out[i, 16] = s
        out[i, 17] = c
        out[i, 18] = sp.clamp(v, -0.5, 0.5)


def test_callable_from_prange_loop_and_thread_count_independent():
    x = np.linspace(-1.9, 1.9, 37)
    with mp.workdps(40):
        truth = [
            lambda v: mp.acos(v / 2), lambda v: mp.asin(v / 2), mp.atan,
            lambda v: mp.atan2(v, v / 2 - mp.mpf(0.3)), mp.exp, mp.expm1,
            lambda v: mp.log(abs(v)), lambda v: mp.log1p(abs(v)), mp.tanh, mp.erf, mp.erfc,
            mp.ncdf, lambda v: 1 / (1 + mp.exp(-v)), lambda v: mp.log1p(mp.exp(v)), mp.sin,
            mp.cos]
    previous = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            out = np.empty((x.size, 19))
            _all_in_prange(x, out)
            results.append(out)
    finally:
        numba.set_num_threads(previous)
    assert all(np.array_equal(r, results[0]) for r in results)
    out = results[0]
    # the vectorised loop computes bit-for-bit what the scalar functions return
    for i in (0, 7, 18, 36):
        v = float(x[i])
        assert out[i, 0] == sp.acos(0.5 * v) and out[i, 9] == sp.erf(v)
        assert out[i, 11] == sp.ndtr(v) and out[i, 14] == sp.sin(v)
        assert out[i, 3] == sp.atan2(v, 0.5 * v - 0.3) and out[i, 13] == sp.softplus(v)
    for j, f in enumerate(truth):
        with mp.workdps(40):
            ref = np.array([float(f(mp.mpf(float(v)))) for v in x])
        # the arguments 0.5 v and 0.5 v - 0.3 are rounded in float64 before the call
        assert np.allclose(out[:, j], ref, rtol=1e-15, atol=0), j
    u = 0.1 * x - np.floor(0.1 * x)
    assert np.allclose(out[:, 16], np.sin(2 * np.pi * u), rtol=0, atol=1e-15)
    assert np.allclose(out[:, 17], np.cos(2 * np.pi * u), rtol=0, atol=1e-15)
    assert np.array_equal(out[:, 18], np.clip(x, -0.5, 0.5))


def test_constant_splits_against_mpmath():
    """Each hi + lo pair is hi plus the float64 rounding of the remainder; ln2_hi has 42 bits."""
    with mp.workdps(60):
        for hi, lo, exact, bits in ((sp._PIO2_HI, sp._PIO2_LO, mp.pi / 2, 53),
                                    (sp._PIO4_HI, sp._PIO4_LO, mp.pi / 4, 53),
                                    (sp._3PIO4_HI, sp._3PIO4_LO, 3 * mp.pi / 4, 53),
                                    (sp._PI_HI, sp._PI_LO, mp.pi, 53),
                                    (sp._LN2_HI, sp._LN2_LO, mp.log(2), 42),
                                    (sp._INV_SQRT2_HI, sp._INV_SQRT2_LO, 1 / mp.sqrt(2), 53),
                                    (sp._INV_SQRTPI_HI, sp._INV_SQRTPI_LO, 1 / mp.sqrt(mp.pi), 53)):
            assert abs(mp.mpf(hi) - exact) <= abs(exact) * mp.mpf(2) ** (1 - bits)
            assert abs(mp.mpf(hi) + mp.mpf(lo) - exact) <= abs(lo) * mp.mpf(2) ** -53
        three = mp.mpf(sp._PIO2_HI) + mp.mpf(sp._PIO2_LO) + mp.mpf(sp._PIO2_3)
        assert abs(three - mp.pi / 2) <= mp.mpf(2) ** -158
        assert abs(mp.mpf(sp._INV_LN2) - 1 / mp.log(2)) <= mp.mpf(2) ** -53
        assert abs(mp.mpf(sp._TWO_OVER_PI) - 2 / mp.pi) <= mp.mpf(2) ** -54
    assert (sp._LN2_HI * 2.0**42).is_integer()
