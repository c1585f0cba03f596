"""``register_nonlinearity``: user-defined coordinatewise functions (numeric, optionally with closed forms)."""
from __future__ import annotations

import re

import numpy as np
import sympy


def _make_class(name, numpy_fn, derivative_cls):
    """A sympy function class ``name`` of one argument: evaluated numerically by ``numpy_fn``,
    differentiated to ``derivative_cls`` (or an error when no derivative was given)."""

    def fdiff(self, argindex=1):
        if derivative_cls is None:
            raise ValueError(f"no derivative was registered for the function {name}")
        return derivative_cls(self.args[0])

    def _eval_evalf(self, prec):
        x = self.args[0]
        if x.is_Number:
            return sympy.Float(float(numpy_fn(np.float64(float(x)))), prec)
        return None

    from ..functions import _Coordinatewise

    return type(name, (_Coordinatewise,), {"nargs": 1, "fdiff": fdiff, "_eval_evalf": _eval_evalf,
                                            "__module__": __name__})


def register_nonlinearity(name, numpy, derivative=None, second_derivative=None, closed_form=None,
                          pair_closed_forms=None, doc="", asymptotics=()):
    """Make ``name`` a function ``.tp`` programs can call, computed by ``numpy`` (a vectorised
    function of a float64 array).

    ``derivative`` (and ``second_derivative``) are numpy implementations of f' (and f''), needed
    for programs that take primes (``name'``).  The function has no closed forms: expectations
    with it are computed by quadrature or Monte Carlo, unless ``closed_form = (formula text,
    rule)`` gives E[f(u)] for u ~ N(m, s) as ``rule(m, s)`` (a sympy expression of the symbols m
    and s): then a single-Gaussian expectation of f is that formula.  ``pair_closed_forms`` maps
    the name of a registered function g (or ``name`` itself) to ``(formula text, rule)`` with
    ``rule(a, b, c)`` = E[f(u) g(v)] for a centred Gaussian pair with Var u = a, Var v = b and
    Cov(u, v) = c.  ``asymptotics = (m, g)``: f(x) ~ x^m as x -> 0 (m = 0 when f(0) != 0) and
    |f(x)| ~ |x|^g as |x| -> oo, for ``tpc scaling`` (without it, width exponents through f are
    reported as undecided).  Returns the registry entry.
    """
    from . import REGISTRY, Nonlinearity, register

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or ""):
        raise ValueError(f"not a function name: {name!r}")
    if name in REGISTRY and not REGISTRY[name].user:
        raise ValueError(f"{name!r} is a builtin function and cannot be replaced")
    for other in pair_closed_forms or {}:
        if other != name and other not in REGISTRY:
            raise ValueError(f"pair_closed_forms: {other!r} is not a registered function")
    impls = [(name, numpy)]
    if derivative is not None:
        impls.append((f"{name}_d1", derivative))
        if second_derivative is not None:
            impls.append((f"{name}_d2", second_derivative))
    cls = None
    for cname, fn in reversed(impls):  # innermost derivative first: each class differentiates to the next
        cls = _make_class(cname, fn, cls)
        single = tuple(closed_form) if (closed_form and cname == name) else ()
        pairs = tuple((other, text, rule) for other, (text, rule) in (pair_closed_forms or {}).items()
                      if cname == name)
        entry = register(Nonlinearity(cname, 1, cls, cname, numpy=fn, doc=(doc, ""), single=single, pairs=pairs,
                                      asymptotics=tuple(asymptotics) if cname == name else (), user=True),
                         replace=True)
    return entry
