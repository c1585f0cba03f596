"""Consistency of the nonlinearity registry, generated from it (one row per builtin).

For every builtin: the sympy expression evaluated with mpmath at 30 digits (the independent truth),
the numpy path (lambdify, as the numeric backend compiles it), the data path (numpy on data
arguments) and the numba source (the printer's output, run with the same ``_sp`` functions) agree;
the sympy derivative matches a central finite difference of the numpy implementation.  Every
single-variable and pair closed form of the expectation table matches quadrature.
"""
import math

import numpy as np
import pytest
import sympy
from scipy import integrate, stats

from tensorprog import functions as F
from tensorprog import nonlinearities as NL
from tensorprog.limit import closed_forms as CF
from tensorprog.numeric import special as _sp
from tensorprog.numeric.codegen import NumbaPrinter
from tensorprog.numeric.npfuncs import compile_numpy

T = sympy.Symbol("t", real=True)
POINTS = np.concatenate([np.linspace(-6, 6, 49), [-30.0, -2.5e-3, 1e-7, 3e-3, 17.0, 30.0]])
PARAM = 0.1  # the value of a scalar parameter (leaky_relu's slope)
# Relative tolerance of each implementation against 30-digit sympy, in units of 2^-52; documented
# exceptions: the vectorised _sp functions of the numba path trade a few ulp for speed, and
# scipy.special.ndtr (Phi, gelu) loses ~16 ulp in the lower tail (x < -4, via erfc) and ~250 ulp
# below x = -10 (values < 1e-23): checked on x > -10 only.
ULP = 2.0 ** -52
TOL = {"default": 4, "tanh": 8, "erf": 8, "Phi": 32, "gelu": 32, "sigmoid": 8, "silu": 8, "softplus": 8, "mish": 16}
# Domains: log and sqrt need positive arguments; Phi and gelu see above.
DOMAIN = {"log": POINTS[POINTS > 0], "sqrt": POINTS[POINTS > 0],
          "Phi": POINTS[POINTS > -10], "gelu": POINTS[POINTS > -10]}

BUILTINS = [e for e in NL.REGISTRY.values() if not e.user]


def _expr(entry):
    return entry.make(T, *([sympy.Float(PARAM)] * (entry.arity - 1)))


def _truth(expr, x):
    return float(expr.subs(T, sympy.Float(repr(float(x)), 30)).evalf(30))


def _numba_eval(expr, x):
    src = NumbaPrinter({T: "x"}).doprint(expr)
    return eval(src, {"_sp": _sp, "math": math, "x": float(x)})  # our own generated source


def _close(got, want, name):
    tol = TOL.get(name, TOL["default"]) * ULP
    return abs(got - want) <= tol * abs(want) + 1e-300


@pytest.mark.parametrize("entry", BUILTINS, ids=lambda e: e.name)
def test_implementations_agree_with_sympy(entry):
    expr = _expr(entry)
    xs = DOMAIN.get(entry.name, POINTS)
    want = np.array([_truth(expr, x) for x in xs])
    via_numpy = compile_numpy(expr, (T,))(xs) * np.ones_like(xs)
    bad = [(x, g, w) for x, g, w in zip(xs, via_numpy, want) if not _close(g, w, entry.name)]
    assert not bad, f"numpy path of {entry.name}: {bad[:3]}"
    if entry.data_numpy or entry.numpy:
        data = (entry.data_numpy or entry.numpy)(xs)
        bad = [(x, g, w) for x, g, w in zip(xs, data, want) if not _close(g, w, entry.name)]
        assert not bad, f"data path of {entry.name}: {bad[:3]}"
    via_numba = [_numba_eval(expr, x) for x in xs]
    bad = [(x, g, w) for x, g, w in zip(xs, via_numba, want) if not _close(g, w, entry.name)]
    assert not bad, f"numba path of {entry.name}: {bad[:3]}"


@pytest.mark.parametrize("entry", BUILTINS, ids=lambda e: e.name)
def test_derivative_matches_finite_difference(entry):
    expr = _expr(entry)
    d = sympy.diff(expr, T)
    f = compile_numpy(expr, (T,))
    xs = DOMAIN.get(entry.name, POINTS)
    xs = xs[(np.abs(xs) > 1e-2) & (np.abs(xs) < 20)]  # away from kinks (at 0) and from overflow
    h = 1e-5
    fd = (f(xs + h) - f(xs - h)) / (2 * h)
    want = np.array([float(d.subs(T, sympy.Float(repr(float(x)), 30)).evalf(30).subs(sympy.DiracDelta(sympy.Float(repr(float(x)), 30)), 0))
                     for x in xs])
    np.testing.assert_allclose(fd, want, rtol=1e-7, atol=1e-8, err_msg=entry.name)


# --- closed forms ---------------------------------------------------------------------------------
X = CF._X
SINGLE = [(name, rule) for name, _, rule in CF._SINGLE_TABLE if name != "delta"]
MS = [(0.0, 1.0), (0.7, 0.3), (-1.2, 2.5), (0.3, 1e-2)]


def _fn(form):
    return sympy.lambdify(X, form, modules=[F.NUMPY_IMPL, "scipy", "numpy"])


def _num(e):
    return float(sympy.N(e, 20))


@pytest.mark.parametrize("name,rule", SINGLE, ids=[n for n, _ in SINGLE])
def test_single_closed_forms_match_quadrature(name, rule):
    f = _fn(CF._FUNCTIONS[name])
    for m, s in MS:
        sd = math.sqrt(s)
        # quad over the standard normal, split at the kink of f (at u = 0, i.e. z = -m/sd)
        g = lambda z: float(f(m + sd * z)) * stats.norm.pdf(z)
        k = -m / sd
        val = _quad(g, k)
        assert _num(rule(sympy.Float(m), sympy.Float(s))) == pytest.approx(val, rel=1e-9, abs=1e-12), (name, m, s)


REGISTRY_SINGLE = [e for e in BUILTINS if e.single]


@pytest.mark.parametrize("entry", REGISTRY_SINGLE, ids=lambda e: e.name)
def test_registry_closed_forms_match_quadrature(entry):
    f = compile_numpy(entry.make(T), (T,))
    for m, s in MS:
        sd = math.sqrt(s)
        want = _quad(lambda z: float(f(m + sd * z)) * stats.norm.pdf(z), -m / sd)
        got = _num(entry.single[1](sympy.Float(m), sympy.Float(s)))
        assert got == pytest.approx(want, rel=1e-10, abs=1e-13), (entry.name, m, s)


def test_registry_closed_form_is_used_by_evaluate():
    import tensorprog as tp

    (entry,) = [e for e in REGISTRY_SINGLE if e.name == "rbf"]
    r = tp.evaluate(tp.parse(SRC % "rbf(g[i])"))
    assert r["E"].method == "closed form"
    np.testing.assert_allclose(r["E"].value, _gauss(lambda u: np.exp(-u * u / 2), 0.5, 1 / 3), rtol=1e-12)


def test_delta_single_closed_form_is_the_density_at_zero():
    rule = dict((n, r) for n, _, r in CF._SINGLE_TABLE)["delta"]
    for m, s in MS:
        assert _num(rule(sympy.Float(m), sympy.Float(s))) == pytest.approx(stats.norm.pdf(0, m, math.sqrt(s)), rel=1e-12)


ABC = [(1.0, 1.0, 0.3), (2.0, 0.5, -0.4), (0.7, 1.3, 0.9), (1.0, 2.0, 0.0)]


def _quad(g, kink=0.0):
    """int g(z) dz over |z| < 40 (the normal weight is below 1e-300 beyond), split at the kink."""
    kink = min(max(kink, -39.0), 39.0)
    return sum(integrate.quad(g, lo, hi, epsabs=1e-14, epsrel=1e-12, limit=200)[0]
               for lo, hi in ((-40.0, kink), (kink, 40.0)))


_M, _S = sympy.symbols("m s", real=True)


def _conditional_single(name):
    """(m, s) -> E[g(w)], w ~ N(m, s), from the single-variable closed form (itself checked
    against quadrature above)."""
    rule = dict((n, r) for n, _, r in CF._SINGLE_TABLE)[name]
    return compile_numpy(rule(_M, _S), (_M, _S))


PAIRS = [(f, g, r) for f, g, _, r in CF._PAIR_TABLE]


@pytest.mark.parametrize("f,g,rule", PAIRS, ids=[f"{f}-{g}" for f, g, _ in PAIRS])
def test_pair_closed_forms_match_quadrature(f, g, rule):
    # u = sqrt(a) z, v | u ~ N(c u / a, b - c^2 / a):  E[f(u) g(v)] = int f(u) E[g(v) | u] p(z) dz,
    # the inner expectation by the single-variable closed form of g (checked above against quad).
    # A Dirac delta: E[delta(u) G(v)] = p_u(0) E[G(v) | u = 0].
    for a, b, c in ABC:
        got = _num(rule(sympy.Float(a), sympy.Float(b), sympy.Float(c)))
        if f == "delta" and g == "delta":
            want = stats.multivariate_normal([0, 0], [[a, c], [c, b]]).pdf([0, 0])
        elif f == "delta" or g == "delta":
            (a_, b_), other = ((a, b), g) if f == "delta" else ((b, a), f)
            cond_sd = math.sqrt(b_ - c * c / a_)
            h = _fn(CF._FUNCTIONS[other])
            want = stats.norm.pdf(0, 0, math.sqrt(a_)) * _quad(lambda z: float(h(cond_sd * z)) * stats.norm.pdf(z))
        else:
            fu = _fn(CF._FUNCTIONS[f])
            inner = _conditional_single(g)
            sa, cv = math.sqrt(a), b - c * c / a
            want = _quad(lambda z: float(fu(sa * z)) * float(inner(c * sa * z / a, cv)) * stats.norm.pdf(z))
        assert got == pytest.approx(want, rel=1e-8, abs=1e-12), (f, g, a, b, c)


def test_docs_table_is_generated_from_the_registry():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "language.md").read_text()
    assert NL.docs_table() in doc


def test_views_are_the_registry():
    from tensorprog.limit import expectation
    from tensorprog.numeric import codegen, fused, integrals

    kinked = {e.sympy_name for e in BUILTINS if e.kinks}
    assert kinked == {"relu", "step", "sign", "Abs"} and kinked <= integrals.NONSMOOTH
    assert {e.sympy_name for e in BUILTINS if e.cheap} <= fused._CHEAP
    assert {e.sympy_name for e in BUILTINS if e.closed_form} <= expectation._TABLE_FUNCTIONS
    assert CF._STEIN_HEADS == {e.make for e in BUILTINS if e.stein}
    assert all(codegen._UNARY[e.sympy_name] == e.numba for e in BUILTINS if isinstance(e.numba, str))
    assert set(F.BUILTIN_NAMES) == {e.name for e in BUILTINS}


# --- user-registered functions ----------------------------------------------------------------------
SRC = """
data X = [[1, 0, 0], [0.6, 0.8, 0]]
vector g[i] ~ N(0.5, dot(X[i], X[i']) / dim(X))
out E[i] = mean(%s)
"""


def _gauss(fn, m, s):
    """E[fn(u)], u ~ N(m, s), by quadrature (the independent truth)."""
    return _quad(lambda z: float(fn(m + math.sqrt(s) * z)) * stats.norm.pdf(z), -m / math.sqrt(s))


def test_user_function_numeric_with_derivative():
    import tensorprog as tp

    def f(x):
        return x * np.tanh(np.logaddexp(0.0, x))

    def df(x):
        t, s = np.tanh(np.logaddexp(0.0, x)), 1 / (1 + np.exp(-x))
        return t + x * s * (1 - t * t)

    tp.register_nonlinearity("usermish", f, derivative=df)
    r = tp.evaluate(tp.parse(SRC % "usermish(g[i]) * usermish'(g[i])"))
    want = _gauss(lambda u: f(u) * df(u), 0.5, 1 / 3)
    np.testing.assert_allclose(r["E"].value, want, rtol=1e-9)
    assert "closed form" not in r["E"].method


def test_user_closed_form_scaled_erf():
    import tensorprog as tp
    from scipy.special import erf

    a = 3.0
    tp.register_nonlinearity("usererf3", lambda x: erf(a * x), closed_form=(
        "erf(3 m / sqrt(1 + 18 s))", lambda m, s: sympy.erf(3 * m / sympy.sqrt(1 + 18 * s))))
    r = tp.evaluate(tp.parse(SRC % "usererf3(g[i])"))
    np.testing.assert_allclose(r["E"].value, _gauss(lambda u: erf(a * u), 0.5, 1 / 3), rtol=1e-12)
    assert r["E"].method == "closed form"


def test_builtin_names_cannot_be_replaced():
    import tensorprog as tp

    with pytest.raises(ValueError, match="builtin"):
        tp.register_nonlinearity("relu", np.abs)


# --- pair closed forms from the registry -----------------------------------------------------------
REGISTRY_PAIRS = [(e, other, rule) for e in BUILTINS for other, _, rule in e.pairs]
ABC = [(1.0, 1.0, 0.5), (1.5, 0.8, 0.6), (0.3, 2.0, -0.7), (1.0, 1.0, 0.999)]


def _pair_quad(f, g, a, b, c):
    """E[f(u) g(v)] for the centred pair with covariance [[a, c], [c, b]], by nested quadrature over
    independent standard normals x, y: u = sqrt(a) x, v = (c / a) u + sqrt(b - c^2 / a) y."""
    sa, cond = math.sqrt(a), math.sqrt(max(b - c * c / a, 0.0))

    def inner(x):
        u = sa * x
        return integrate.quad(lambda y: g(c / a * u + cond * y) * stats.norm.pdf(y), -40, 40,
                              epsabs=1e-14, epsrel=1e-12, limit=200)[0] * f(u) * stats.norm.pdf(x)

    return integrate.quad(inner, -40, 40, epsabs=1e-13, epsrel=1e-11, limit=200)[0]


@pytest.mark.parametrize("entry,other,rule", REGISTRY_PAIRS, ids=lambda v: getattr(v, "name", str(v)))
def test_registry_pair_closed_forms_match_quadrature(entry, other, rule):
    f = compile_numpy(entry.make(T), (T,))
    g = compile_numpy(NL.REGISTRY[other].make(T), (T,))
    for a, b, c in ABC:
        want = _pair_quad(lambda x: float(f(x)), lambda y: float(g(y)), a, b, c)
        got = _num(rule(sympy.Float(a), sympy.Float(b), sympy.Float(c)))
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (entry.name, other, a, b, c)


def test_registry_pair_closed_form_is_used_by_evaluate():
    import tensorprog as tp

    r = tp.evaluate("vector x, y ~ N(0, [[1.5, 0.6], [0.6, 0.8]])\nout s = mean(rbf(x) * rbf(y))\n")
    assert r["s"].method == "closed form"
    # det(I + C)^(-1/2), C the covariance (a Gaussian integral, written out by hand)
    assert float(r["s"].value) == pytest.approx(1 / math.sqrt(2.5 * 1.8 - 0.36), rel=1e-15)


def test_user_pair_closed_form_scaled_erf_kernel():
    import tensorprog as tp
    from scipy.special import erf

    a = 3.0
    tp.register_nonlinearity(
        "usererf3p", lambda x: erf(a * x),
        pair_closed_forms={"usererf3p": ("(2/pi) asin(18 c / sqrt((1 + 18 a)(1 + 18 b)))",
                                         lambda u, v, c: 2 / sympy.pi * sympy.asin(
                                             18 * c / sympy.sqrt((1 + 18 * u) * (1 + 18 * v))))})
    r = tp.evaluate("vector x, y ~ N(0, [[1.5, 0.6], [0.6, 0.8]])\nout s = mean(usererf3p(x) * usererf3p(y))\n")
    assert r["s"].method == "closed form"
    want = _pair_quad(lambda u: erf(a * u), lambda v: erf(a * v), 1.5, 0.8, 0.6)
    assert float(r["s"].value) == pytest.approx(want, rel=1e-9)


def test_user_pair_closed_form_needs_a_registered_partner():
    import tensorprog as tp

    with pytest.raises(ValueError, match="not a registered function"):
        tp.register_nonlinearity("userlonely", np.tanh, pair_closed_forms={"nosuchfn": ("0", lambda a, b, c: 0)})
