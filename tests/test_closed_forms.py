"""Closed-form Gaussian expectations against independent numerical integration and hand algebra.

Truths: 1-D expectations by scipy.integrate.quad split at kinks; 2-D ones by Gauss-Legendre panels
in standardised coordinates, split at the kinks (and around the near-kink of the inner integral
when |rho| ~ 1); delta expectations from the joint density written out by hand; polynomial moments
from Isserlis' theorem worked out by hand.
"""
import math

import numpy as np
import pytest
import sympy
from numpy.polynomial.legendre import leggauss
from scipy import integrate, special

from tensorprog.functions import Phi, gelu, relu, step
from tensorprog.limit.closed_forms import SafeCorr, Zscore, closed_form_rules, gaussian_expectation
from tensorprog.nonlinearities.rbf import rbf

u, v, w = sympy.symbols("u v w", real=True)
A, B, Cuv = sympy.symbols("a b c")
M1, M2 = sympy.symbols("m1 m2")
COV2 = sympy.Matrix([[A, Cuv], [Cuv, B]])

RTOL = 1e-10

# ---------------------------------------------------------------------------------------------
# Independent integrators
# ---------------------------------------------------------------------------------------------
_L = 12.0                       # |t| <= 12 in standard units: the tail mass is below 1e-32
_GL_X, _GL_W = leggauss(100)


def _npdf(t):
    return np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)


def quad1(f, m, s):
    """E[f(m + sqrt(s) t)], t ~ N(0, 1), by adaptive quadrature split at the kink x = 0."""
    if s == 0:
        return float(f(np.float64(m)))
    sd = math.sqrt(s)
    kink = [-m / sd] if abs(m / sd) < _L else []
    val, err = integrate.quad(lambda t: f(m + sd * t) * _npdf(t), -_L, _L, points=kink,
                              epsabs=1e-15, epsrel=1e-13, limit=400)
    return val


def _panels(cuts):
    """Gauss-Legendre nodes and weights on [-L, L] split at the given points."""
    edges = np.unique(np.clip(np.concatenate([[-_L, _L], np.asarray(cuts, float)]), -_L, _L))
    lo, hi = edges[:-1], edges[1:]
    x = (0.5 * (lo + hi))[:, None] + (0.5 * (hi - lo))[:, None] * _GL_X
    wt = (0.5 * (hi - lo))[:, None] * _GL_W
    return x.ravel(), wt.ravel()


def _panels_rows(cut):
    """Per-row Gauss-Legendre nodes on [-L, cut] and [cut, L] (cut is an array)."""
    cut = np.clip(cut, -_L, _L)[:, None]
    h1, h2 = 0.5 * (cut + _L), 0.5 * (_L - cut)
    x = np.concatenate([-_L + h1 * (_GL_X + 1), cut + h2 * (_GL_X + 1)], axis=1)
    wt = np.concatenate([h1 * _GL_W, h2 * _GL_W], axis=1)
    return x, wt


def gauss2(h, a, b, c, m1=0.0, m2=0.0):
    """E[h(u, v)] for (u, v) ~ N((m1, m2), [[a, c], [c, b]]); h may kink at u = 0 and v = 0.

    u = m1 + sqrt(a) t1, v = m2 + beta t1 + sigma t2 with t1, t2 independent standard normals.
    """
    if a == 0:
        return quad1(lambda y: h(np.float64(m1), y), m2, b)
    sa = math.sqrt(a)
    beta, sigma = c / sa, math.sqrt(max(b - c * c / a, 0.0))
    cuts = [-m1 / sa]
    if beta != 0:
        # The inner integral kinks (sigma = 0) or turns sharply (sigma small) at t1 = t0.
        t0, width = -m2 / beta, sigma / abs(beta)
        cuts += [t0] + [t0 + sgn * width * 2.0**k for k in range(-4, 8) for sgn in (1, -1)]
    t1, w1 = _panels(cuts)
    uu = m1 + sa * t1
    if sigma == 0:
        inner = h(uu, m2 + beta * t1)
    else:
        t2, w2 = _panels_rows(-(m2 + beta * t1) / sigma)
        inner = np.sum(w2 * _npdf(t2) * h(uu[:, None], m2 + beta * t1[:, None] + sigma * t2), axis=1)
    return float(np.sum(w1 * _npdf(t1) * inner))


def delta_pair(g, a, b, c, m1=0.0, m2=0.0):
    """E[delta(u) g(v)] = integral of g(y) p(0, y) dy, p the bivariate normal density.

    The substitution y = y0 + h t (y0, h: centre and width of p(0, .)) keeps the quadrature on
    the peak when |rho| ~ 1; the kink of g at y = 0 is a breakpoint.
    """
    det = a * b - c * c
    y0, h = m2 - c * m1 / a, math.sqrt(det / a)

    def integrand(t):
        x, z = -m1, y0 + h * t - m2
        q = (b * x * x - 2 * c * x * z + a * z * z) / det
        return g(y0 + h * t) * math.exp(-0.5 * q) / (2 * math.pi * math.sqrt(det)) * h

    kink = [-y0 / h] if abs(y0 / h) < _L else []
    return integrate.quad(integrand, -_L, _L, points=kink, epsabs=1e-15, epsrel=1e-13, limit=400)[0]


def num(expr, **values):
    """expr evaluated (evalf) at a, b, c, m1, m2 = the given floats."""
    symbols = {"a": A, "b": B, "c": Cuv, "m1": M1, "m2": M2}
    out = sympy.N(expr.xreplace({symbols[k]: sympy.Float(x, 30) for k, x in values.items()}), 20)
    assert out.is_real, out
    return float(out)


# Table functions: name -> (sympy form, numpy form).
FUNCS = {
    "relu": (relu, lambda x: np.maximum(x, 0.0)),
    "relu^2": (lambda x: relu(x)**2, lambda x: np.maximum(x, 0.0)**2),
    "step": (step, lambda x: np.heaviside(x, 0.5)),
    "sign": (sympy.sign, np.sign),
    "abs": (sympy.Abs, np.abs),
    "erf": (sympy.erf, special.erf),
    "exp(-x^2)": (lambda x: sympy.exp(-x**2), lambda x: np.exp(-x * x)),
    "gelu": (gelu, lambda x: x * special.ndtr(x)),
    "Phi": (Phi, special.ndtr),
    "exp": (sympy.exp, np.exp),
    "sin": (sympy.sin, np.sin),
    "cos": (sympy.cos, np.cos),
    "delta": (sympy.DiracDelta, None),
    "rbf": (rbf, lambda x: np.exp(-x * x / 2)),      # its forms live in its registry entry
}

# (a, b, c): generic, negative correlation, rho = 0, rho near +1 and -1, identical, opposite,
# a = 0 or b = 0 (then c = 0), and c rounded just past sqrt(ab).
COVS = [
    (1.0, 1.0, 0.5),
    (0.7, 2.3, -0.9),
    (1.3, 0.4, 0.0),
    (1.0, 2.0, 0.999999 * math.sqrt(2.0)),
    (2.0, 0.5, -0.9999),
    (1.5, 1.5, 1.5),
    (0.8, 0.8, -0.8),
    (0.0, 1.2, 0.0),
    (1.1, 0.0, 0.0),
    (0.9, 1.7, 0.0),
]
ROUNDED = (1.0, 1.0, 1.0 + 1e-12)   # evaluated against the identical-input truth


PAIRS = [tuple(part[:-3] for part in r[2:-1].split(" ")) for r in closed_form_rules() if r.endswith("(v)]")]
SINGLES = [r[2:-4] for r in closed_form_rules() if r.endswith("(u)]")]


def test_rule_listing_is_covered_by_these_tests():
    assert set(SINGLES) <= set(FUNCS) and set(sum(PAIRS, ())) <= set(FUNCS)
    assert {("relu", "relu"), ("step", "step"), ("relu", "step"), ("relu^2", "relu^2"),
            ("exp(-x^2)", "exp(-x^2)"), ("delta", "relu")} <= set(PAIRS)
    assert len(PAIRS) == 27 and len(SINGLES) == 14
    for name in ("Stein", "tilting", "conditioning", "independence"):
        assert name in closed_form_rules()


@pytest.mark.parametrize("f,g", [p for p in PAIRS if "delta" not in p])
def test_pair_rule_against_quadrature(f, g):
    # Both orders: f(u) g(v) and g(u) f(v), the latter against the swapped covariance.
    nf, ng = FUNCS[f][1], FUNCS[g][1]
    expr = gaussian_expectation(FUNCS[f][0](u) * FUNCS[g][0](v), (u, v), COV2)
    swapped = gaussian_expectation(FUNCS[g][0](u) * FUNCS[f][0](v), (u, v), COV2)
    assert expr is not None and swapped is not None
    for a, b, c in COVS + [ROUNDED]:
        truth = gauss2(lambda x, y: nf(x) * ng(y), a, b, min(c, math.sqrt(a * b)))
        assert num(expr, a=a, b=b, c=c) == pytest.approx(truth, rel=RTOL, abs=1e-12), (a, b, c)
        assert num(swapped, a=b, b=a, c=c) == pytest.approx(truth, rel=RTOL, abs=1e-12), (a, b, c)


@pytest.mark.parametrize("g", [g for f, g in PAIRS if f == "delta"])
def test_delta_pair_rule_against_joint_density(g):
    expr = gaussian_expectation(sympy.DiracDelta(u) * FUNCS[g][0](v), (u, v), COV2)
    for a, b, c in [cov for cov in COVS if cov[0] * cov[1] > cov[2]**2]:
        if g == "delta":
            truth = 1 / (2 * math.pi * math.sqrt(a * b - c * c))
        else:
            truth = delta_pair(FUNCS[g][1], a, b, c)
        assert num(expr, a=a, b=b, c=c) == pytest.approx(truth, rel=RTOL, abs=1e-12)
    if g != "delta":
        # u = v: p_u(0) g(0), with step(0) = 1/2.
        truth = float(FUNCS[g][1](np.float64(0.0))) / math.sqrt(2 * math.pi * 1.5)
        assert num(expr, a=1.5, b=1.5, c=1.5) == pytest.approx(truth, abs=1e-12)


MEANS = [(0.0, 1.3), (0.7, 0.4), (-1.2, 2.5), (0.3, 0.0), (-0.4, 0.0), (0.0, 0.0)]


@pytest.mark.parametrize("name", SINGLES)
def test_single_rule_with_mean_against_quadrature(name):
    expr = gaussian_expectation(FUNCS[name][0](u), (u,), sympy.Matrix([[A]]), (M1,))
    assert expr is not None
    for m, s in MEANS:
        if name == "delta":
            if s == 0:
                continue
            truth = math.exp(-m * m / (2 * s)) / math.sqrt(2 * math.pi * s)
        else:
            truth = quad1(FUNCS[name][1], m, s)
        assert num(expr, a=s, m1=m) == pytest.approx(truth, rel=RTOL, abs=1e-12), (m, s)


@pytest.mark.parametrize("f,g", [("relu", "relu"), ("relu", "step"), ("erf", "erf"), ("gelu", "gelu"),
                                 ("Phi", "Phi"), ("abs", "sign"), ("sin", "cos"), ("relu", "erf"),
                                 ("step", "erf"), ("exp(-x^2)", "relu")])
def test_same_variable_products(f, g):
    # E[f(u) g(u)], centred: from the pair table at a = b = c, or by Stein / tilting.
    expr = gaussian_expectation(FUNCS[f][0](u) * FUNCS[g][0](u), (u,), sympy.Matrix([[A]]))
    assert expr is not None
    for s in (0.3, 1.0, 2.7):
        truth = quad1(lambda x: FUNCS[f][1](x) * FUNCS[g][1](x), 0.0, s)
        assert num(expr, a=s) == pytest.approx(truth, rel=RTOL, abs=1e-12)


def test_relu_times_step_on_one_variable_is_relu():
    expr = gaussian_expectation(relu(u) * step(u), (u,), sympy.Matrix([[A]]))
    assert sympy.simplify(expr - sympy.sqrt(A) / sympy.sqrt(2 * sympy.pi)) == 0


# Derived by the generic reductions (Stein, tilting, conditioning, projection, product-to-sum).
DERIVED = [
    (u * relu(v), lambda x, y: x * np.maximum(y, 0)),
    (u * step(v), lambda x, y: x * np.heaviside(y, 0.5)),
    (u**2 * relu(v), lambda x, y: x * x * np.maximum(y, 0)),
    (u * v * step(u) * step(v), lambda x, y: x * y * (x > 0) * (y > 0)),
    (u**3 * sympy.sign(v), lambda x, y: x**3 * np.sign(y)),
    (relu(u) * sympy.erf(v), lambda x, y: np.maximum(x, 0) * special.erf(y)),
    (relu(u)**2 * relu(v), lambda x, y: np.maximum(x, 0)**2 * np.maximum(y, 0)),
    (sympy.exp(-u**2) * relu(v), lambda x, y: np.exp(-x * x) * np.maximum(y, 0)),
    (sympy.exp(u / 2) * sympy.Abs(v), lambda x, y: np.exp(x / 2) * np.abs(y)),
    (u * gelu(v), lambda x, y: x * y * special.ndtr(y)),
    (sympy.sin(u + v) * sympy.cos(u) * v, lambda x, y: np.sin(x + y) * np.cos(x) * y),
    (sympy.erf(2 * u) * sympy.erf(3 * v), lambda x, y: special.erf(2 * x) * special.erf(3 * y)),
    (Phi(u) * Phi(v) * u, lambda x, y: special.ndtr(x) * special.ndtr(y) * x),
]


@pytest.mark.parametrize("k", range(len(DERIVED)))
def test_derived_centred_forms_against_quadrature(k):
    sym, fn = DERIVED[k]
    expr = gaussian_expectation(sym, (u, v), COV2)
    assert expr is not None, sym
    for a, b, c in COVS:
        truth = gauss2(fn, a, b, c)
        assert num(expr, a=a, b=b, c=c) == pytest.approx(truth, rel=RTOL, abs=1e-11), (sym, a, b, c)


DERIVED_WITH_MEANS = [
    (u * relu(v), lambda x, y: x * np.maximum(y, 0)),
    (u**2 * relu(u), lambda x, y: x * x * np.maximum(x, 0)),
    (u * relu(u) * sympy.exp(-u**2), lambda x, y: x * np.maximum(x, 0) * np.exp(-x * x)),
    (gelu(u) * v, lambda x, y: x * special.ndtr(x) * y),
    (sympy.exp(u) * relu(v), lambda x, y: np.exp(x) * np.maximum(y, 0)),
    (sympy.sin(u) * sympy.sin(v), lambda x, y: np.sin(x) * np.sin(y)),
    (sympy.cos(u - v) ** 2, lambda x, y: np.cos(x - y) ** 2),
    (relu(-2 * u) * v**2, lambda x, y: np.maximum(-2 * x, 0) * y * y),
]


@pytest.mark.parametrize("k", range(len(DERIVED_WITH_MEANS)))
def test_derived_forms_with_means_against_quadrature(k):
    sym, fn = DERIVED_WITH_MEANS[k]
    expr = gaussian_expectation(sym, (u, v), COV2, (M1, M2))
    assert expr is not None, sym
    for (a, b, c), (m1, m2) in zip(COVS[:5], [(0.3, -0.8), (-1.1, 0.4), (0.9, 0.0), (0.5, 0.5),
                                                (-0.2, 1.3)]):
        truth = gauss2(fn, a, b, c, m1, m2)
        got = num(expr, a=a, b=b, c=c, m1=m1, m2=m2)
        assert got == pytest.approx(truth, rel=RTOL, abs=1e-11), (sym, a, b, c, m1, m2)


def test_affine_arguments_are_projected():
    # (z1, z2) = (u + v, u - 2 v) has covariance W' C W, W = [[1, 1], [1, -2]].
    expr = gaussian_expectation(relu(u + v) * relu(u - 2 * v), (u, v), COV2)
    W = np.array([[1.0, 1.0], [1.0, -2.0]])
    for a, b, c in COVS:
        Cz = W.T @ np.array([[a, c], [c, b]]) @ W
        c12 = max(min(Cz[0, 1], math.sqrt(Cz[0, 0] * Cz[1, 1])), -math.sqrt(Cz[0, 0] * Cz[1, 1]))
        truth = gauss2(lambda x, y: np.maximum(x, 0) * np.maximum(y, 0), Cz[0, 0], Cz[1, 1], c12)
        assert num(expr, a=a, b=b, c=c) == pytest.approx(truth, rel=RTOL, abs=1e-12), (a, b, c)


def test_shifted_arguments_with_means():
    # f(u - k), u ~ N(m, s), is f(u') with u' ~ N(m - k, s).
    for name in ("relu", "step", "abs", "relu^2", "erf", "gelu"):
        expr = gaussian_expectation(FUNCS[name][0](u - 1) * FUNCS[name][0](v + 2), (u, v),
                                    sympy.Matrix([[A, 0], [0, B]]), (M1, M2))
        for m1, m2, a, b in [(0.3, -0.5, 1.2, 0.7), (1.0, -2.0, 0.0, 2.0)]:
            truth = quad1(FUNCS[name][1], m1 - 1, a) * quad1(FUNCS[name][1], m2 + 2, b)
            got = num(expr, a=a, b=b, m1=m1, m2=m2)
            assert got == pytest.approx(truth, rel=RTOL, abs=1e-12), (name, m1, m2, a, b)


def test_delta_with_means_by_conditioning():
    expr = gaussian_expectation(sympy.DiracDelta(u) * sympy.erf(v), (u, v), COV2, (M1, M2))
    for (a, b, c), (m1, m2) in [((1.0, 1.0, 0.5), (0.3, -0.8)), ((0.7, 2.3, -0.9), (-1.1, 0.4))]:
        truth = delta_pair(special.erf, a, b, c, m1, m2)
        assert num(expr, a=a, b=b, c=c, m1=m1, m2=m2) == pytest.approx(truth, rel=RTOL)


def test_three_variables_stein_against_conditioned_quadrature():
    """E[u^2 relu(v) relu(w)]: u | (v, w) ~ N(k'(v, w), r) reduces it to a 2-D integral."""
    cvars = sympy.symbols("c00 c01 c02 c11 c12 c22")
    c00, c01, c02, c11, c12, c22 = cvars
    cov = sympy.Matrix([[c00, c01, c02], [c01, c11, c12], [c02, c12, c22]])
    expr = gaussian_expectation(u**2 * relu(v) * relu(w), (u, v, w), cov)
    for vals in [(1.0, 0.3, -0.4, 1.2, 0.5, 0.9), (2.0, -0.7, 0.6, 0.8, -0.3, 1.5)]:
        C = np.array([[vals[0], vals[1], vals[2]], [vals[1], vals[3], vals[4]],
                      [vals[2], vals[4], vals[5]]])
        k = np.linalg.solve(C[1:, 1:], C[1:, 0])
        r = C[0, 0] - C[0, 1:] @ k
        truth = gauss2(lambda y, z: ((k[0] * y + k[1] * z) ** 2 + r) * np.maximum(y, 0)
                       * np.maximum(z, 0), C[1, 1], C[2, 2], C[1, 2])
        got = float(sympy.N(expr.xreplace(dict(zip(cvars, map(sympy.Float, vals)))), 20))
        assert got == pytest.approx(truth, rel=RTOL)


def test_triple_relu_against_conditioned_quadrature():
    """E[relu(u) relu(v) relu(w)] = E[relu(v) relu(w) g(v, w)], g(v, w) = E[relu(u) | v, w]
    = mu Phi(mu / sd) + sd phi(mu / sd) for u | v, w ~ N(mu, sd^2)."""
    a, c = sympy.symbols("a c")
    cov = sympy.Matrix(3, 3, lambda i, j: a if i == j else c)
    expr = gaussian_expectation(relu(u) * relu(v) * relu(w), (u, v, w), cov)
    assert expr is not None
    for av, cv in [(1.0, 0.3), (2.0, -0.6), (0.7, 0.6)]:
        C = np.full((3, 3), cv) + (av - cv) * np.eye(3)
        k = np.linalg.solve(C[1:, 1:], C[1:, 0])
        sd = math.sqrt(C[0, 0] - C[0, 1:] @ k)

        def h(y, z):
            mu = k[0] * y + k[1] * z
            relu_u = mu * special.ndtr(mu / sd) + sd * _npdf(mu / sd)
            return relu_u * np.maximum(y, 0) * np.maximum(z, 0)

        truth = gauss2(h, av, av, cv)
        got = float(sympy.N(expr.xreplace({a: sympy.Float(av), c: sympy.Float(cv)}), 20))
        assert got == pytest.approx(truth, rel=RTOL)


def test_polynomial_moments_match_isserlis_by_hand():
    a, b, c, m, n = A, B, Cuv, M1, M2

    def E(expr, mean=None):
        return gaussian_expectation(expr, (u, v), COV2, mean)

    expected = {
        u**2 * v**2: a * b + 2 * c**2,
        u**4: 3 * a**2,
        u**6: 15 * a**3,
        u**3 * v**3: 9 * a * b * c + 6 * c**3,
        u * v**3: 3 * b * c,
        u**3 * v: 3 * a * c,
    }
    for expr, moment in expected.items():
        assert sympy.expand(E(expr) - moment) == 0, expr
    with_means = {
        u**2: a + m**2,
        u * v: c + m * n,
        u**3: m**3 + 3 * m * a,
        u**4: m**4 + 6 * m**2 * a + 3 * a**2,
        u**2 * v: m**2 * n + a * n + 2 * m * c,
        u**2 * v**2: (a + m**2) * (b + n**2) + 2 * c**2 + 4 * m * n * c,
    }
    for expr, moment in with_means.items():
        assert sympy.expand(E(expr, (m, n)) - moment) == 0, expr
    # Three variables, centred: E[u v w^2] = c_uv c_ww + 2 c_uw c_vw.
    c3 = sympy.symbols("p q r s t x")
    cov3 = sympy.Matrix([[c3[0], c3[1], c3[2]], [c3[1], c3[3], c3[4]], [c3[2], c3[4], c3[5]]])
    got = gaussian_expectation(u * v * w**2, (u, v, w), cov3)
    assert sympy.expand(got - (c3[1] * c3[5] + 2 * c3[2] * c3[4])) == 0


def test_independent_factors_and_constants():
    cov = sympy.Matrix([[A, 0], [0, B]])
    got = gaussian_expectation(3 * relu(u) * (relu(v) + 2 * u), (u, v), cov)
    hand = 3 * sympy.sqrt(A) * sympy.sqrt(B) / (2 * sympy.pi) + 6 * A / 2
    assert sympy.simplify(got - hand) == 0


def test_no_closed_form_returns_none():
    assert gaussian_expectation(sympy.tanh(u) * sympy.tanh(v), (u, v), COV2) is None
    assert gaussian_expectation(u * sympy.tanh(v), (u, v), COV2) is None
    assert gaussian_expectation(relu(u) * relu(v), (u, v), COV2, (M1, M2)) is None
    assert gaussian_expectation(sympy.log(1 + u**2), (u,), sympy.Matrix([[A]])) is None
    assert gaussian_expectation(sympy.DiracDelta(u)**2, (u,), sympy.Matrix([[A]])) is None
    # An odd function of a centred variable has mean zero.
    assert gaussian_expectation(sympy.tanh(u) * v**2, (u, v), COV2) == 0


def test_safe_corr_values_and_degenerate_cases():
    a, b, c = sympy.symbols("a b c")
    rho = SafeCorr(c, a, b)
    cases = [((0.5, 1.0, 4.0), 0.25), ((1 + 1e-12, 1.0, 1.0), 1.0), ((-3.0, 1.0, 1.0), -1.0),
             ((0.0, 0.0, 1.0), 0.0), ((0.3, 0.0, 0.0), 0.0)]
    for (cv, av, bv), want in cases:
        assert float(rho.evalf(subs={a: av, b: bv, c: cv})) == pytest.approx(want, abs=1e-15)
        assert float(rho.xreplace({a: av, b: bv, c: cv})) == pytest.approx(want, abs=1e-15)
    assert SafeCorr(a, a, a) == 1 and SafeCorr(-a, a, a) == -1 and SafeCorr(0, a, b) == 0
    assert SafeCorr(c, b, a) == SafeCorr(c, a, b)
    pa, pb = sympy.symbols("pa pb", positive=True)
    assert SafeCorr(c, pa, pb).doit() == c / sympy.sqrt(pa * pb)
    assert str(rho) == "rho(c, a, b)" and r"\rho" in sympy.latex(rho)
    assert sympy.diff(SafeCorr(c, pa, pb), c) == 1 / sympy.sqrt(pa * pb)
    pw = rho.rewrite(sympy.Piecewise)
    assert float(pw.subs({a: 1.0, b: 4.0, c: -1.0})) == pytest.approx(-0.5)


def test_zscore_values():
    m, s = sympy.symbols("m s")
    z = Zscore(m, s)
    assert float(z.evalf(subs={m: 1.0, s: 4.0})) == pytest.approx(0.5)
    assert z.xreplace({m: 0.0, s: 0.0}) == 0
    assert z.xreplace({m: -1.0, s: 0.0}) == -sympy.oo
    assert Zscore(0, s) == 0 and str(z) == "zscore(m, s)"


def _compile(expr, args):
    """The backend's own numba code for ``expr`` (NumbaPrinter and its helpers), compiled."""
    from tensorprog.numeric.cache import load_generated
    from tensorprog.numeric.codegen import NumbaPrinter, module_source

    syms = {sympy.Symbol(a): a for a in args}
    body = NumbaPrinter(syms).doprint(expr)
    src = module_source("@njit(**_JIT)\ndef f(%s):\n    return %s\n" % (", ".join(args), body))
    return load_generated(src, stem="test_closed_forms").f


def test_numba_code_is_safe_at_degenerate_points():
    a, b, c, m, s = sympy.symbols("a b c m s")
    rho = _compile(SafeCorr(c, a, b), ["c", "a", "b"])
    assert rho(0.5, 1.0, 4.0) == pytest.approx(0.25)
    assert rho(1 + 1e-12, 1.0, 1.0) == 1.0 and rho(-3.0, 1.0, 1.0) == -1.0
    assert rho(0.0, 0.0, 1.0) == 0.0 and rho(0.3, 0.0, 0.0) == 0.0
    # The fused kernels' form, from standard deviations shared with the closed forms: the same
    # values, and 0 (not NaN) for a variance rounded below zero.
    from tensorprog.numeric.codegen import CorrSD, with_standard_deviations

    assert with_standard_deviations(SafeCorr(c, a, b)) == CorrSD(c, sympy.sqrt(a), sympy.sqrt(b))
    rho_sd = _compile(with_standard_deviations(SafeCorr(c, a, b)), ["c", "a", "b"])
    for args in [(0.5, 1.0, 4.0), (1 + 1e-12, 1.0, 1.0), (-3.0, 1.0, 1.0), (0.0, 0.0, 1.0), (0.3, 0.0, 0.0)]:
        assert rho_sd(*args) == pytest.approx(rho(*args), abs=1e-15)
    assert rho_sd(0.1, -1e-17, 1.0) == 0.0 and rho_sd(0.1, -1.0, -1.0) == 0.0
    zs = _compile(Zscore(m, s), ["m", "s"])
    assert zs(1.0, 4.0) == pytest.approx(0.5) and zs(0.0, 0.0) == 0.0
    assert zs(2.0, 0.0) == math.inf and zs(-2.0, 0.0) == -math.inf


def test_relu_kernel_finite_everywhere_through_numpy_printer():
    from tensorprog.numeric.npfuncs import compile_numpy

    expr = gaussian_expectation(relu(u) * relu(v), (u, v), COV2)
    f = compile_numpy(expr, (A, B, Cuv))
    a = np.array([1.0, 1.0, 0.0, 2.0, 1.0])
    b = np.array([1.0, 1.0, 1.0, 0.5, 1.0])
    c = np.array([1.0 + 1e-12, -1.0 - 1e-12, 0.0, 0.3, 0.2])
    got = f(a, b, c)
    clamped = np.clip(c, -np.sqrt(a * b), np.sqrt(a * b))
    truth = [gauss2(lambda x, y: np.maximum(x, 0) * np.maximum(y, 0), ai, bi, ci)
             for ai, bi, ci in zip(a, b, clamped)]
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, truth, rtol=RTOL, atol=1e-12)


def test_gauss2_reproduces_hand_moments():
    # The 2-D integrator itself: E[u^2 v^2] = ab + 2c^2 and E[relu(u)] = sqrt(a / 2 pi) (m = 0).
    for a, b, c in COVS:
        assert gauss2(lambda x, y: x * x * y * y, a, b, c) == pytest.approx(a * b + 2 * c * c, rel=1e-12)
        assert gauss2(lambda x, y: np.maximum(x, 0) + 0 * y, a, b, c) == pytest.approx(
            math.sqrt(a / (2 * math.pi)), rel=1e-12, abs=1e-15)
