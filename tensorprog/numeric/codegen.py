"""From sympy expressions to numba source: the printer of the numeric backend.

``NumbaPrinter(names).doprint(expr)`` gives a Python/numba expression string.
Symbols print through ``names`` (a dict symbol -> source text, e.g. a local
variable or an array read ``q3[i0, i1]``); functions map to the branch-free,
vectorisable implementations of :mod:`tensorprog.numeric.special` (``_sp.``) or
to inline arithmetic; integer powers become products (no ``pow`` call).

Generated modules start with :data:`PRELUDE`; they are written to the cache
directory by :func:`tensorprog.numeric.cache.load_generated`, so a later process
loads the compiled kernels instead of compiling them again.
"""
from __future__ import annotations

import math

import sympy
from sympy.printing.str import StrPrinter

from .. import functions as _F  # noqa: F401  (registers the builtin nonlinearities)
from .. import nonlinearities as NL

PRELUDE = """\
import math
import numpy as np
from numba import njit, prange
from tensorprog.numeric import special as _sp

_JIT = dict(cache=True, error_model="numpy", fastmath={"contract"})
"""

# sympy function name -> numba call (one argument): the nonlinearities' own (from their registry
# entries) and those the limit pass introduces.
_UNARY = NL.NUMBA_UNARY_VIEW
_UNARY.update({"erfc": "_sp.erfc", "acos": "_sp.acos", "asin": "_sp.asin", "atan": "_sp.atan",
               "sinh": "_sinh", "cosh": "_cosh"})


class CodegenError(ValueError):
    pass


class CorrSD(sympy.Function):
    """SafeCorr(c, a, b) written as CorrSD(c, sqrt(a), sqrt(b)) = clamp(c / (sqrt(a) sqrt(b))), for
    generated code only: the standard deviations then become common subexpressions with the
    sqrt(a) sqrt(b) of the closed forms (relu, step), one square root per variance instead of two."""

    nargs = 3


def with_standard_deviations(expr):
    """expr with every SafeCorr(c, a, b) replaced by CorrSD(c, sqrt(a), sqrt(b))."""
    from ..limit.closed_forms import SafeCorr

    return expr.replace(SafeCorr, lambda c, a, b: CorrSD(c, sympy.sqrt(a), sympy.sqrt(b)))


class NumbaPrinter(StrPrinter):
    """sympy -> numba source for float64 scalars."""

    printmethod = "_numbacode"

    def __init__(self, names=None, settings=None):
        super().__init__(settings or {})
        self.names = names or {}

    def doprint(self, expr):
        return super().doprint(sympy.sympify(expr))

    def _print_Symbol(self, expr):
        if expr in self.names:
            return self.names[expr]
        raise CodegenError(f"no value for the symbol {expr} in generated code")

    _print_Dummy = _print_Symbol

    def _print_Function(self, expr):
        if expr in self.names:  # quantity references and atoms are bound by the caller
            return self.names[expr]
        name = type(expr).__name__
        args = [self._print(a) for a in expr.args]
        rule = getattr(self, f"_fn_{name}", None)
        if rule is None:
            rule = NL.NUMBA_RULES_VIEW.get(name)  # a nonlinearity's inline form
        if rule is not None:
            return rule(*args)
        if name in _UNARY and len(args) == 1:
            return f"{_UNARY[name]}({args[0]})"
        raise CodegenError(f"cannot generate numeric code for the function {name}")

    # --- functions with inline forms
    def _fn_Max(self, *xs):
        return "max(" + ", ".join(xs) + ")"

    def _fn_Min(self, *xs):
        return "min(" + ", ".join(xs) + ")"

    def _fn_SafeCorr(self, c, a, b):
        # clamp(c / sqrt(a b), -1, 1), and 0 when a b <= 0 (THEORY.md section 5: degenerate cases).
        return (f"_safe_corr({c}, {a}, {b})")

    def _fn_CorrSD(self, c, sa, sb):
        return f"_corr_sd({c}, {sa}, {sb})"

    def _fn_Zscore(self, m, s):
        return f"_zscore({m}, {s})"

    def _fn_DiracDelta(self, *args):
        raise CodegenError("a Dirac delta cannot be evaluated pointwise")

    # --- arithmetic
    def _print_Pow(self, expr, rational=False):
        base, e = expr.base, expr.exp
        b = self.parenthesize(base, 100)  # always safe
        if e.is_Integer:
            k = int(e)
            if 0 < k <= 8:
                return "(" + "*".join([b] * k) + ")"
            if -8 <= k < 0:
                return "(1.0/(" + "*".join([b] * -k) + "))"
            return f"({b}**{float(k)!r})"
        if e == sympy.S.Half:
            return f"math.sqrt({self._print(base)})"
        if e == -sympy.S.Half:
            return f"(1.0/math.sqrt({self._print(base)}))"
        return f"({b}**{self._print(e)})"

    def parenthesize(self, item, level, strict=False):
        return "(" + self._print(item) + ")"

    def _print_Mul(self, expr):
        return "(" + "*".join(self._print(a) for a in expr.args) + ")"

    def _print_Add(self, expr, order=None):
        return "(" + " + ".join(self._print(a) for a in expr.args) + ")"

    def _print_Integer(self, expr):
        return repr(float(expr))

    def _print_Rational(self, expr):
        return repr(float(expr.p) / float(expr.q)) if abs(expr.p) < 2 ** 53 and expr.q < 2 ** 53 \
            else repr(float(expr))

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_NumberSymbol(self, expr):
        return repr(float(expr))

    _print_Pi = _print_NumberSymbol
    _print_Exp1 = _print_NumberSymbol

    def _print_Zero(self, expr):
        return "0.0"

    def _print_One(self, expr):
        return "1.0"

    def _print_NegativeOne(self, expr):
        return "-1.0"

    def _print_Half(self, expr):
        return "0.5"

    def _print_Infinity(self, expr):
        return "math.inf"

    def _print_NegativeInfinity(self, expr):
        return "(-math.inf)"

    def _print_NaN(self, expr):
        raise CodegenError("NaN in an expression")

    def emptyPrinter(self, expr):
        raise CodegenError(f"cannot generate numeric code for {type(expr).__name__}: {expr}")


HELPERS = """\
@njit(inline="always", **_JIT)
def _corr_sd(c, sa, sb):
    # clamp(c / (sa sb), -1, 1), 0 unless sa sb > 0 (sa = sqrt(a) is NaN for a < 0: also 0).
    # Within a few ulp of +-1 the inputs are identical (or antipodal) in float64: snap, because
    # acos amplifies a 1-ulp difference (diagonal and pair quantities rounded apart) to 1e-8.
    s = sa * sb
    r = c / (s if s > 0.0 else 1.0)
    r = min(1.0, max(-1.0, r))
    r = 1.0 if r > 1.0 - 1e-15 else (-1.0 if r < -1.0 + 1e-15 else r)
    return r if s > 0.0 else 0.0


@njit(inline="always", **_JIT)
def _safe_corr(c, a, b):
    ab = a * b
    return _corr_sd(c, math.sqrt(ab if ab > 0.0 else 0.0), 1.0)


@njit(inline="always", **_JIT)
def _zscore(m, s):
    z = m / math.sqrt(s if s > 0.0 else 1.0)
    return z if s > 0.0 else (0.0 if m == 0.0 else (math.inf if m > 0.0 else -math.inf))


@njit(inline="always", **_JIT)
def _sinh(x):
    return 0.5 * (_sp.expm1(x) - _sp.expm1(-x))


@njit(inline="always", **_JIT)
def _cosh(x):
    return 0.5 * (_sp.exp(x) + _sp.exp(-x))
"""


def module_source(*bodies) -> str:
    """A complete generated module: the prelude, the helpers, then the given function sources."""
    return PRELUDE + "\n\n" + HELPERS + "\n\n" + "\n\n".join(bodies) + "\n"


def float_literal(x) -> str:
    x = float(x)
    if math.isnan(x):
        raise CodegenError("NaN constant")
    return repr(x) if math.isfinite(x) else ("math.inf" if x > 0 else "(-math.inf)")
