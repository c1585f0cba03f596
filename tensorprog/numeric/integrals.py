"""Numerical Gaussian integrals E[F(u)], u ~ N(mean, cov), vectorised over a grid of index values.

Method per integral (automatic, overridable with ``method=``):

=============  ===========================================================================
``series``     d = 2, F = f(u0) g(u1) smooth, on large grids: the Hermite (dual-activation)
               series with per-row coefficients (``hermite.py``)
``quad``       d = 1: Gauss-Legendre on pieces of [-12, 12] split at the kinks; d = 2 (and d = 3 on
               small grids): the same rule nested over the Cholesky coordinates, split at every
               affine argument's zero; otherwise smooth d = 3, 4: tensor Gauss-Hermite
``mc``         otherwise (kinked d >= 3, d >= 5): Monte Carlo with a counter-based random
               stream (``montecarlo.py``) and a standard error
=============  ===========================================================================

Error estimates: the one-dimensional quadrature and the Gauss-Hermite rule run at two orders and
report their difference; the nested Gauss-Legendre rule runs at three (6, 10, 14 nodes per axis in
2-D; 6, 9, 12 in 3-D: 1.28x and 1.19x the nodes of the former two orders) and, with
r = |v3 - v2| / |v2 - v1|, reports 10 r |v3 - v2| when it clearly converges (r <= 0.2), else
|v3 - v2| + |v2 - v1| (kinks, slow convergence), plus a rounding floor of 1e-15 sum |w f|: within a
few times the real error instead of 10^3-10^5 times it.
"""
from __future__ import annotations

import itertools
import math

from dataclasses import dataclass

import numpy as np
import sympy

from ..ir.core import Formals
from .. import functions as _functions  # noqa: F401  (registers the builtin nonlinearities)
from .. import nonlinearities as NL

from ..limit.symbols import is_qref, qrefs_in
from . import quadrature as Q
from .npfuncs import compile_numpy
from .singular import IntegrationError, linear_in, singular_points  # noqa: F401  (re-exported)

NONSMOOTH = {"Max", "Min", "Heaviside", "DiracDelta"} | NL.NONSMOOTH_VIEW  # kinks: registry entries' `kinks`
# The quadratures split at the zero of every function's (affine) argument, not only at kinks:
# that is where a steep smooth function (tanh of a large variance) turns, and Gauss-Legendre
# nodes cluster at the ends of each piece.
_P = Formals("_p")      # parameter placeholders of an integrand, created on demand (no cap)

# Orders (low, high) of each rule; the high one is the value, the difference the error.  The
# nested rule runs at three orders, whose two differences give its convergence rate (see
# ``converged_error``).
ORDERS = {"quad1d": (12, 20), "nested": {2: (6, 10, 14), 3: (6, 9, 12)}, "gh": {3: (14, 20), 4: (10, 14)}}
# Safety factor on the extrapolated error of the nested rule, and the largest contraction
# |v3 - v2| / |v2 - v1| that counts as converging (beyond it the differences themselves are used).
NESTED_SAFETY, NESTED_MAX_RATE = 10.0, 0.2
# Nested rules in 3 dimensions use a shorter range (the mass beyond 9 standard units is 2e-19)
# with wider pieces: (10 pieces x q)^3 nodes per grid point.
ZMAX_ND, PIECE_ND = 9.0, 1.8
# A nested rule is used while its node count per grid point stays below this (else tensor
# Gauss-Hermite for smooth integrands, Monte Carlo otherwise).
NESTED_MAX_NODES = 10_000_000
NESTED_3D_MAX_POINTS = 64
# Monte Carlo evaluates the integrand with numpy (no compilation) below this many grid points x
# samples; above, a generated numba kernel.
MC_NUMPY_MAX_WORK = 50_000_000
# Grids at least this large use the Hermite series for separable smooth 2-D integrals.
SERIES_MIN_POINTS = 64
# The 1-D rule splits [-12, 12] into pieces no wider than this (in standard units), besides the kinks,
# so that the Gaussian factor is resolved by each piece's Gauss-Legendre rule.
PIECE = 1.5
# Around every breakpoint the pieces are graded (edges at these distances), so that a function that
# turns steeply there (tanh of a variance of 10^4 turns over 0.01 standard units) is resolved.
GRADING = (1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.6)
# Zeros of smooth functions' arguments get a lighter grading (they matter only when the function
# turns steeply, i.e. at a large variance).
LIGHT_GRADING = (0.01, 0.1, 0.5)


# Around an integrable singularity (log|t|, |t|^-a with a < 1) the pieces shrink geometrically to
# it: on [10^-(k+1), 10^-k] the integrand varies by a bounded factor, so Gauss-Legendre converges
# fast on every piece, and what is left out, int_0^1e-30 |t|^-a dt, is below rounding for a <= 1/2
# (the offsets are in standard units).
SINGULAR_GRADING = tuple(10.0 ** -k for k in np.arange(0.5, 30.5, 0.5))


# Around a smooth function's turn, in units of its width 1 / |a s| (see _quad1d).
TURN_GRADING = tuple(c * sg for c in (0.25, 1.0, 4.0, 16.0, 64.0) for sg in (1, -1))


def _offsets(smooth):
    g = LIGHT_GRADING if smooth else GRADING
    return (0.0,) + g + tuple(-x for x in g)


_GRADED_KINK = _offsets(False)


def _singular_offsets():
    return (0.0,) + SINGULAR_GRADING + tuple(-x for x in SINGULAR_GRADING)
MAX_NODES_PER_CHUNK = 4_000_000


def nonsmooth_apps(F):
    return [f for f in F.atoms(sympy.Function) if type(f).__name__ in NONSMOOTH]


def breakpoint_apps(F):
    """Function applications whose argument's zero is a breakpoint of the quadrature."""
    return [f for f in F.atoms(sympy.Function) if not is_qref(f)]


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


def product_of_two(F, u):
    """F(u) as f(u) * g(u) for the Hermite diagonal E[f(u) g(u)] = sum_k c_k(f) c_k(g): f = g
    for a square (the coefficients of one function serve both), else (F, 1)."""
    coeff, rest = F.as_coeff_Mul()
    if isinstance(rest, sympy.Pow) and rest.exp == 2:
        return coeff * rest.base, rest.base
    return F, sympy.S.One


class Integrand:
    """F with its quantity references replaced by parameters p_k, compiled for numpy."""

    def __init__(self, F, variables):
        self.refs = sorted(qrefs_in(F), key=sympy.default_sort_key)
        self.F = F.xreplace({r: _P[k] for k, r in enumerate(self.refs)})
        self.variables = tuple(variables)
        self.fn = compile_numpy(self.F, self.variables + tuple(_P[:len(self.refs)]))

    def __call__(self, us, params):
        out = self.fn(*us, *params)
        return np.broadcast_to(out, np.broadcast_shapes(*[np.shape(u) for u in us])) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class MethodChoice:
    """What the method rules look at: the integral, its dimension, whether it is smooth (no kinks and
    no integrable singularity), whether the Hermite series applies, the grid size and the request."""

    integral: object
    dim: int
    smooth: bool
    series: bool
    points: int
    requested: str

    def series_wanted(self):
        return self.series and (self.requested == "series" or
                                (self.requested == "auto" and self.points >= SERIES_MIN_POINTS))


@dataclass(frozen=True)
class MethodRule:
    """One numeric method: its name, the label users see, when it is chosen (``applies``), and why."""

    name: str
    label: str
    applies: object
    doc: str


#: The numeric method of a Gaussian integral: the first rule that applies (a closed form, when there
#: is one, was chosen before by the limit pass; Stein coefficients and series are separate paths).
METHOD_RULES = (
    MethodRule("mc", "Monte Carlo", lambda c: c.requested == "mc",
               "Monte Carlo when asked for (--method mc)"),
    MethodRule("series", "Hermite series", lambda c: c.dim <= 2 and c.series_wanted(),
               "one or two variables, smooth, a family of at least SERIES_MIN_POINTS points (or --method series): "
               "the Hermite series, whose rows f(sqrt(a_i) z) a layer's pair and diagonal integrals share"),
    MethodRule("quad1d", "quadrature", lambda c: c.dim == 1,
               "one variable: adaptive Gauss-Legendre, split at kinks and integrable singularities"),
    MethodRule("nested", "quadrature",
               lambda c: (c.dim == 2 or (c.dim == 3 and c.points <= NESTED_3D_MAX_POINTS))
               and nested_nodes(c.integral) <= NESTED_MAX_NODES,
               "two variables (three on small grids): nested Gauss-Legendre in a Cholesky frame, split at kinks"),
    MethodRule("gh", "quadrature", lambda c: c.smooth and c.dim <= 4,
               "smooth, up to four variables: a tensor Gauss-Hermite rule"),
    MethodRule("mc", "Monte Carlo", lambda c: True,
               "otherwise: Monte Carlo with a standard error"),
)
METHOD_LABELS = {r.name: r.label for r in METHOD_RULES}


def choose_method(integral, grid_info, requested="auto"):
    """The name of the first rule of METHOD_RULES that applies to ``integral``."""
    smooth = not nonsmooth_apps(integral.integrand)
    # refuses non-integrable singularities before any method runs (Monte Carlo included: its
    # sample mean is finite and meaningless there); integrable ones need the quadrature split at
    # them (a Hermite series or Gauss-Hermite rule does not converge there)
    if singular_points(integral.integrand, integral.variables):
        smooth = False
    if requested == "closed":
        raise IntegrationError("has no closed form (run with --method auto, quad, series or mc)")
    choice = MethodChoice(integral, integral.dim, smooth, bool(grid_info.get("series_ok")) and smooth,
                          grid_info.get("points", 0), requested)
    return next(r.name for r in METHOD_RULES if r.applies(choice))


# ---------------------------------------------------------------------------------------------
# numpy implementations: inputs flattened over the grid (G points)

def integrate(integral, mean, cov, params, method, options):
    """E[F] at G grid points: mean (G, d), cov (G, d, d), params (G, P). Returns (value, error) of shape (G,)."""
    fn = {"quad1d": _quad1d, "nested": _nested, "gh": _gauss_hermite, "mc": _monte_carlo}[method]
    return fn(integral, mean, cov, params, options)


# Covariances assembled from estimated quantities (integrals, Monte Carlo) can miss positive
# semi-definiteness by the size of their errors; eigenvalues above -slack * (largest variance) are
# clipped to 0 (slack = max(PSD_SLACK, 10 x the inputs' relative error)), larger violations are errors.
PSD_SLACK = 1e-6


def _cholesky(cov, slack=PSD_SLACK):
    """Lower Cholesky factors of (G, d, d) positive semi-definite covariances (see PSD_SLACK)."""
    from .montecarlo import cholesky_psd

    cov = np.ascontiguousarray(cov)
    try:
        return cholesky_psd(cov)
    except ValueError:
        sym = 0.5 * (cov + np.swapaxes(cov, 1, 2))
        lam, vec = np.linalg.eigh(sym)
        scale = np.max(np.abs(np.diagonal(sym, axis1=1, axis2=2)), axis=1, initial=0.0)
        worst = int(np.argmin(lam[:, 0] / np.where(scale > 0, scale, 1.0)))
        if lam[worst, 0] < -slack * scale[worst]:
            raise IntegrationError(f"a covariance is not positive semi-definite (smallest eigenvalue "
                                   f"{lam[worst, 0]:.3g} for variances up to {scale[worst]:.3g})") from None
        clipped = np.einsum("gij,gj,gkj->gik", vec, np.maximum(lam, 0.0), vec)
        return cholesky_psd(np.ascontiguousarray(clipped), negative_tol=1e-6)


def _chunks(G, nodes):
    step = max(1, MAX_NODES_PER_CHUNK // max(nodes, 1))
    for a in range(0, G, step):
        yield slice(a, min(G, a + step))


def nested_nodes(integral):
    """Nodes per grid point of the (high-order) nested rule: (q x pieces per level)^d."""
    d = integral.dim
    extra = 0
    for f in breakpoint_apps(integral.integrand):
        for a in f.args:
            lin = linear_in(a, integral.variables)
            if lin is not None and any(c != 0 for c in lin[0]):
                extra += len(_offsets(type(f).__name__ not in NONSMOOTH))
    zmax, piece = (Q.ZMAX, PIECE) if d <= 2 else (ZMAX_ND, PIECE_ND)
    # Each line is split at one level only; spread over the levels on average.
    pieces = 2 * zmax / piece + extra / d
    return int((ORDERS["nested"][min(d, 3)][-1] * pieces) ** d)


def _quad1d(integral, mean, cov, params, options):
    """Gauss-Legendre on [-12, 12] in standard units, split at every kink z* = -(alpha m + beta)/(alpha s)."""
    F = Integrand(integral.integrand, integral.variables)
    G = mean.shape[0]
    m = mean[:, 0]
    s = np.sqrt(np.maximum(cov[:, 0, 0], 0.0))
    kinks, turns = [], []
    for f in breakpoint_apps(integral.integrand):
        smooth = type(f).__name__ not in NONSMOOTH
        for arg in f.args:
            lin = linear_in(arg, integral.variables)
            if lin is None or all(c == 0 for c in lin[0]):
                continue
            a = np.broadcast_to(_as_param_array(lin[0][0], F, params), (G,))
            b = np.broadcast_to(_as_param_array(lin[1], F, params), (G,))
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.where((a * s) != 0, -(a * m + b) / np.where(a * s != 0, a * s, 1.0), np.inf)
            kinks.append((z, _offsets(smooth)))
            if smooth:
                # A smooth function turns within |argument| ~ 1 of its zero: 1 / |a s| standard
                # units, tiny at a large variance (tanh at variance 1e12: 1e-6), where the fixed
                # grading would miss it (and both orders agree on the wrong value).
                with np.errstate(divide="ignore"):
                    width = 1.0 / np.abs(a * s)
                turns.append((z, width))
    for t in singular_points(integral.integrand, integral.variables):
        alpha, beta = linear_in(t, integral.variables)
        a = np.broadcast_to(_as_param_array(alpha[0], F, params), (G,))
        b = np.broadcast_to(_as_param_array(beta, F, params), (G,))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where((a * s) != 0, -(a * m + b) / np.where(a * s != 0, a * s, 1.0), np.inf)
        kinks.append((z, _singular_offsets()))
    fixed = np.arange(-Q.ZMAX, Q.ZMAX + 1e-9, PIECE)
    results = []
    floor = np.zeros(G)
    for q in ORDERS["quad1d"]:
        x, w = Q.gauss_legendre(q)
        val = np.empty(G)
        for sl in _chunks(G, q * (sum(len(o) for _, o in kinks) + len(TURN_GRADING) * len(turns) + len(fixed))):
            n = sl.stop - sl.start
            brk = [np.clip(k[sl] + d, -Q.ZMAX, Q.ZMAX) for k, offs in kinks for d in offs]
            with np.errstate(invalid="ignore"):
                brk += [np.nan_to_num(np.clip(k[sl] + c * wd[sl], -Q.ZMAX, Q.ZMAX), nan=Q.ZMAX)
                        for k, wd in turns for c in TURN_GRADING]
            pts = np.sort(np.stack([np.full(n, f) for f in fixed] + brk, axis=1), axis=1)
            total = np.zeros(sl.stop - sl.start)
            for p in range(pts.shape[1] - 1):
                a, b = pts[:, p:p + 1], pts[:, p + 1:p + 2]
                half = 0.5 * (b - a)
                z = a + half * (x[None, :] + 1.0)
                wz = half * w[None, :] * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
                u = m[sl, None] + s[sl, None] * z
                with np.errstate(divide="ignore", invalid="ignore"):
                    fz = F([u], [pp[sl, None] for pp in params.T])
                    part = wz * fz
                # Pieces narrower than float64 resolves at their position (grading toward a
                # singularity away from 0) may put a node on the singularity: such nodes (and
                # zero-width pieces) contribute nothing, and what these pieces hold is added to
                # the error estimate, since the integrand there is not resolved.
                unresolved = (b - a) < 1e-14 * np.abs(a)
                part = np.where(np.isfinite(part) & (wz != 0), part, 0.0)
                total += np.sum(part, axis=1)
                if q == ORDERS["quad1d"][-1]:
                    # + rounding: a sum of ~500 terms is good to a few ulp of its absolute sum
                    floor[sl] += np.sum(np.where(unresolved, np.abs(part), 4e-16 * np.abs(part)), axis=1)
            val[sl] = total
        results.append(val)
    return results[-1], np.abs(results[-1] - results[0]) + floor


def _as_param_array(expr, F, params):
    expr = sympy.sympify(expr).xreplace({r: _P[k] for k, r in enumerate(F.refs)})
    if expr.is_number:
        return np.full(params.shape[0], float(expr))
    fn = compile_numpy(expr, tuple(_P[:len(F.refs)]))
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


def _pieces(breaks, q, zmax=Q.ZMAX, piece=PIECE):
    """Gauss-Legendre nodes/weights (with the N(0,1) density) on [-zmax, zmax] split at the fixed
    points and around ``breaks``: a list of (array (...,), offsets) pairs, each break graded by its
    offsets.  Returns arrays of shape (..., P q)."""
    x, w = Q.gauss_legendre(q)
    fixed = np.arange(-zmax, zmax + 1e-9, piece)
    shape = breaks[0][0].shape if breaks else ()
    graded = (np.concatenate([b[..., None] + np.array(offs) for b, offs in breaks], axis=-1) if breaks
              else np.empty(shape + (0,)))
    pts = np.concatenate([np.broadcast_to(fixed, shape + fixed.shape),
                          np.clip(graded, -zmax, zmax)], axis=-1)
    pts = np.sort(pts, axis=-1)
    a, b = pts[..., :-1, None], pts[..., 1:, None]
    half = 0.5 * (b - a)
    z = a + half * (x + 1.0)
    wz = half * w * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return z.reshape(shape + (-1,)), wz.reshape(shape + (-1,))


def _nested(integral, mean, cov, params, options):
    """E F(m + L z), z ~ N(0, I_d), L the Cholesky factor: piecewise Gauss-Legendre in z_1, then in
    z_2 given z_1, ... (L lower triangular: u_k depends on z_1..z_k only).

    Each affine argument gamma_0 + sum_k gamma_k z_k of a function is split exactly (with graded
    pieces around it) at the level of its last variable: z_j* = -(gamma_0 + sum_{k<j} gamma_k z_k)
    / gamma_j.  So kinked functions of affine arguments are integrated piecewise-smoothly and steep
    smooth ones (tanh of a large variance) are resolved where they turn.
    """
    F = Integrand(integral.integrand, integral.variables)
    G, d = mean.shape
    L = _cholesky(cov, options.get("psd_slack", PSD_SLACK))
    lines = []  # (gamma_0 (G,), gamma (G, d), grading offsets) of every affine argument
    for f in breakpoint_apps(integral.integrand):
        offs = _offsets(True) if type(f).__name__ not in NONSMOOTH else _GRADED_KINK
        for arg in f.args:
            lin = linear_in(arg, integral.variables)
            if lin is None or all(c == 0 for c in lin[0]):
                continue
            alpha = np.stack([np.broadcast_to(_as_param_array(c, F, params), (G,)) for c in lin[0]], axis=1)
            beta = np.broadcast_to(_as_param_array(lin[1], F, params), (G,))
            lines.append((np.einsum("gk,gk->g", alpha, mean) + beta, np.einsum("gjk,gj->gk", L, alpha), offs))
    last = [max([k for k in range(d) if np.any(gm[:, k] != 0)], default=-1) for _, gm, _ in lines]
    results = []
    magnitude = np.zeros(G)
    for q in ORDERS["nested"][d]:
        val = np.empty(G)
        per_point = (q * (12 + sum(len(o) for _, _, o in lines))) ** d
        for sl in _chunks(G, min(per_point, nested_nodes(integral))):
            z = np.zeros((sl.stop - sl.start, 1, 0))   # nodes so far: (n, Q, level)
            w = np.ones((sl.stop - sl.start, 1))
            for k in range(d):
                breaks = []
                for (g0, gm, offs), j in zip(lines, last):
                    if j != k:
                        continue
                    num = g0[sl, None] + np.einsum("gqk,gk->gq", z, gm[sl, :k])
                    den = gm[sl, None, k]
                    with np.errstate(divide="ignore", invalid="ignore"):
                        center = np.where(den != 0, -num / np.where(den != 0, den, 1.0), np.inf)
                        breaks.append((center, offs))
                        if offs is not _GRADED_KINK:
                            # a smooth function turns within 1 / |gamma_k| of its zero (see _quad1d)
                            width = np.broadcast_to(1.0 / np.abs(den), center.shape)
                            breaks += [(np.nan_to_num(center + c * width, nan=np.inf), (0.0,))
                                       for c in TURN_GRADING]
                if not breaks:
                    breaks = [(np.full(z.shape[:2], np.inf), (0.0,))]
                zk, wk = _pieces(breaks, q, *((ZMAX_ND, PIECE_ND) if d > 2 else (Q.ZMAX, PIECE)))
                z = np.concatenate([np.repeat(z, zk.shape[-1], axis=1), zk.reshape(zk.shape[0], -1, 1)], axis=2)
                w = (w[..., None] * wk).reshape(w.shape[0], -1)
            u = mean[sl, None, :] + np.einsum("gij,gqj->gqi", L[sl], z)
            with np.errstate(divide="ignore", invalid="ignore"):
                f = F([u[..., i] for i in range(d)], [pp[sl, None] for pp in params.T])
            # zero-width pieces (coinciding breakpoints) put weight-0 nodes on a breakpoint, where
            # a removable singularity (sin(t)/t) evaluates to nan: they contribute nothing
            terms = np.where(w != 0, w * f, 0.0)
            val[sl] = np.sum(terms, axis=1)
            magnitude[sl] = np.sum(np.abs(terms), axis=1)
        results.append(val)
    # + rounding: the nodes, weights and a sum of ~10^4 terms are good to a few ulp of the sum of |terms|
    return results[-1], converged_error(*results) + 1e-15 * magnitude


def converged_error(v1, v2, v3):
    """Error estimate of v3, the last of three rules of increasing order.  Gauss-Legendre on an
    analytic piece converges geometrically, e_q ~ C rho^-q, so the differences contract by a
    factor r = |v3 - v2| / |v2 - v1| per step and the error of v3 is about r |v3 - v2|; it is
    stated with a safety factor (NESTED_SAFETY).  Where the differences do not contract clearly
    (r > NESTED_MAX_RATE: pre-asymptotic, kinks, unresolved turns), the estimate is the sum of
    the two differences, at least the old two-order difference's size.  (Estimating by the
    low-order rule's difference alone overstated the error 1e3 - 1e5 times.)"""
    d2, d1 = np.abs(v3 - v2), np.abs(v2 - v1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(d1 > 0, d2 / np.where(d1 > 0, d1, 1.0), np.inf)
    fast = rate <= NESTED_MAX_RATE
    return np.where(fast, NESTED_SAFETY * np.where(fast, rate, 0.0) * d2, d2 + d1)


def _gauss_hermite(integral, mean, cov, params, options):
    F = Integrand(integral.integrand, integral.variables)
    d = integral.dim
    L = _cholesky(cov, options.get("psd_slack", PSD_SLACK))
    results = []
    for q in ORDERS["gh"][d]:
        nodes, weights = Q.tensor_gauss_hermite(q, d)
        results.append(_apply_nodes(F, mean, L, params, nodes, weights))
    return results[-1], np.abs(results[-1] - results[0])


# Permutations tried per grid point to put interchangeable variables in a canonical order; larger
# symmetry groups are ordered by each variable's (mean, variance) only.
MAX_CANONICAL_PERMUTATIONS = 120


def interchangeable_classes(F, variables):
    """Classes of variables that F does not tell apart: u_a ~ u_b when swapping them leaves F
    unchanged (structurally, F(.., u_b, .., u_a, ..) == F), closed transitively, since the
    transpositions (a b) and (b c) generate every permutation of {a, b, c}.  Classes of size >= 2,
    as lists of positions."""
    d = len(variables)
    parent = list(range(d))

    def root(k):
        while parent[k] != k:
            k = parent[k]
        return k

    for a in range(d):
        for b in range(a + 1, d):
            if root(a) != root(b) and \
                    F.xreplace({variables[a]: variables[b], variables[b]: variables[a]}) == F:
                parent[root(b)] = root(a)
    classes = {}
    for k in range(d):
        classes.setdefault(root(k), []).append(k)
    return [c for c in classes.values() if len(c) > 1]


def _class_permutations(classes, d):
    """Every permutation of range(d) that permutes within the classes (identity included)."""
    perms = [list(range(d))]
    for cls in classes:
        grown = []
        for order in itertools.permutations(cls):
            for p in perms:
                q = p[:]
                for src, dst in zip(cls, order):
                    q[src] = dst
                grown.append(q)
        perms = grown
    return np.array(perms, dtype=np.intp)


def canonical_order(mean, cov, classes):
    """(mean, cov) with the variables of every class of interchangeable ones (see
    ``interchangeable_classes``) permuted, per grid point, into the order whose key
    (mean, cov flattened) is lexicographically smallest.  E F(u) is unchanged (F is invariant
    under these permutations), and two grid points whose Gaussians differ only by such a
    permutation (a kernel's (i, j) and (j, i)) become the same input, so Monte Carlo draws the
    same samples for them in the same roles and gives them the same bits.  With more than
    MAX_CANONICAL_PERMUTATIONS candidates, each class is sorted by (mean, variance) instead."""
    if not classes:
        return mean, cov
    G, d = mean.shape
    rows = np.arange(G)[:, None]
    if math.prod(math.factorial(len(c)) for c in classes) > MAX_CANONICAL_PERMUTATIONS:
        perm = np.tile(np.arange(d), (G, 1))
        var = np.diagonal(cov, axis1=1, axis2=2)
        for cls in classes:
            cls = np.array(cls)
            order = np.lexsort((var[:, cls], mean[:, cls]), axis=-1)
            perm[:, cls] = cls[order]
    else:
        perms = _class_permutations(classes, d)
        perm = np.tile(perms[0], (G, 1))
        best_key = _order_key(mean, cov, perm)
        for p in perms[1:]:
            cand = np.tile(p, (G, 1))
            key = _order_key(mean, cov, cand)
            differ = key != best_key
            first = np.argmax(differ, axis=1)
            smaller = differ.any(axis=1) & (key[np.arange(G), first] < best_key[np.arange(G), first])
            best_key = np.where(smaller[:, None], key, best_key)
            perm = np.where(smaller[:, None], cand, perm)
    return mean[rows, perm], cov[rows[:, :, None], perm[:, :, None], perm[:, None, :]]


def _order_key(mean, cov, perm):
    """(G, d + d^2): the means and the covariance of u_perm, flattened, per grid point."""
    G = mean.shape[0]
    rows = np.arange(G)[:, None]
    permuted = cov[rows[:, :, None], perm[:, :, None], perm[:, None, :]]
    return np.concatenate([mean[rows, perm], permuted.reshape(G, -1)], axis=1)


def _monte_carlo(integral, mean, cov, params, options):
    """Monte Carlo with the counter-based normals of ``montecarlo.py`` (the same for every grid point):
    numpy evaluation for small workloads, a generated parallel numba kernel for large ones.
    Interchangeable variables are put in a canonical order first (``canonical_order``), so that a
    symmetric integrand's estimate is exactly symmetric in the grid points it is symmetric in."""
    from . import montecarlo
    from .codegen import HELPERS, NumbaPrinter

    F = Integrand(integral.integrand, integral.variables)
    n = int(options.get("samples", 1 << 20))
    seed = int(options.get("seed", 0))
    mean, cov = canonical_order(mean, cov, interchangeable_classes(integral.integrand, integral.variables))
    if mean.shape[0] * n <= MC_NUMPY_MAX_WORK:
        return _monte_carlo_numpy(F, mean, _cholesky(cov, options.get("psd_slack", PSD_SLACK)), params, n, seed)
    names = {v: f"z{k}" for k, v in enumerate(integral.variables)}
    names.update({_P[k]: f"p{k}" for k in range(len(F.refs))})
    src = NumbaPrinter(names).doprint(F.F)
    L = _cholesky(cov, options.get("psd_slack", PSD_SLACK))
    prelude = ("import math\nfrom numba import njit\nfrom tensorprog.numeric import special as _sp\n"
               "_JIT = dict(cache=True, error_model='numpy', fastmath={'contract'})\n" + HELPERS)
    mean_, se = montecarlo.mc_expectation([src], L, mean, params if params.shape[1] else None,
                                          n_samples=n, seed=seed, prelude=prelude)
    return mean_[:, 0], se[:, 0]


def _monte_carlo_numpy(F, mean, L, params, n, seed, block=1 << 16):
    """Mean and standard error of F(m + L xi) over n samples xi, in blocks (sums kept per block and
    combined in order, so the result does not depend on anything but the seed)."""
    from .montecarlo import standard_normals

    G, d = mean.shape
    total = np.zeros(G)
    total2 = np.zeros(G)
    for first in range(0, n, block):
        m = min(block, n - first)
        xi = standard_normals(seed, m, d, first=first)                  # (m, d)
        for g in range(G):
            u = mean[g] + xi @ L[g].T
            f = np.broadcast_to(F([u[:, k] for k in range(d)], list(params[g])), (m,))
            total[g] += f.sum()
            total2[g] += (f * f).sum()
    avg = total / n
    var = np.maximum(total2 / n - avg * avg, 0.0) * n / (n - 1)
    return avg, np.sqrt(var / n)
