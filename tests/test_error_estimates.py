"""Stated errors of the quadratures are honest and tight (issue 16): never below the real error,
and within 100x of it, the real error counted at least at a rounding floor of 1e-15 of the value.

Truths (independent of the package): the arcsine kernel of erf, the gelu and relu kernels of
tests/gaussian_truths.py, scipy's adaptive dblquad in the Cholesky coordinates (tanh, sigmoid,
tolerance 1e-15) and 30-digit mpmath quadrature for single expectations."""
import math

import mpmath
import numpy as np
import pytest
import sympy
from scipy import integrate as scipy_integrate
from scipy import special

from tensorprog import functions as TF
from tensorprog.numeric import integrals as I

from gaussian_truths import erf_erf, gelu_gelu, relu_relu

U = sympy.symbols("u0:2", real=True)
SYMPY = {"tanh": TF.tanh, "erf": sympy.erf, "sigmoid": TF.sigmoid, "gelu": TF.gelu}
NUMPY = {"tanh": np.tanh, "sigmoid": special.expit}
MPMATH = {"tanh": mpmath.tanh, "erf": mpmath.erf, "sigmoid": lambda t: 1 / (1 + mpmath.exp(-t)),
          "gelu": lambda t: t * mpmath.ncdf(t)}
PAIRS = [(1.0, 2.0, 0.7), (0.5, 0.5, 0.49), (4.0, 1.0, -1.5), (0.1, 9.0, 0.3), (2.0, 2.0, 2.0)]
SINGLES = [(0.3, 0.01), (0.5, 1.0), (-1.0, 4.0), (0.2, 100.0), (1.0, 1e4)]


def _integral(F, d):
    return type("Integral", (), {"integrand": F, "variables": U[:d], "dim": d})()


def _dblquad(f, a, b, c):
    """E f(u) f(v) with u = sqrt(a) z0, v = (c / sqrt a) z0 + s z1, s^2 = b - c^2 / a."""
    s = math.sqrt(max(b - c * c / a, 0.0))
    g = lambda z1, z0: (f(math.sqrt(a) * z0) * f(c / math.sqrt(a) * z0 + s * z1)  # noqa: E731
                        * math.exp(-0.5 * (z0 * z0 + z1 * z1)) / (2 * math.pi))
    return scipy_integrate.dblquad(g, -12, 12, -12, 12, epsabs=1e-15, epsrel=1e-15)[0]


def _pair_truth(name, a, b, c):
    if name == "erf":
        return float(erf_erf(a, b, c))
    if name == "gelu":
        return float(gelu_gelu(a, b, c))
    return _dblquad(NUMPY[name], a, b, c)


def _assert_honest_and_tight(value, error, truth):
    real = abs(value - truth)
    floor = 1e-15 * abs(truth)
    assert real <= error + floor, (value, truth, error)
    assert error <= 100 * max(real, floor), (value, truth, error)


@pytest.mark.parametrize("name", sorted(SYMPY))
def test_nested_pair_errors(name):
    F = SYMPY[name](U[0]) * SYMPY[name](U[1])
    cov = np.array([[[a, c], [c, b]] for a, b, c in PAIRS])
    val, err = I.integrate(_integral(F, 2), np.zeros((len(PAIRS), 2)), cov, np.zeros((len(PAIRS), 0)),
                           "nested", {})
    for k, case in enumerate(PAIRS):
        _assert_honest_and_tight(val[k], err[k], _pair_truth(name, *case))


def test_nested_kinked_pair_error_still_bounds():
    """relu's kink is split exactly; the stated error must still bound the real one."""
    F = TF.relu(U[0]) * TF.relu(U[1])
    cov = np.array([[[a, c], [c, b]] for a, b, c in PAIRS])
    val, err = I.integrate(_integral(F, 2), np.zeros((len(PAIRS), 2)), cov, np.zeros((len(PAIRS), 0)),
                           "nested", {})
    for k, (a, b, c) in enumerate(PAIRS):
        truth = float(relu_relu(a, b, c))
        assert abs(val[k] - truth) <= err[k] + 1e-15 * truth


def _single_truth(name, m, v):
    mpmath.mp.dps = 30
    s = mpmath.sqrt(v)
    turn = -mpmath.mpf(m) / s
    pts = sorted({-40.0, 0.0, 40.0} | {float(turn + c / s) for c in (-1, 0, 1)})
    pts = [mpmath.mpf(p) for p in pts if -40 <= p <= 40]
    f = MPMATH[name]
    return float(mpmath.quad(lambda z: f(m + s * z) * mpmath.npdf(z), [-mpmath.inf] + pts + [mpmath.inf]))


@pytest.mark.parametrize("name", sorted(SYMPY))
def test_quad1d_single_errors(name):
    mean = np.array([[m] for m, _ in SINGLES])
    cov = np.array([[[v]] for _, v in SINGLES])
    val, err = I.integrate(_integral(SYMPY[name](U[0]), 1), mean, cov, np.zeros((len(SINGLES), 0)), "quad1d", {})
    for k, (m, v) in enumerate(SINGLES):
        _assert_honest_and_tight(val[k], err[k], _single_truth(name, m, v))


# The Hermite-series path (numeric/hermite.py), whose rounding floor set the estimates of smooth
# kernels at 100-350x their real error: pairs of rows of one function, value and estimate from
# pair_expectation, truths as above (the arcsine kernel, the gelu closed form, scipy dblquad).
SERIES = {"tanh": np.tanh, "sigmoid": special.expit, "erf": special.erf,
          "gelu": lambda x: x * 0.5 * (1 + special.erf(x / math.sqrt(2)))}


@pytest.mark.parametrize("name", sorted(SERIES))
def test_series_pair_errors(name):
    from tensorprog.numeric import hermite as H

    cases = PAIRS[:4] + [(1.0, 1.0, 0.99), (3.0, 3.0, -2.9)]
    if name in ("tanh", "sigmoid"):     # truths by scipy's dblquad at 1e-15: a few seconds each
        cases = [cases[0], cases[2], cases[5]]
    for a, b, c in cases:
        A, B = np.array([a]), np.array([b])
        C1, T1 = H.row_series(SERIES[name], A)
        C2, T2 = H.row_series(SERIES[name], B)
        err = np.empty((1, 1))
        value = H.pair_expectation(C1, C2, T1, T2, A, B, np.array([[c]]), err=err)[0, 0]
        _assert_honest_and_tight(value, err[0, 0], _pair_truth(name, a, b, c))
