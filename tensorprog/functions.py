"""The builtin library of coordinatewise functions, as sympy functions.

Every nonlinearity a program can use is a sympy expression built from the classes
here and sympy's own elementary functions (tanh, erf, exp, sin, cos, log, sqrt,
Abs, sign).  The classes carry their derivative (``fdiff``), so ``relu'``,
``tanh''`` or the derivative of a user function are plain ``sympy.diff`` calls;
a derivative that is a Dirac delta (``step'``, ``sign'``) stays a
``DiracDelta`` and the limit pass handles it with Stein's lemma.

Conventions (they only matter on sets of measure zero):
    step(x) = 1 for x > 0, 1/2 at 0, 0 for x < 0;  sign(x) = 2 step(x) - 1.

Each builtin's numpy/numba implementations and what the limit pass knows of it are in its
registry entry (:mod:`tensorprog.nonlinearities`); ``_BUILTINS`` and ``NUMPY_IMPL`` here are views.
"""
from __future__ import annotations

import numpy as np
import sympy
from sympy import S

__all__ = [
    "relu", "step", "tanh", "sigmoid", "gelu", "silu", "softplus", "Phi",
    "BUILTIN_NAMES", "builtin", "derivative", "NUMPY_IMPL",
]


class _Coordinatewise(sympy.Function):
    """Base class: real-valued functions of real arguments with text/LaTeX names."""

    _latex_name = None

    def _eval_is_real(self):
        # Programs are real-valued throughout; answering without inspecting the arguments keeps
        # sympy's assumption queries (made inside diff, Mul, Add) from walking huge expressions.
        return True

    def _latex(self, printer):
        args = ", ".join(printer._print(a) for a in self.args)
        name = self._latex_name or r"\operatorname{%s}" % type(self).__name__
        return r"%s\left(%s\right)" % (name, args)


class step(_Coordinatewise):
    """Heaviside step: 1 for x > 0, 1/2 at 0, 0 for x < 0.  step' = delta."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        # Only numbers are evaluated: sign queries on symbolic arguments (sympy's assumption
        # system) would dominate the cost of deriving deep programs.
        if x.is_Number:
            return S.One if x > 0 else (S.Zero if x < 0 else S.Half)

    def fdiff(self, argindex=1):
        return sympy.DiracDelta(self.args[0])


class relu(_Coordinatewise):
    """relu(x) = max(x, 0).  relu' = step."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return x if x > 0 else S.Zero

    def fdiff(self, argindex=1):
        return step(self.args[0])


class tanh(_Coordinatewise):
    """Hyperbolic tangent (our own class: sympy's asks costly questions of its argument).  tanh' = 1 - tanh^2."""

    nargs = 1
    _latex_name = r"\tanh"

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sympy.tanh(x)
        if x.could_extract_minus_sign():
            return -cls(-x)

    def fdiff(self, argindex=1):
        return 1 - tanh(self.args[0]) ** 2

    def _eval_evalf(self, prec):
        return sympy.tanh(self.args[0]).evalf(prec)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return (sympy.exp(2 * x) - 1) / (sympy.exp(2 * x) + 1)


class sigmoid(_Coordinatewise):
    """Logistic sigmoid s(x) = 1 / (1 + exp(-x)).  s' = s (1 - s)."""

    nargs = 1
    _latex_name = r"\sigma"

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return S.Half

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sympy.exp(-x))

    def _eval_evalf(self, prec):
        return (1 / (1 + sympy.exp(-self.args[0]))).evalf(prec)


class Phi(_Coordinatewise):
    """Standard normal CDF Phi(x) = (1 + erf(x / sqrt 2)) / 2.  Phi' = exp(-x^2/2)/sqrt(2 pi)."""

    nargs = 1
    _latex_name = r"\Phi"

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return S.Half

    def fdiff(self, argindex=1):
        x = self.args[0]
        return sympy.exp(-x**2 / 2) / sympy.sqrt(2 * sympy.pi)

    def _eval_rewrite_as_erf(self, x, **kwargs):
        return (1 + sympy.erf(x / sympy.sqrt(2))) / 2

    def _eval_evalf(self, prec):
        return self.rewrite(sympy.erf).evalf(prec)


class gelu(_Coordinatewise):
    """GELU(x) = x Phi(x).  gelu' = Phi(x) + x exp(-x^2/2)/sqrt(2 pi)."""

    nargs = 1
    _latex_name = r"\operatorname{GELU}"

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return S.Zero

    def fdiff(self, argindex=1):
        x = self.args[0]
        return Phi(x) + x * sympy.exp(-x**2 / 2) / sympy.sqrt(2 * sympy.pi)

    def _eval_rewrite_as_erf(self, x, **kwargs):
        return x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2

    def _eval_evalf(self, prec):
        return self.rewrite(sympy.erf).evalf(prec)


class silu(_Coordinatewise):
    """SiLU (swish) silu(x) = x sigmoid(x).  silu' = s + x s (1 - s)."""

    nargs = 1
    _latex_name = r"\operatorname{SiLU}"

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return S.Zero

    def fdiff(self, argindex=1):
        x = self.args[0]
        s = sigmoid(x)
        return s + x * s * (1 - s)

    def _eval_evalf(self, prec):
        x = self.args[0]
        return (x / (1 + sympy.exp(-x))).evalf(prec)


class softplus(_Coordinatewise):
    """softplus(x) = log(1 + exp(x)).  softplus' = sigmoid."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_evalf(self, prec):
        return sympy.log(1 + sympy.exp(self.args[0])).evalf(prec)


def _leaky_relu(x, a):
    """leaky_relu(x, a) = a x + (1 - a) relu(x): linear plus relu, so limits reuse relu's rules."""
    return a * x + (1 - a) * relu(x)


def _identity(x):
    return x


# name -> (constructor, number of arguments), generated from the registry
# (tensorprog.nonlinearities).  The first argument is the coordinatewise input; any further ones
# are parameters (scalars).
from .nonlinearities import BUILTINS_VIEW as _BUILTINS  # noqa: E402


def builtin(name):
    """Return ``(constructor, arity)`` of a builtin function, or ``None``."""
    return _BUILTINS.get(name)


def __getattr__(name):
    # Sorted builtin names, computed on use: user-registered functions join the list.
    if name == "BUILTIN_NAMES":
        return tuple(sorted(n for n, e in _registry().items() if not e.user))
    raise AttributeError(name)


def _registry():
    from .nonlinearities import REGISTRY

    return REGISTRY


_FORMALS = sympy.symbols("t0:8", real=True)


def derivative(fn, arity, order=1):
    """The ``order``-th derivative of ``fn`` in its first argument, as a new callable.

    ``fn`` takes ``arity`` sympy arguments; the result does too: it is
    d^order/dt^order fn(t, p...) evaluated at the given arguments.
    """
    formals = _FORMALS[:arity]
    body = sympy.diff(fn(*formals), formals[0], order)

    def d(*args):
        return body.xreplace(dict(zip(formals, args)))

    return d


def _np_step(x):
    return np.where(x > 0, 1.0, np.where(x < 0, 0.0, 0.5))


def _np_sigmoid(x):
    # scipy's logistic ufunc: one pass, no overflow (the hand-written sign split was 3 passes and a
    # third of gru.tp's evaluation time)
    from scipy.special import expit

    return expit(x)


def _np_Phi(x):
    from scipy.special import ndtr

    return ndtr(x)


def _np_gelu(x):
    return x * _np_Phi(x)


def _np_silu(x):
    return x * _np_sigmoid(x)


def _np_softplus(x):
    return np.logaddexp(0.0, x)


def _np_dirac(x, *args):
    raise ValueError("a Dirac delta (the derivative of step or sign) cannot be evaluated pointwise")


# sympy head name -> numpy implementation (lambdify namespace of the simulator), generated from
# the registry; a Dirac delta has no pointwise value.
from .nonlinearities import NUMPY_VIEW as NUMPY_IMPL  # noqa: E402

NUMPY_IMPL["DiracDelta"] = _np_dirac

from .nonlinearities import DATA_NUMPY_VIEW as DATA_NUMPY_IMPL  # noqa: E402
from .nonlinearities import builtins as _builtins  # noqa: E402,F401  (registers the builtins)
