"""Numerical Gaussian integrals E[F(u)], u ~ N(mean, cov), vectorised over a grid of index values.

Method per integral (automatic, overridable with ``method=``):

=============  ===========================================================================
``series``     d = 2, F = f(u0) g(u1) smooth, on large grids: the Hermite (dual-activation)
               series with per-row coefficients (``hermite.py``)
``quad``       d = 1: Gauss-Legendre on pieces of [-12, 12] split at the kinks; d = 2: the same
               rule nested (u0, then u1 given u0), split at the kinks of every affine argument
               at both levels; smooth d = 3, 4: tensor Gauss-Hermite
``mc``         otherwise (kinked d >= 3, d >= 5): Monte Carlo with a counter-based random
               stream (``montecarlo.py``) and a standard error
=============  ===========================================================================

Quadratures run at two orders and report the difference as the error estimate.
"""
from __future__ import annotations

import math

import numpy as np
import sympy

from ..limit.symbols import is_qref, qrefs_in
from . import quadrature as Q
from .npfuncs import compile_numpy

NONSMOOTH = {"relu", "step", "sign", "Abs", "Max", "Min", "Heaviside", "DiracDelta"}
# The quadratures split at the zero of every function's (affine) argument, not only at kinks:
# that is where a steep smooth function (tanh of a large variance) turns, and Gauss-Legendre
# nodes cluster at the ends of each piece.
_P = tuple(sympy.Symbol(f"_p{k}", real=True) for k in range(512))

# Orders (low, high) of each rule; the high one is the value, the difference the error.
ORDERS = {"quad1d": (12, 20), "nested": (8, 14), "gh": {3: (14, 20), 4: (10, 14)}}
# Grids at least this large use the Hermite series for separable smooth 2-D integrals.
SERIES_MIN_POINTS = 64
# The 1-D rule splits [-12, 12] into pieces no wider than this (in standard units), besides the kinks,
# so that the Gaussian factor is resolved by each piece's Gauss-Legendre rule.
PIECE = 1.5
# Around every breakpoint the pieces are graded (edges at these distances), so that a function that
# turns steeply there (tanh of a variance of 10^4 turns over 0.01 standard units) is resolved.
GRADING = (1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.6)
MAX_NODES_PER_CHUNK = 4_000_000


class IntegrationError(ValueError):
    pass


def nonsmooth_apps(F):
    return [f for f in F.atoms(sympy.Function) if type(f).__name__ in NONSMOOTH]


def breakpoint_apps(F):
    """Function applications whose argument's zero is a breakpoint of the quadrature."""
    return [f for f in F.atoms(sympy.Function) if not is_qref(f)]


def linear_in(expr, variables):
    """(alpha list, beta) with expr = sum alpha_k u_k + beta, constants free of u; None if not affine."""
    poly = expr.as_poly(*variables) if expr.free_symbols & set(variables) else None
    if poly is None:
        return None if expr.free_symbols & set(variables) else ([0] * len(variables), expr)
    if poly.total_degree() > 1:
        return None
    alpha = [poly.coeff_monomial(v) for v in variables]
    beta = poly.coeff_monomial(1)
    return alpha, beta


def is_separable(F, variables):
    """F = f(u0) * g(u1)?  Returns (f, g) or None."""
    if len(variables) != 2:
        return None
    u0, u1 = variables
    f, g = sympy.S.One, sympy.S.One
    for fac in sympy.Mul.make_args(F):
        s = fac.free_symbols & {u0, u1}
        if s == {u0} or not s:
            f *= fac
        elif s == {u1}:
            g *= fac
        else:
            return None
    return f, g


class Integrand:
    """F with its quantity references replaced by parameters p_k, compiled for numpy."""

    def __init__(self, F, variables):
        self.refs = sorted(qrefs_in(F), key=sympy.default_sort_key)
        self.F = F.xreplace({r: _P[k] for k, r in enumerate(self.refs)})
        self.variables = tuple(variables)
        self.fn = compile_numpy(self.F, self.variables + _P[:len(self.refs)])

    def __call__(self, us, params):
        out = self.fn(*us, *params)
        return np.broadcast_to(out, np.broadcast_shapes(*[np.shape(u) for u in us])) if np.ndim(out) == 0 else out


def choose_method(integral, grid_info, requested="auto"):
    d = integral.dim
    F = integral.integrand
    smooth = not nonsmooth_apps(F)
    if requested == "mc":
        return "mc"
    if requested == "closed":
        raise IntegrationError("has no closed form (run with --method auto, quad, series or mc)")
    if d == 1:
        return "quad1d"
    series = grid_info.get("series_ok") and smooth
    if d == 2 and series and (requested == "series" or
                              (requested == "auto" and grid_info.get("points", 0) >= SERIES_MIN_POINTS)):
        return "series"
    if d == 2:
        return "nested"
    if smooth and d <= 4:
        return "gh"
    return "mc"


# ---------------------------------------------------------------------------------------------
# numpy implementations: inputs flattened over the grid (G points)

def integrate(integral, mean, cov, params, method, options):
    """E[F] at G grid points: mean (G, d), cov (G, d, d), params (G, P). Returns (value, error) of shape (G,)."""
    fn = {"quad1d": _quad1d, "nested": _nested2d, "gh": _gauss_hermite, "mc": _monte_carlo}[method]
    return fn(integral, mean, cov, params, options)


def _cholesky(cov):
    from .montecarlo import cholesky_psd

    return cholesky_psd(np.ascontiguousarray(cov))


def _chunks(G, nodes):
    step = max(1, MAX_NODES_PER_CHUNK // max(nodes, 1))
    for a in range(0, G, step):
        yield slice(a, min(G, a + step))


def _quad1d(integral, mean, cov, params, options):
    """Gauss-Legendre on [-12, 12] in standard units, split at every kink z* = -(alpha m + beta)/(alpha s)."""
    F = Integrand(integral.integrand, integral.variables)
    G = mean.shape[0]
    m = mean[:, 0]
    s = np.sqrt(np.maximum(cov[:, 0, 0], 0.0))
    kinks = []
    for f in breakpoint_apps(integral.integrand):
        for arg in f.args:
            lin = linear_in(arg, integral.variables)
            if lin is None or all(c == 0 for c in lin[0]):
                continue
            a = np.broadcast_to(_as_param_array(lin[0][0], F, params), (G,))
            b = np.broadcast_to(_as_param_array(lin[1], F, params), (G,))
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.where((a * s) != 0, -(a * m + b) / np.where(a * s != 0, a * s, 1.0), np.inf)
            kinks.append(z)
    fixed = np.arange(-Q.ZMAX, Q.ZMAX + 1e-9, PIECE)
    results = []
    for q in ORDERS["quad1d"]:
        x, w = Q.gauss_legendre(q)
        val = np.empty(G)
        for sl in _chunks(G, q * (len(kinks) * (2 * len(GRADING) + 1) + len(fixed))):
            n = sl.stop - sl.start
            brk = [np.clip(k[sl] + d, -Q.ZMAX, Q.ZMAX) for k in kinks for d in (0.0,) + GRADING
                   + tuple(-g for g in GRADING)]
            pts = np.sort(np.stack([np.full(n, f) for f in fixed] + brk, axis=1), axis=1)
            total = np.zeros(sl.stop - sl.start)
            for p in range(pts.shape[1] - 1):
                a, b = pts[:, p:p + 1], pts[:, p + 1:p + 2]
                half = 0.5 * (b - a)
                z = a + half * (x[None, :] + 1.0)
                wz = half * w[None, :] * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
                u = m[sl, None] + s[sl, None] * z
                total += np.sum(wz * F([u], [pp[sl, None] for pp in params.T]), axis=1)
            val[sl] = total
        results.append(val)
    return results[-1], np.abs(results[-1] - results[0])


def _as_param_array(expr, F, params):
    expr = sympy.sympify(expr).xreplace({r: _P[k] for k, r in enumerate(F.refs)})
    if expr.is_number:
        return np.full(params.shape[0], float(expr))
    fn = compile_numpy(expr, _P[:len(F.refs)])
    return np.asarray(fn(*params.T), dtype=float)


def _apply_nodes(F, mean, L, params, nodes, weights):
    """sum_k w_k F(m + L z_k) for each grid point; nodes (Q, d) or (G, Q, d), weights (Q,) or (G, Q)."""
    G, d = mean.shape
    out = np.empty(G)
    per_point = nodes.ndim == 3
    for sl in _chunks(G, nodes.shape[-2]):
        z = nodes[sl] if per_point else nodes[None]
        u = mean[sl, None, :] + np.einsum("gij,gqj->gqi", L[sl], np.broadcast_to(z, (sl.stop - sl.start,) + z.shape[1:]))
        f = F([u[..., k] for k in range(d)], [pp[sl, None] for pp in params.T])
        w = weights[sl] if per_point else weights[None]
        out[sl] = np.sum(w * f, axis=1)
    return out


def _pieces(breaks, q):
    """Gauss-Legendre nodes/weights (with the N(0,1) density) on [-12, 12] split at the fixed points
    and at ``breaks`` (an array (..., K)); returns arrays of shape (..., P q)."""
    x, w = Q.gauss_legendre(q)
    fixed = np.arange(-Q.ZMAX, Q.ZMAX + 1e-9, PIECE)
    shape = breaks.shape[:-1]
    offsets = np.array((0.0,) + GRADING + tuple(-g for g in GRADING))
    graded = (breaks[..., :, None] + offsets).reshape(shape + (-1,))
    pts = np.concatenate([np.broadcast_to(fixed, shape + fixed.shape),
                          np.clip(graded, -Q.ZMAX, Q.ZMAX)], axis=-1)
    pts = np.sort(pts, axis=-1)
    a, b = pts[..., :-1, None], pts[..., 1:, None]
    half = 0.5 * (b - a)
    z = a + half * (x + 1.0)
    wz = half * w * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return z.reshape(shape + (-1,)), wz.reshape(shape + (-1,))


def _nested2d(integral, mean, cov, params, options):
    """E F(u0, u1) = E_{u0}[ E[F | u0] ]: piecewise Gauss-Legendre in u0, then in u1 given u0,
    u1 | u0 ~ N(m1 + c/a (u0 - m0), b - c^2/a), each level split at the kinks of every affine argument.
    """
    F = Integrand(integral.integrand, integral.variables)
    G = mean.shape[0]
    a, b, c = cov[:, 0, 0], cov[:, 1, 1], cov[:, 0, 1]
    s0 = np.sqrt(np.maximum(a, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(a > 0, c / np.where(a > 0, a, 1.0), 0.0)
    s1 = np.sqrt(np.maximum(b - beta * c, 0.0))
    kinks = []  # (alpha0, alpha1, const) arrays of affine kink lines
    for f in breakpoint_apps(integral.integrand):
        for arg in f.args:
            lin = linear_in(arg, integral.variables)
            if lin is not None and any(c != 0 for c in lin[0]):
                kinks.append(tuple(np.broadcast_to(_as_param_array(e, F, params), (G,))
                                   for e in (lin[0][0], lin[0][1], lin[1])))
    results = []
    for q in ORDERS["nested"]:
        val = np.empty(G)
        for sl in _chunks(G, (q * (17 + 13 * len(kinks))) ** 2):
            n = sl.stop - sl.start
            m0, m1 = mean[sl, 0], mean[sl, 1]
            outer = [np.where((k[1][sl] == 0) & (k[0][sl] * s0[sl] != 0),
                              -(k[0][sl] * m0 + k[2][sl]) / np.where(k[0][sl] * s0[sl] != 0, k[0][sl] * s0[sl], 1.0),
                              np.inf) for k in kinks]
            z0, w0 = _pieces(np.stack(outer, -1) if outer else np.full((n, 0), np.inf), q)
            u0 = m0[:, None] + s0[sl, None] * z0                       # (n, Q0)
            mu1 = m1[:, None] + beta[sl, None] * (u0 - m0[:, None])    # (n, Q0)
            inner = []
            for k0, k1, kc in kinks:
                den = k1[sl, None] * s1[sl, None]
                with np.errstate(divide="ignore", invalid="ignore"):
                    inner.append(np.where(den != 0, -(k0[sl, None] * u0 + kc[sl, None] + k1[sl, None] * mu1)
                                          / np.where(den != 0, den, 1.0), np.inf))
            z1, w1 = _pieces(np.stack(inner, -1) if inner else np.full(u0.shape + (0,), np.inf), q)
            u1 = mu1[..., None] + s1[sl, None, None] * z1               # (n, Q0, Q1)
            f = F([np.broadcast_to(u0[..., None], u1.shape), u1], [pp[sl, None, None] for pp in params.T])
            val[sl] = np.einsum("gq,gqr,gqr->g", w0, w1, f)
        results.append(val)
    return results[-1], np.abs(results[-1] - results[0])


def _gauss_hermite(integral, mean, cov, params, options):
    F = Integrand(integral.integrand, integral.variables)
    d = integral.dim
    L = _cholesky(cov)
    results = []
    for q in ORDERS["gh"][d]:
        nodes, weights = Q.tensor_gauss_hermite(q, d)
        results.append(_apply_nodes(F, mean, L, params, nodes, weights))
    return results[-1], np.abs(results[-1] - results[0])


def _monte_carlo(integral, mean, cov, params, options):
    from . import montecarlo
    from .codegen import HELPERS, NumbaPrinter

    F = Integrand(integral.integrand, integral.variables)
    names = {v: f"z{k}" for k, v in enumerate(integral.variables)}
    names.update({_P[k]: f"p{k}" for k in range(len(F.refs))})
    src = NumbaPrinter(names).doprint(F.F)
    L = _cholesky(cov)
    prelude = ("import math\nfrom numba import njit\nfrom tensorprog.numeric import special as _sp\n"
               "_JIT = dict(cache=True, error_model='numpy', fastmath={'contract'})\n" + HELPERS)
    mean_, se = montecarlo.mc_expectation([src], L, mean, params if params.shape[1] else None,
                                          n_samples=int(options.get("samples", 1 << 20)),
                                          seed=int(options.get("seed", 0)), prelude=prelude)
    return mean_[:, 0], se[:, 0]
