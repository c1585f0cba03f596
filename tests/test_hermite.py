"""Tests of the Hermite (dual-activation) series backend, tensorprog.numeric.hermite.

Truths: closed forms (Gaussian moments, Hermite coefficients of exp and erf, the erf / GELU /
exp / sin / cos / polynomial kernels of docs/theory.md "Moment"), numpy's own Hermite polynomials,
and independent adaptive quadrature (scipy.integrate.quad, 1-D and nested 2-D after Cholesky).
"""
import math

import numba
import numpy as np
import pytest
from numpy.polynomial import hermite_e
from scipy import integrate
from scipy.special import erf, gammaln

from tensorprog.numeric import hermite as H

SQRT_2PI = math.sqrt(2.0 * math.pi)

# quad reports rounding-limited convergence at the 1e-14 tolerances used for the truths.
pytestmark = pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def softplus(x):
    return np.logaddexp(0.0, x)


def erf_kernel(a, b, c):
    return (2.0 / math.pi) * np.arcsin(2.0 * c / np.sqrt((1.0 + 2.0 * a) * (1.0 + 2.0 * b)))


def gelu_kernel(a, b, c):
    D = (1.0 + a) * (1.0 + b) - c * c
    return (c / 4.0 + c / (2.0 * math.pi) * np.arcsin(c / np.sqrt((1.0 + a) * (1.0 + b)))
            + (a * b + c * c * (1.0 / (1.0 + a) + 1.0 / (1.0 + b) - 1.0))
            / (2.0 * math.pi * np.sqrt(D)))


def quad_1d(f, tol=1e-14):
    """E f(z), z ~ N(0, 1), by adaptive Gauss-Kronrod on [-13, 13] (the density outside is
    below 1e-37)."""
    val, _ = integrate.quad(lambda z: math.exp(-0.5 * z * z) / SQRT_2PI * f(z),
                            -13.0, 13.0, epsabs=tol, epsrel=tol, limit=400)
    return val


def quad_pair(phi, psi, a, b, rho):
    """E[phi(u) psi(v)] by nested adaptive quadrature after Cholesky:
    u = sqrt(a) z1, v = sqrt(b) (rho z1 + sqrt(1 - rho^2) z2)."""
    sa, sb = math.sqrt(a), math.sqrt(b)
    s = math.sqrt(max(0.0, 1.0 - rho * rho))

    def inner(z1):
        if s == 0.0:
            return psi(sb * rho * z1)
        return quad_1d(lambda z2: psi(sb * (rho * z1 + s * z2)), tol=1e-13)

    return quad_1d(lambda z1: phi(sa * z1) * inner(z1))


def correlated(rng, n, m=None, d=3):
    """Correlations <x_i, y_j> of random unit vectors in R^d (uniform on [-1, 1] for d = 3);
    with m None, the symmetric Gram matrix <x_i, x_j> of one set."""
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1)[:, None]
    if m is None:
        return x @ x.T
    y = rng.standard_normal((m, d))
    y /= np.linalg.norm(y, axis=1)[:, None]
    return x @ y.T


# ---------------------------------------------------------------------------------------------
# Grid, projection, coefficients, tails

def test_grid_integrates_gaussian_moments():
    z, w = H.hermite_grid()
    for m in range(0, 13):
        double_factorial = math.prod(range(2 * m - 1, 0, -2))
        assert abs(w @ z ** (2 * m) - double_factorial) <= 1e-14 * double_factorial
        assert abs(w @ z ** (2 * m + 1)) <= 1e-14 * double_factorial
    assert abs(w @ np.cos(3.0 * z) - math.exp(-4.5)) < 1e-16


def test_projection_matches_numpy_hermite_and_is_orthonormal():
    # zmax = 20 holds the mass of p_k^2 times the density for k < 40 (turning point
    # sqrt(4k + 2) < 13); on the default zmax = 12 the discrete Gram matrix departs from the
    # identity beyond k ~ 12, which the coefficients do not need (see hermite_grid).
    z, w = H.hermite_grid(0.02, 20.0)
    K = 40
    B = H.hermite_projection(z, w, K)
    inside = np.abs(z) <= 6.0
    for k in range(K):
        coef = np.zeros(k + 1)
        coef[k] = 1.0
        expected = hermite_e.hermeval(z[inside], coef) / math.sqrt(math.factorial(k))
        got = B[inside, k] / w[inside]
        np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-11 * np.abs(expected).max())
    gram = (B / w[:, None]).T @ B
    np.testing.assert_allclose(gram, np.eye(K), atol=1e-14)


@pytest.mark.parametrize("a", [0.3, 1.0, 4.0])
def test_coefficients_of_exp(a):
    # E[exp(s z) He_k(z)] = s^k exp(s^2 / 2), so c_k(a) = exp(a / 2) a^{k/2} / sqrt(k!).
    # exp grows too fast for the default cut at |z| = 12 (error ~1e-16 exp(12 sqrt(a))).
    z, w = H.hermite_grid(0.02, 20.0)
    K = 40
    C = H.series_coefficients(np.exp(math.sqrt(a) * z)[None, :], H.hermite_projection(z, w, K))
    k = np.arange(K)
    expected = np.exp(a / 2 + k / 2 * math.log(a) - 0.5 * gammaln(k + 1))
    np.testing.assert_allclose(C[0], expected, rtol=1e-13, atol=1e-15 * math.exp(a))


def erf_odd_tail(a, K, terms):
    """sum_{k >= K, k odd} c_k(a)^2 for erf: E[erf(u) erf(v)] = (2/pi) asin(g_a g_b rho) with
    g_a^2 = 2a / (1 + 2a), so c_{2m+1}(a)^2 = (2/pi) t_m g_a^{2(2m+1)}, t_m the Taylor coefficients
    of asin, t_m = (2m)! / (4^m m!^2 (2m + 1)); the first ``terms`` of them."""
    m = np.arange(terms)
    taylor = np.exp(gammaln(2 * m + 1) - m * math.log(4.0) - 2 * gammaln(m + 1)) / (2 * m + 1)
    c2 = (2.0 / math.pi) * taylor * (2 * a / (1 + 2 * a)) ** (2 * m + 1)
    return c2[2 * m + 1 >= K].sum()


@pytest.mark.parametrize("a,K", [(2.0, 24), (10.0, 64)])
def test_parity_tails_of_erf(a, K):
    # E[erf(u) erf(v)] = (2/pi) asin(g_a g_b rho), g_a^2 = 2a / (1 + 2a), so c_k(a)^2 is
    # (2/pi) times the k-th Taylor coefficient of asin times g_a^{2k}: odd k only.
    z, w = H.hermite_grid()
    B = H.hermite_projection(z, w, K)
    F = erf(math.sqrt(a) * z)[None, :]
    T = H.parity_tails(F, w, H.series_coefficients(F, B))
    exact_odd = erf_odd_tail(a, K, 5000)
    assert exact_odd > 1e-8
    assert abs(T[0, 1] - exact_odd) <= 1e-13
    assert T[0, 0] <= 1e-30


def test_parity_tails_of_exp_split_by_parity():
    # c_k(a)^2 = e^a a^k / k!: the tails are partial sums of the Poisson series.
    z, w = H.hermite_grid(0.02, 20.0)
    K = 8
    a = 2.0
    B = H.hermite_projection(z, w, K)
    F = np.exp(math.sqrt(a) * z)[None, :]
    T = H.parity_tails(F, w, H.series_coefficients(F, B))
    k = np.arange(K, 200)
    c2 = np.exp(a + k * math.log(a) - gammaln(k + 1))
    # within the documented rounding allowance of the difference, 64 eps E[phi^2]
    np.testing.assert_allclose(T[0], [c2[k % 2 == 0].sum(), c2[k % 2 == 1].sum()], rtol=0,
                               atol=64 * np.finfo(float).eps * math.exp(2 * a))


def test_parity_tails_below_rounding_are_accurate():
    # erf at a = 1, K = 64: the odd tail (~6e-15) is within the rounding of the difference
    # E phi^2 - sum c_k^2, so parity_tails extrapolates it from the last kept coefficients.
    z, w = H.hermite_grid()
    K = 64
    a = 0.6
    B = H.hermite_projection(z, w, K)
    F = erf(math.sqrt(a) * z)[None, :]
    T = H.parity_tails(F, w, H.series_coefficients(F, B))
    exact_odd = erf_odd_tail(a, K, 400)
    assert exact_odd < 1e-16
    assert abs(T[0, 1] - exact_odd) <= 0.1 * exact_odd


# ---------------------------------------------------------------------------------------------
# Pair expectations against closed forms

@pytest.mark.parametrize("symmetric", [True, False])
def test_erf_against_closed_form(symmetric):
    rng = np.random.default_rng(1)
    n = 60
    a = rng.uniform(0.0, 10.0, n)
    a[:3] = [0.0, 10.0, 1e-3]
    if symmetric:
        b = a
        R = correlated(rng, n)
        R[5, 4], R[4, 5] = -1.0, -1.0
    else:
        b = rng.uniform(0.0, 10.0, n + 7)
        b[0] = 0.0
        R = correlated(rng, n, n + 7)
        R[6, :] = 1.0
        R[7, :] = -1.0
        R[8, :] = 0.0
    cov = R * np.sqrt(a)[:, None] * np.sqrt(b)[None, :]
    values, errors = H.expect_pair_numpy(erf, erf, a, b, cov)
    exact = erf_kernel(a[:, None], b[None, :], cov)
    actual = np.abs(values - exact)
    assert actual.max() < 1e-10
    assert np.all(actual <= errors)
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(errors))
    if symmetric:
        assert np.array_equal(values, values.T)


def test_gelu_against_closed_form():
    rng = np.random.default_rng(2)
    a = rng.uniform(0.0, 10.0, 50)
    b = rng.uniform(0.0, 10.0, 40)
    a[0], b[0] = 0.0, 10.0
    cov = correlated(rng, 50, 40) * np.sqrt(a)[:, None] * np.sqrt(b)[None, :]
    cov[1, :] = np.sqrt(a[1] * b)        # rho = 1
    cov[2, :] = -np.sqrt(a[2] * b)       # rho = -1
    values, errors = H.expect_pair_numpy(gelu, gelu, a, b, cov)
    actual = np.abs(values - gelu_kernel(a[:, None], b[None, :], cov))
    assert actual.max() < 1e-13
    assert np.all(actual <= errors)


def test_exp_converges_fast():
    # E[exp(u) exp(v)] = exp((a + b) / 2 + c); c_k = e^{a/2} a^{k/2} / sqrt(k!) decays
    # factorially, so 40 terms are plenty for a, b <= 1.
    rng = np.random.default_rng(3)
    a = rng.uniform(0.0, 1.0, 30)
    b = rng.uniform(0.0, 1.0, 20)
    cov = correlated(rng, 30, 20) * np.sqrt(a)[:, None] * np.sqrt(b)[None, :]
    values, errors = H.expect_pair_numpy(np.exp, np.exp, a, b, cov, K=40)
    exact = np.exp((a[:, None] + b[None, :]) / 2 + cov)
    actual = np.abs(values - exact)
    assert np.all(actual <= 1e-14 * exact)
    assert np.all(actual <= errors)


def test_sin_cos_and_polynomial_mixed_parity():
    rng = np.random.default_rng(4)
    a = rng.uniform(0.0, 3.0, 25)
    cov = correlated(rng, 25) * np.sqrt(a)[:, None] * np.sqrt(a)[None, :]
    scale = np.exp(-(a[:, None] + a[None, :]) / 2)
    sin_cos = [(np.sin, scale * np.sinh(cov)), (np.cos, scale * np.cosh(cov))]
    for f, exact in sin_cos:
        values, errors = H.expect_pair_numpy(f, f, a, a.copy(), cov)
        assert np.all(np.abs(values - exact) <= errors)
        assert np.abs(values - exact).max() < 1e-14
    # (u + s)^2 (v + s)^2 by Wick: ab + 2c^2 + s^2 (a + b + 4c) + s^4; three coefficients.
    s = 0.3
    A, Bv = a[:, None], a[None, :]
    exact = A * Bv + 2 * cov ** 2 + s * s * (A + Bv + 4 * cov) + s ** 4

    def poly(x):
        return (x + s) ** 2

    values, errors = H.expect_pair_numpy(poly, poly, a, a, cov, K=16)
    assert np.all(np.abs(values - exact) <= errors)
    assert np.abs(values - exact).max() < 1e-13


def test_degenerate_variances():
    # a_i = 0: u = 0, so E[phi(u) psi(v)] = phi(0) E psi(v); cos: E cos(v) = exp(-b / 2).
    a = np.array([0.0, 0.0, 2.0])
    b = np.array([0.0, 1.5, 0.0, 3.0])
    cov = np.zeros((3, 4))
    cov[2, 3] = math.sqrt(6.0) * 1.0000001     # |rho| slightly above 1 from rounding: clamped
    values, errors = H.expect_pair_numpy(np.cos, np.cos, a, b, cov)
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(errors))
    # (to rounding: the trapezoid weights sum to 1 within ~1e-15)
    np.testing.assert_allclose(values[:2], np.tile(np.exp(-b / 2), (2, 1)), rtol=0, atol=4e-15)
    np.testing.assert_allclose(values[2, :3], np.exp(-1.0) * np.exp(-b[:3] / 2), atol=4e-15)
    np.testing.assert_allclose(values[2, 3], math.exp(-2.5) * math.cosh(math.sqrt(6.0)),
                               rtol=1e-14)


# ---------------------------------------------------------------------------------------------
# tanh against 2-D quadrature, rho = +-1 exactness

TANH_POINTS = [(1.0, 1.0, 0.0), (10.0, 10.0, 1.0), (10.0, 10.0, -1.0), (10.0, 10.0, 0.99),
               (10.0, 10.0, 0.5), (10.0, 2.0, -0.995), (0.0, 3.0, 0.7), (0.2, 10.0, 0.9)]


@pytest.mark.parametrize("a,b,rho", TANH_POINTS)
def test_tanh_against_quadrature(a, b, rho):
    truth = quad_pair(math.tanh, math.tanh, a, b, rho)
    cov = np.array([[rho * math.sqrt(a * b)]])
    value, error = H.expect_pair_numpy(np.tanh, np.tanh, np.array([a]), np.array([b]), cov)
    actual = abs(value[0, 0] - truth)
    assert actual <= 1e-8
    assert actual <= error[0, 0]


@pytest.mark.parametrize("K", [63, 64])
def test_tail_correction_exact_at_rho_plus_minus_one(K):
    # With K ~ 64 the discarded energy of tanh at a = 10 is ~2e-4 and of softplus ~1e-8, yet
    # the same-row values at rho = 1 and rho = -1 are exact: E[phi(u)^2] and E[phi(u) phi(-u)].
    a = 10.0
    sa = math.sqrt(a)
    for f, fs in [(np.tanh, math.tanh), (softplus, lambda x: math.log1p(math.exp(-abs(x)))
                                         + max(x, 0.0))]:
        va = np.array([a])
        values, errors = H.expect_pair_numpy(f, f, va, va, np.array([[a]]), K=K)
        assert errors[0, 0] > 1e-9        # the truncation is not negligible ...
        assert abs(values[0, 0] - quad_1d(lambda z: fs(sa * z) ** 2)) < 1e-13   # ... but exact
        values, _ = H.expect_pair_numpy(f, f, va, va, np.array([[-a]]), K=K)
        assert abs(values[0, 0] - quad_1d(lambda z: fs(sa * z) * fs(-sa * z))) < 1e-13


def test_diag_expectation():
    z, w = H.hermite_grid()
    K = 64
    B = H.hermite_projection(z, w, K)
    a = np.array([0.0, 0.5, 3.0, 10.0])
    sd = np.sqrt(a)[:, None]
    F1, F2 = np.tanh(sd * z), erf(sd * z)
    C1, C2 = H.series_coefficients(F1, B), H.series_coefficients(F2, B)
    T1, T2 = H.parity_tails(F1, w, C1), H.parity_tails(F2, w, C2)
    same = H.diag_expectation(C1, C1, T1, T1)
    err = np.empty(a.size)
    cross = H.diag_expectation(C1, C2, T1, T2, err=err)
    for i, ai in enumerate(a):
        s = math.sqrt(ai)
        assert abs(same[i] - quad_1d(lambda t: math.tanh(s * t) ** 2)) < 1e-14
        truth = quad_1d(lambda t: math.tanh(s * t) * math.erf(s * t))
        assert abs(cross[i] - truth) <= err[i]
    # a = 10: the K = 64 terms miss ~2.5e-4; the tail model recovers all but < 1% of it
    uncorrected = abs(C1[3] @ C2[3] - truth)
    assert uncorrected > 1e-4
    assert abs(cross[3] - truth) < 0.01 * uncorrected
    # consistent with the pair kernel at rho = 1
    pair = H.pair_expectation(C1, C2, T1, T2, a, a, np.diag(a))
    np.testing.assert_allclose(np.diag(pair), cross, rtol=0, atol=1e-15)


def test_error_estimates_bound_random_pairs():
    rng = np.random.default_rng(5)
    a = rng.uniform(0.0, 10.0, 80)
    b = rng.uniform(0.0, 10.0, 70)
    R = correlated(rng, 80, 70)
    R[::9] = np.sign(R[::9]) * (1.0 - 10.0 ** rng.uniform(-6, -1, (9, 70)))
    cov = R * np.sqrt(a)[:, None] * np.sqrt(b)[None, :]
    for K in (23, 64, 193):
        for f, kernel in [(erf, erf_kernel), (gelu, gelu_kernel)]:
            values, errors = H.expect_pair_numpy(f, f, a, b, cov, K=K)
            assert np.all(np.abs(values - kernel(a[:, None], b[None, :], cov)) <= errors)


# ---------------------------------------------------------------------------------------------
# Determinism and API

def test_results_do_not_depend_on_thread_count():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2")
    rng = np.random.default_rng(6)
    n = 150
    a = rng.uniform(0.1, 10.0, n)
    cov = correlated(rng, n) * np.sqrt(a)[:, None] * np.sqrt(a)[None, :]
    z, w = H.hermite_grid()
    B = H.hermite_projection(z, w, 96)
    F = np.tanh(np.sqrt(a)[:, None] * z)
    b = a.copy()
    saved = numba.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            C = H.series_coefficients(F, B)
            Cb = C.copy()
            T = H.parity_tails(F, w, C)
            err_sym, err_full = np.empty((n, n)), np.empty((n, n))
            sym = H.pair_expectation(C, C, T, T, a, a, cov, err=err_sym)
            full = H.pair_expectation(C, Cb, T, T.copy(), a, b, cov, err=err_full)
            results.append((C, T, sym, err_sym, full, err_full))
    finally:
        numba.set_num_threads(saved)
    for one, two in zip(*results):
        assert np.array_equal(one, two)
    # the symmetric path and the full path agree (to rounding: rho is formed in another order)
    np.testing.assert_allclose(results[0][2], results[0][4], rtol=0, atol=1e-15)


def test_output_arrays_and_validation():
    z, w = H.hermite_grid()
    B = H.hermite_projection(z, w, 32)
    a = np.array([1.0, 2.0])
    F = np.tanh(np.sqrt(a)[:, None] * z)
    C = H.series_coefficients(F, B)
    T = H.parity_tails(F, w, C)
    cov = np.array([[1.0, 0.3], [0.3, 2.0]])
    out, err = np.empty((2, 2)), np.empty((2, 2))
    assert H.pair_expectation(C, C, T, T, a, a, cov, out=out, err=err) is out
    assert np.all(err > 0)
    with pytest.raises(ValueError):
        H.pair_expectation(C, C, T, T, a, a, cov[:1])
    with pytest.raises(ValueError):
        H.pair_expectation(C, C, T, T, a, a, cov, out=np.empty((2, 2), dtype=np.float32))
    with pytest.raises(ValueError):
        H.parity_tails(F[:, 1:], w[1:], C)
