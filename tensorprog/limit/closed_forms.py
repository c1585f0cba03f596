r"""Closed forms for Gaussian expectations E[F(u)], u ~ N(mean, cov), with a symbolic covariance.

``gaussian_expectation`` turns E[F(u_1, ..., u_d)] into a sympy expression when it can and
returns ``None`` otherwise (the caller then integrates numerically).  It combines

* a **rule table**: one-variable forms E[f(u)], u ~ N(m, s), and two-variable forms
  E[f(u) g(v)] for a centred pair with Var u = a, Var v = b, Cov(u, v) = c;
* **generic reductions**, applied recursively until the table or a constant is reached:
  linearity; projection of an affine argument f(w.u + k) onto a new Gaussian variable;
  independence (structurally zero covariance) and parity (an odd F has mean zero);
  exponential tilting, E[exp(Q(u)) G(u)] = Z E'[G(u)] for a quadratic Q;
  product-to-sum for sines and cosines;
  conditioning, E[delta(z) G(u)] = p_z(0) E[G(u) | z = 0];
  Stein's lemma, E[u_i G(u)] = mean_i E[G] + sum_j cov_ij E[d_j G], which also gives every
  polynomial moment (Isserlis / Wick with means);
  canonicalisation of kinks, relu(x) = x step(x), |x| = x sign(x), sign(x) = 2 step(x) - 1,
  gelu(x) = x Phi(x), so that Stein's lemma applies.

Degenerate covariances (a = 0, b = 0, c^2 = ab, rounding past |rho| = 1) stay finite because the
two-variable formulas are written in rho = ``SafeCorr(c, a, b)`` (clamped, 0 when ab = 0) and
theta = acos(rho), and one-variable formulas with a mean in ``Zscore(m, s)`` = m / sqrt(s).
"""
from __future__ import annotations

from typing import NamedTuple

import sympy

from .. import functions as _functions  # noqa: F401  (registers the builtin nonlinearities)
from .. import nonlinearities as NL
from sympy import Abs, DiracDelta, S, acos, asin, cos, cosh, erf, exp, pi, sign, sin, sinh, sqrt

from ..functions import Phi, gelu, relu, step

__all__ = ["SafeCorr", "Zscore", "gaussian_expectation", "closed_form_rules"]


# ---------------------------------------------------------------------------------------------
# Safe building blocks
# ---------------------------------------------------------------------------------------------
class SafeCorr(sympy.Function):
    r"""rho(c, a, b) = clamp(c / sqrt(a b), -1, 1), and 0 when a b <= 0.

    The correlation of a pair with variances a, b and covariance c, made total so that the
    formulas built on it are finite at a = 0, b = 0 and |rho| = 1.  Structurally identical
    inputs (c = a = b) give 1 and opposite ones (c = -a, a = b) give -1.
    """

    nargs = 3

    @classmethod
    def eval(cls, c, a, b):
        if a.is_zero or b.is_zero or c.is_zero:
            return S.Zero
        if a == b and c in (a, -a):
            return S.One if c == a else S.NegativeOne
        if c.is_Number and a.is_Number and b.is_Number:
            ab = a * b
            return sympy.Max(-1, sympy.Min(1, c / sqrt(ab))) if ab > 0 else S.Zero
        if b.compare(a) < 0:   # structural order: deterministic, and cheap on large arguments
            return cls(c, b, a)   # symmetric in (a, b): one canonical order helps CSE

    def _eval_is_real(self):
        return True

    def _eval_evalf(self, prec):
        c, a, b = (arg._evalf(prec) for arg in self.args)
        if not (c.is_Number and a.is_Number and b.is_Number):
            return None
        return SafeCorr.eval(c, a, b)._evalf(prec)

    def fdiff(self, argindex=1):
        # Derivative of the plain formula c / sqrt(ab), valid where |rho| < 1 and ab > 0.
        c, a, b = self.args
        if argindex == 1:
            return 1 / sqrt(a * b)
        other = a if argindex == 2 else b
        return -c / (2 * other * sqrt(a * b))

    def doit(self, deep=True, **hints):
        c, a, b = (arg.doit(deep=deep, **hints) if deep else arg for arg in self.args)
        if (a * b).is_positive:
            return c / sqrt(a * b)
        return self.func(c, a, b)

    def _eval_rewrite_as_Piecewise(self, c, a, b, **kwargs):
        clamped = sympy.Max(-1, sympy.Min(1, c / sqrt(a * b)))
        return sympy.Piecewise((S.Zero, a * b <= 0), (clamped, True))

    def _sympystr(self, printer):
        return "rho(%s, %s, %s)" % tuple(printer._print(arg) for arg in self.args)

    def _latex(self, printer, exp=None):
        body = r"\rho\left(%s; %s, %s\right)" % tuple(printer._print(arg) for arg in self.args)
        return body if exp is None else r"%s^{%s}" % (body, exp)



class Zscore(sympy.Function):
    r"""zscore(m, s) = m / sqrt(s); 0 when m = 0, and +-infinity when s <= 0 < |m|.

    The standardised mean of u ~ N(m, s).  With it, E[step(u)] = Phi(zscore) and the other
    one-variable forms are finite at s = 0: the limits there are the values at u = m.
    """

    nargs = 2

    @classmethod
    def eval(cls, m, s):
        if m.is_zero:
            return S.Zero
        if m.is_Number and s.is_Number:
            return m / sqrt(s) if s > 0 else sign(m) * S.Infinity

    def _eval_is_extended_real(self):
        return True

    def _eval_evalf(self, prec):
        m, s = (arg._evalf(prec) for arg in self.args)
        if not (m.is_Number and s.is_Number):
            return None
        value = Zscore.eval(m, s)
        return value if value.is_infinite else value._evalf(prec)

    def fdiff(self, argindex=1):
        m, s = self.args
        return 1 / sqrt(s) if argindex == 1 else -m / (2 * s * sqrt(s))

    def doit(self, deep=True, **hints):
        m, s = (arg.doit(deep=deep, **hints) if deep else arg for arg in self.args)
        return m / sqrt(s) if s.is_positive else self.func(m, s)

    def _sympystr(self, printer):
        return "zscore(%s, %s)" % tuple(printer._print(arg) for arg in self.args)

    def _latex(self, printer, exp=None):
        m, s = (printer._print(arg) for arg in self.args)
        body = r"\frac{%s}{\sqrt{%s}}" % (m, s)
        return body if exp is None else r"\left(%s\right)^{%s}" % (body, exp)



def _pdf(z):
    """The standard normal density phi(z) = exp(-z^2 / 2) / sqrt(2 pi)."""
    return exp(-z**2 / 2) / sqrt(2 * pi)


# ---------------------------------------------------------------------------------------------
# The rule table
# ---------------------------------------------------------------------------------------------
_X = sympy.Dummy("x", real=True)

# Table functions: name -> f(x).  A product of atoms on one variable is looked up by its form.
_FUNCTIONS = {
    "relu": relu(_X), "relu^2": relu(_X)**2, "step": step(_X), "sign": sign(_X), "abs": Abs(_X),
    "erf": erf(_X), "exp(-x^2)": exp(-_X**2), "gelu": gelu(_X), "Phi": Phi(_X), "exp": exp(_X),
    "sin": sin(_X), "cos": cos(_X), "delta": DiracDelta(_X),
}
_NAME_OF = {form: name for name, form in _FUNCTIONS.items()}


_z = Zscore
def _rho(a, b, c):
    return SafeCorr(c, a, b)


def _theta(a, b, c):
    return acos(SafeCorr(c, a, b))


def _sin_theta(a, b, c):
    return sqrt(1 - SafeCorr(c, a, b)**2)


# One variable, u ~ N(m, s), z = m / sqrt(s), phi the standard normal density:
# (name, formula, rule(m, s)).
_SINGLE_TABLE = (
    ("relu", "m Phi(z) + sqrt(s) phi(z)",
     lambda m, s: m * Phi(_z(m, s)) + sqrt(s) * _pdf(_z(m, s))),
    ("relu^2", "(m^2 + s) Phi(z) + m sqrt(s) phi(z)",
     lambda m, s: (m**2 + s) * Phi(_z(m, s)) + m * sqrt(s) * _pdf(_z(m, s))),
    ("step", "Phi(z)", lambda m, s: Phi(_z(m, s))),
    ("sign", "2 Phi(z) - 1", lambda m, s: 2 * Phi(_z(m, s)) - 1),
    ("abs", "m (2 Phi(z) - 1) + 2 sqrt(s) phi(z)",
     lambda m, s: m * (2 * Phi(_z(m, s)) - 1) + 2 * sqrt(s) * _pdf(_z(m, s))),
    ("delta", "p_u(0) = phi(z) / sqrt(s)", lambda m, s: _pdf(_z(m, s)) / sqrt(s)),
    ("exp", "exp(m + s/2)", lambda m, s: exp(m + s / 2)),
    ("sin", "exp(-s/2) sin(m)", lambda m, s: exp(-s / 2) * sin(m)),
    ("cos", "exp(-s/2) cos(m)", lambda m, s: exp(-s / 2) * cos(m)),
    ("erf", "erf(m / sqrt(1 + 2s))", lambda m, s: erf(m / sqrt(1 + 2 * s))),
    ("Phi", "Phi(m / sqrt(1 + s))", lambda m, s: Phi(m / sqrt(1 + s))),
    ("gelu", "m Phi(y) + s phi(y) / sqrt(1 + s), y = m / sqrt(1 + s)  (Stein on u Phi(u))",
     lambda m, s: m * Phi(m / sqrt(1 + s)) + s * _pdf(m / sqrt(1 + s)) / sqrt(1 + s)),
    ("exp(-x^2)", "exp(-m^2 / (1 + 2s)) / sqrt(1 + 2s)",
     lambda m, s: exp(-m**2 / (1 + 2 * s)) / sqrt(1 + 2 * s)),
)

# Two centred variables, Var u = a, Var v = b, Cov = c, rho = SafeCorr(c, a, b), t = acos(rho):
# (f, g, formula of E[f(u) g(v)], rule(a, b, c)).  Registered in both orders.
_PAIR_TABLE = (
    ("relu", "relu", "sqrt(ab)/(2 pi) (sin t + (pi - t) rho)  (arc-cosine kernel, order 1)",
     lambda a, b, c: sqrt(a) * sqrt(b) / (2 * pi) * (_sin_theta(a, b, c)
                                                     + (pi - _theta(a, b, c)) * _rho(a, b, c))),
    ("step", "step", "(pi - t) / (2 pi)  (arc-cosine kernel, order 0)",
     lambda a, b, c: (pi - _theta(a, b, c)) / (2 * pi)),
    ("relu", "step", "sqrt(a) (1 + rho) / (2 sqrt(2 pi))",
     lambda a, b, c: sqrt(a) * (1 + _rho(a, b, c)) / (2 * sqrt(2 * pi))),
    ("relu^2", "relu^2", "ab/(2 pi) (3 sin t rho + (pi - t)(1 + 2 rho^2))  (arc-cosine, order 2)",
     lambda a, b, c: a * b / (2 * pi) * (3 * _sin_theta(a, b, c) * _rho(a, b, c)
                                         + (pi - _theta(a, b, c)) * (1 + 2 * _rho(a, b, c)**2))),
    ("sign", "sign", "(2/pi) asin(rho)", lambda a, b, c: 2 * asin(_rho(a, b, c)) / pi),
    ("abs", "abs", "(2 sqrt(ab)/pi) (sin t + rho asin(rho))",
     lambda a, b, c: 2 * sqrt(a) * sqrt(b) / pi * (_sin_theta(a, b, c)
                                                   + _rho(a, b, c) * asin(_rho(a, b, c)))),
    ("relu", "abs", "(sqrt(ab)/pi) (sin t + rho asin(rho))",
     lambda a, b, c: sqrt(a) * sqrt(b) / pi * (_sin_theta(a, b, c)
                                               + _rho(a, b, c) * asin(_rho(a, b, c)))),
    ("relu", "sign", "sqrt(a) rho / sqrt(2 pi)",
     lambda a, b, c: sqrt(a) * _rho(a, b, c) / sqrt(2 * pi)),
    ("step", "sign", "asin(rho) / pi", lambda a, b, c: asin(_rho(a, b, c)) / pi),
    ("step", "abs", "sqrt(b / (2 pi))  (symmetric under (u, v) -> (-u, -v))",
     lambda a, b, c: sqrt(b) / sqrt(2 * pi)),
    ("sign", "abs", "0  (odd under (u, v) -> (-u, -v))", lambda a, b, c: S.Zero),
    ("erf", "erf", "(2/pi) asin(2c / sqrt((1 + 2a)(1 + 2b)))",
     lambda a, b, c: 2 * asin(2 * c / sqrt((1 + 2 * a) * (1 + 2 * b))) / pi),
    ("step", "erf", "asin(c / sqrt(a (b + 1/2))) / pi  (erf(v) = 2 P(Y < v) - 1, Y ~ N(0, 1/2))",
     lambda a, b, c: asin(SafeCorr(c, a, b + S.Half)) / pi),
    ("step", "Phi", "1/4 + asin(c / sqrt(a (1 + b))) / (2 pi)",
     lambda a, b, c: S.One / 4 + asin(SafeCorr(c, a, 1 + b)) / (2 * pi)),
    ("Phi", "Phi", "1/4 + asin(c / sqrt((1 + a)(1 + b))) / (2 pi)",
     lambda a, b, c: S.One / 4 + asin(c / sqrt((1 + a) * (1 + b))) / (2 * pi)),
    ("exp(-x^2)", "exp(-x^2)", "1 / sqrt((1 + 2a)(1 + 2b) - 4c^2)  (erf' = 2 exp(-x^2) / sqrt(pi))",
     lambda a, b, c: 1 / sqrt((1 + 2 * a) * (1 + 2 * b) - 4 * c**2)),
    ("gelu", "gelu", "c/4 + (c/(2 pi)) asin(c / sqrt((1+a)(1+b))) + (ab + c^2 (1/(1+a) + 1/(1+b) - 1))"
     " / (2 pi sqrt(D)),  D = (1+a)(1+b) - c^2",
     lambda a, b, c: (c / 4 + c * asin(c / sqrt((1 + a) * (1 + b))) / (2 * pi)
                      + (a * b + c**2 * (1 / (1 + a) + 1 / (1 + b) - 1))
                      / (2 * pi * sqrt((1 + a) * (1 + b) - c**2)))),
    ("exp", "exp", "exp((a + b)/2 + c)", lambda a, b, c: exp((a + b) / 2 + c)),
    ("sin", "sin", "exp(-(a + b)/2) sinh(c)", lambda a, b, c: exp(-(a + b) / 2) * sinh(c)),
    ("cos", "cos", "exp(-(a + b)/2) cosh(c)", lambda a, b, c: exp(-(a + b) / 2) * cosh(c)),
    ("sin", "cos", "0  (odd under (u, v) -> (-u, -v))", lambda a, b, c: S.Zero),
    ("delta", "delta", "p(0, 0) = 1 / (2 pi sqrt(ab) sin t)",
     lambda a, b, c: 1 / (2 * pi * sqrt(a) * sqrt(b) * _sin_theta(a, b, c))),
    ("delta", "relu", "p_u(0) E[relu(v) | u = 0] = sqrt(b) sin t / (2 pi sqrt(a))",
     lambda a, b, c: sqrt(b) * _sin_theta(a, b, c) / (2 * pi * sqrt(a))),
    ("delta", "step", "1 / (2 sqrt(2 pi a))", lambda a, b, c: 1 / (2 * sqrt(2 * pi) * sqrt(a))),
    ("delta", "sign", "0  (v | u = 0 is centred)", lambda a, b, c: S.Zero),
    ("delta", "abs", "sqrt(b) sin t / (pi sqrt(a))",
     lambda a, b, c: sqrt(b) * _sin_theta(a, b, c) / (pi * sqrt(a))),
)

_SINGLE = {name: rule for name, _, rule in _SINGLE_TABLE}
_SINGLE_DOCS = {name: doc for name, doc, _ in _SINGLE_TABLE}


_PAIR = {}
_PAIR_DOCS = {}   # (f, g) -> formula, one order per pair (for closed_form_rules)


def _add_pair(f, g, doc, rule):
    _PAIR[(f, g)] = rule
    _PAIR[(g, f)] = lambda a, b, c: rule(b, a, c)
    _PAIR_DOCS[(f, g)] = doc


for _f, _g, _doc, _rule in _PAIR_TABLE:
    _add_pair(_f, _g, _doc, _rule)


def _add_registered_form(entry):
    """A registry entry's own closed forms, E[f(u)] and E[f(u) g(v)] (builtins and
    register_nonlinearity)."""
    if entry.single or entry.pairs:
        form = entry.make(_X)
        _FUNCTIONS[entry.name] = form
        _NAME_OF[form] = entry.name
    if entry.single:
        _SINGLE_DOCS[entry.name], _SINGLE[entry.name] = entry.single
    for other, doc, rule in entry.pairs:
        _add_pair(entry.name, other, doc, rule)


NL.subscribe(_add_registered_form)

_GENERIC = {
    "linearity": "E[sum_k k_k F_k] = sum_k k_k E[F_k] for constant k_k",
    "projection": "f(w.u + k) -> f(z), z ~ N(w.mean + k, w' cov w), Cov(z, u) = cov w",
    "independence": "E[F(u) G(v)] = E[F(u)] E[G(v)] when Cov(u, v) = 0 structurally",
    "parity": "E[F(u)] = 0 for centred u and F(-u) = -F(u)",
    "tilting": "E[exp(-u'Au/2 + b'u + k) G(u)] = Z E[G(u')], u' ~ N(mean', (I + CA)^-1 C)",
    "product-to-sum": "sin A sin B = (cos(A - B) - cos(A + B))/2, etc.",
    "conditioning": "E[delta(z) G(u)] = p_z(0) E[G(u) | z = 0]",
    "Stein": "E[u_i G(u)] = mean_i E[G] + sum_j cov_ij E[d_j G]  (also Isserlis / Wick)",
    "kinks": "relu(x) = x step(x), |x| = x sign(x), sign(x) = 2 step(x) - 1, gelu(x) = x Phi(x)",
}


def closed_form_rules():
    """All rules, name -> formula: 'E[f(u)]' (u ~ N(m, s)), 'E[f(u) g(v)]' (centred pair with
    variances a, b and covariance c; also registered as g x f), and the generic reductions."""
    rules = {"E[%s(u)]" % name: doc for name, doc in _SINGLE_DOCS.items()}
    rules.update({"E[%s(u) %s(v)]" % fg: doc for fg, doc in _PAIR_DOCS.items()})
    rules.update(_GENERIC)
    return rules


# ---------------------------------------------------------------------------------------------
# The solver
# ---------------------------------------------------------------------------------------------
class _Law(NamedTuple):
    """u ~ N(mean, cov) over the variables ``names`` (real Dummies)."""

    names: tuple
    cov: sympy.ImmutableMatrix
    mean: tuple

    def sub(self, keep):
        idx = [i for i, x in enumerate(self.names) if x in keep]
        return _Law(tuple(self.names[i] for i in idx),
                    sympy.ImmutableMatrix(len(idx), len(idx), lambda i, j: self.cov[idx[i], idx[j]]),
                    tuple(self.mean[i] for i in idx))

    def centred(self):
        return all(m.is_zero for m in self.mean)


class _Term(NamedTuple):
    """A product of powers: poly {variable: k} and atoms {(head, argument): k}."""

    poly: dict
    atoms: dict

    def expr(self):
        return sympy.Mul(*[x**k for x, k in self.poly.items()],
                         *[h(arg)**k for (h, arg), k in self.atoms.items()])

    def atoms_of(self, *heads):
        return [(h, arg, k) for (h, arg), k in self.atoms.items() if h in heads]


_SKIP = object()       # a reduction that does not apply (None means: no closed form)
_MAX_DEPTH = 60
# Atoms whose derivatives end in the table, a tilt or a delta: Stein's lemma terminates on them.
_STEIN_HEADS = NL.STEIN_VIEW  # registry entries with `stein`


def _polynomial(expr, names, degree):
    """Poly(expr) in ``names`` if its total degree is at most ``degree``, else None."""
    try:
        poly = sympy.Poly(expr, *names)
    except sympy.PolynomialError:
        return None
    return poly if poly.total_degree() <= degree else None


def _parse(product, names):
    """Split a product of variable-dependent factors into a _Term; None if unsupported."""
    poly, atoms = {}, {}
    for factor in sympy.Mul.make_args(product):
        # exp(x).as_base_exp() is (E, x): an exp factor is an atom of power 1.
        base, power = (factor, S.One) if isinstance(factor, exp) else factor.as_base_exp()
        if not (power.is_Integer and power > 0):
            return None
        if base in names:
            poly[base] = poly.get(base, 0) + int(power)
            continue
        if not isinstance(base, sympy.Function) or len(base.args) != 1:
            return None
        arg = base.args[0]
        if _polynomial(arg, names, 2 if isinstance(base, exp) else 1) is None:
            return None
        key = (base.func, arg)
        atoms[key] = atoms.get(key, 0) + int(power)
    return _Term(poly, atoms)


class _Solver:
    def __init__(self):
        self._memo = {}
        self._projections = {}
        self._depth = 0

    def projected(self):
        """The variables introduced by projection."""
        return tuple(self._projections.values())

    def expect(self, expr, law):
        """E[expr]: linearity over the expanded sum, constants pulled out."""
        expr = sympy.expand(expr, power_exp=False, power_base=False, log=False)
        total = S.Zero
        for term in sympy.Add.make_args(expr):
            coeff, product = term.as_independent(*law.names, as_Add=False)
            if product == 1 or coeff == 0:
                total += coeff
                continue
            value = self.product(product, law)
            if value is None:
                return None
            total += coeff * value
        return total

    def product(self, product, law):
        key = (product, law)
        if key not in self._memo:
            if self._depth > _MAX_DEPTH:
                return None
            self._depth += 1
            try:
                self._memo[key] = self._product(product, law)
            finally:
                self._depth -= 1
        return self._memo[key]

    def _product(self, product, law):
        term = _parse(product, law.names)
        if term is None:
            return None
        term, law = self._project(term, law)
        product = term.expr()
        law = law.sub(product.free_symbols)
        if law.centred() and sympy.expand(product + product.xreplace({x: -x for x in law.names})) == 0:
            return S.Zero
        groups = _components(product, law)
        if len(groups) > 1:
            value = S.One
            for group in groups:
                part = self.product(sympy.Mul(*[f for f in sympy.Mul.make_args(product)
                                                if f.free_symbols & group]), law.sub(group))
                if part is None:
                    return None
                value *= part
            return value
        for reduction in (_table, self._tilt, self._trig, self._condition, self._stein, self._kinks):
            value = reduction(product, term, law)
            if value is not _SKIP:
                return value
        return None

    def _project(self, term, law):
        """Replace each non-variable argument w.u + k of a non-exp atom by a new variable z:
        with W = [I | w_1 | ...] the joint law is N(W' mean + offsets, W' cov W)."""
        atoms, names = {}, list(law.names)
        weights, offsets = [sympy.eye(len(names))], [S.Zero] * len(names)
        for (head, arg), power in term.atoms.items():
            if head is not exp and arg not in law.names:
                z = self._projections.setdefault((arg, law), sympy.Dummy("z", real=True))
                if z not in names:
                    poly = sympy.Poly(arg, *law.names)
                    weights.append(sympy.Matrix([poly.coeff_monomial(x) for x in law.names]))
                    offsets.append(poly.coeff_monomial(1))
                    names.append(z)
                arg = z
            atoms[(head, arg)] = atoms.get((head, arg), 0) + power
        if len(names) == len(law.names):
            return _Term(term.poly, atoms), law
        W = sympy.Matrix.hstack(*weights)
        cov = (W.T * law.cov * W).applyfunc(sympy.expand)
        mean = W.T * sympy.Matrix(law.mean)
        return _Term(term.poly, atoms), _Law(tuple(names), sympy.ImmutableMatrix(cov),
                                             tuple(sympy.expand(m + k) for m, k in zip(mean, offsets)))

    def _tilt(self, product, term, law):
        """E[exp(Q) G] with Q = -u'Au/2 + b'u + k: Z E'[G] under N(mean', C'), M = I + C A,
        C' = M^-1 C, mean' = mean + C'(b - A mean),
        Z = det(M)^(-1/2) exp(k + b'mean - mean'A mean/2 + (b - A mean)' C' (b - A mean)/2)."""
        exps = term.atoms_of(exp)
        if not exps:
            return _SKIP
        n, names = len(law.names), law.names
        poly = _polynomial(sum(k * arg for _, arg, k in exps), names, 2)
        if poly is None:
            return None
        A, b = sympy.zeros(n, n), sympy.zeros(n, 1)
        for i, x in enumerate(names):
            b[i] = poly.coeff_monomial(x)
            for j, y in enumerate(names):
                A[i, j] = -2 * poly.coeff_monomial(x**2) if i == j else -poly.coeff_monomial(x * y)
        C, mu = sympy.Matrix(law.cov), sympy.Matrix(law.mean)
        M = sympy.eye(n) + C * A
        try:
            C_new = (M.inv() * C).applyfunc(sympy.cancel)
        except ValueError:
            return None
        C_new = sympy.ImmutableMatrix(n, n, lambda i, j: C_new[min(i, j), max(i, j)])
        r = b - A * mu
        mean_new = tuple(sympy.cancel(e) for e in mu + C_new * r)
        log_z = poly.coeff_monomial(1) + (b.T * mu - mu.T * A * mu / 2 + r.T * C_new * r / 2)[0]
        z = exp(sympy.cancel(log_z)) / sqrt(sympy.factor(M.det()))
        rest = product / sympy.Mul(*[exp(arg)**k for _, arg, k in exps])
        value = self.expect(rest, _Law(names, C_new, mean_new))
        return None if value is None else z * value

    def _trig(self, product, term, law):
        """Product-to-sum on two sine/cosine factors."""
        trig = [(h, arg) for h, arg, k in term.atoms_of(sin, cos) for _ in range(k)]
        if len(trig) < 2:
            return _SKIP
        (f, x), (g, y) = trig[:2]
        if f is cos and g is sin:
            (f, x), (g, y) = (g, y), (f, x)
        if f is sin and g is cos:
            combined = (sin(x + y) + sin(x - y)) / 2
        else:
            sgn = -1 if f is sin else 1
            combined = (cos(x - y) + sgn * cos(x + y)) / 2
        return self.expect(product / (f(x) * g(y)) * combined, law)

    def _condition(self, product, term, law):
        """E[delta(z) G] = p_z(0) E[G|_{z=0}] under u | z = 0: mean_i - rho_iz sqrt(C_ii / C_zz)
        mean_z, C_ii (1 - rho_iz^2) on the diagonal, C_ij - rho_iz rho_jz sqrt(C_ii) sqrt(C_jj)."""
        deltas = term.atoms_of(DiracDelta)
        if not deltas:
            return _SKIP
        _, z, power = deltas[0]
        if power > 1:
            return None
        k = law.names.index(z)
        C, s = law.cov, law.cov[k, k]
        keep = [i for i in range(len(law.names)) if i != k]
        rho = {i: SafeCorr(C[i, k], C[i, i], s) for i in keep}
        cond_cov = sympy.ImmutableMatrix(len(keep), len(keep), lambda p, q: (
            C[keep[p], keep[p]] * (1 - rho[keep[p]]**2) if p == q else
            C[keep[p], keep[q]] - rho[keep[p]] * rho[keep[q]] * sqrt(C[keep[p], keep[p]])
            * sqrt(C[keep[q], keep[q]])))
        cond_mean = tuple(law.mean[i] - rho[i] * sqrt(C[i, i]) * law.mean[k] / sqrt(s) for i in keep)
        rest = (product / DiracDelta(z)).xreplace({z: S.Zero})
        value = self.expect(rest, _Law(tuple(law.names[i] for i in keep), cond_cov, cond_mean))
        return None if value is None else _SINGLE["delta"](law.mean[k], s) * value

    def _stein(self, product, term, law):
        """E[u_i G] = mean_i E[G] + sum_j C_ij E[d_j G].

        A term of d_j G holding delta(u_j) has an expectation carrying 1/sqrt(C_jj): it is
        multiplied by sqrt(C_jj) term by term (so the powers cancel) and by C_ij / sqrt(C_jj),
        written rho_ij sqrt(C_ii), which keeps the result finite at C_jj = 0.
        """
        if not term.poly:
            return _SKIP
        if any(h not in _STEIN_HEADS for h, _ in term.atoms):
            return None
        x = next(iter(term.poly))
        i = law.names.index(x)
        rest = product / x
        total = S.Zero
        if not law.mean[i].is_zero:
            value = self.expect(rest, law)
            if value is None:
                return None
            total += law.mean[i] * value
        for j, y in enumerate(law.names):
            c, cjj = law.cov[i, j], law.cov[j, j]
            if c.is_zero:
                continue
            parts = {True: S.Zero, False: S.Zero}
            for part in sympy.Add.make_args(sympy.expand(sympy.diff(rest, y))):
                parts[part.has(DiracDelta(y))] += part
            for has_delta, part in parts.items():
                value = self.expect(part, law)
                if value is None:
                    return None
                if has_delta:
                    cii = law.cov[i, i]
                    scale = sqrt(cjj) if i == j else SafeCorr(c, cii, cjj) * sqrt(cii)
                    value = scale * sympy.Add(*[sqrt(cjj) * t for t in sympy.Add.make_args(value)])
                else:
                    value = c * value
                total += value
        return total

    def _kinks(self, product, term, law):
        """relu(x) = x step(x), |x| = x (2 step(x) - 1), sign(x) = 2 step(x) - 1, gelu(x) = x Phi(x),
        step(x)^k = step(x) almost everywhere; then Stein's lemma applies."""
        canonical = product.replace(relu, lambda x: x * step(x)).replace(
            Abs, lambda x: x * (2 * step(x) - 1)).replace(
            sign, lambda x: 2 * step(x) - 1).replace(gelu, lambda x: x * Phi(x))
        canonical = sympy.expand(canonical, power_exp=False, power_base=False, log=False).replace(
            lambda e: e.is_Pow and isinstance(e.base, step), lambda e: e.base)
        return None if canonical == product else self.expect(canonical, law)


def _components(product, law):
    """Groups of variables that are linked by a structurally non-zero covariance or a factor."""
    parent = {x: x for x in law.names}

    def root(x):
        while parent[x] != x:
            x = parent[x]
        return x

    links = [(x, y) for i, x in enumerate(law.names) for j, y in enumerate(law.names)
             if i < j and not law.cov[i, j].is_zero]
    for factor in sympy.Mul.make_args(product):
        found = sorted(factor.free_symbols & set(law.names), key=law.names.index)
        links += [(found[0], y) for y in found[1:]]
    for x, y in links:
        parent[root(x)] = root(y)
    groups = {}
    for x in law.names:
        groups.setdefault(root(x), set()).add(x)
    return list(groups.values())


def _table(product, term, law):
    """Look the product up in the one- and two-variable tables (no polynomial factor)."""
    if term.poly:
        return _SKIP
    on = {}
    for (head, arg), power in term.atoms.items():
        variables = arg.free_symbols & set(law.names)
        if len(variables) != 1:
            return _SKIP
        on.setdefault(variables.pop(), []).append((head(arg), power))
    names = [_NAME_OF.get(sympy.Mul(*[f**k for f, k in atoms]).xreplace({x: _X}))
             for x, atoms in on.items()]
    C = law.cov
    if len(on) == 1:
        if names[0] in _SINGLE:
            return _SINGLE[names[0]](law.mean[0], C[0, 0])
        (atoms,) = on.values()
        flat = [f.xreplace({law.names[0]: _X}) for f, k in atoms for _ in range(k)]
        pair = tuple(_NAME_OF.get(f) for f in flat)
        if law.centred() and pair in _PAIR:
            return _PAIR[pair](C[0, 0], C[0, 0], C[0, 0])
        return _SKIP
    if law.centred() and tuple(names) in _PAIR:
        x, y = on
        i, j = law.names.index(x), law.names.index(y)
        return _PAIR[tuple(names)](C[i, i], C[j, j], C[i, j])
    return _SKIP


def gaussian_expectation(expr, variables, cov, mean=None):
    """E[expr(u)] for u ~ N(mean, cov) over ``variables``, as a sympy expression, or None.

    ``variables`` is a tuple of Symbols, ``cov`` a symmetric sympy Matrix (symbolic entries
    allowed), ``mean`` a tuple (default zeros).  ``None`` means no closed form was found.
    """
    variables = tuple(variables)
    n = len(variables)
    cov = sympy.ImmutableMatrix(cov)
    if cov.shape != (n, n):
        raise ValueError("cov must be %d x %d, got %s" % (n, n, cov.shape))
    mean = tuple(sympy.sympify(m) for m in mean) if mean is not None else (S.Zero,) * n
    if len(mean) != n:
        raise ValueError("mean must have %d entries" % n)
    # Real dummies make sympy differentiate Abs and sign as real functions.
    names = tuple(sympy.Dummy(str(v), real=True) for v in variables)
    solver = _Solver()
    value = solver.expect(sympy.sympify(expr).xreplace(dict(zip(variables, names))),
                          _Law(names, cov, mean))
    if value is None or value.has(*names, *solver.projected(), S.ComplexInfinity, S.NaN):
        return None
    # A pure moment (Isserlis) comes out nested by the recursion: expand it to a polynomial.
    return value if value.has(sympy.Function) else sympy.expand(value)
