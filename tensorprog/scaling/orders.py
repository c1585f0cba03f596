"""Width exponents ("orders") of expressions: the calculus behind ``tpc scaling``.

An *order* k of a quantity says that it is Theta(n^k) as the width n grows: for a vector, its
typical coordinate (root mean square) is Theta(n^k); for a scalar, its value.  Orders are sympy
numbers: a rational k, ``-oo`` for "zero" (or exponentially small) and ``+oo`` for "grows faster
than any power" (exp of a growing argument).

The calculus is that of Tensor Programs IV in generic position (no cancellation between terms of
different origin):

    order(a + b) = max(order a, order b)          order(a b) = order a + order b
    order(a^p)   = p order a                      order(n)   = 1
    order(phi(a)) = 0                  if order a = 0 (a Theta(1) argument gives a Theta(1) value)
                  = g order a          if order a > 0 (g = phi's growth degree at infinity)
                  = m order a          if order a < 0 (m = phi's order of vanishing at 0; 0 if phi(0) != 0)

Each nonlinearity's (m, g) is its ``asymptotics`` in the registry (tensorprog/nonlinearities);
a function without one makes the order *undecided* (:class:`Undecided`, with the reason).
"""
from __future__ import annotations

import sympy

from ..ir.core import WIDTH

ZERO = sympy.S.NegativeInfinity      # the order of 0
INF = sympy.S.Infinity               # faster than any power of n


class Undecided(Exception):
    """An order the calculus cannot decide; ``reason`` says why."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def omax(*orders):
    """The order of a generic sum."""
    return max(orders, default=ZERO)


def oadd(*orders):
    """The order of a product (0 times anything is 0)."""
    if any(o == ZERO for o in orders):
        return ZERO
    total = sympy.S.Zero
    for o in orders:
        total += o
    return total


def oscale(p, o):
    """The order of x^p for x of order o (p a number)."""
    if p == 0:
        return sympy.S.Zero
    if o == ZERO:
        return ZERO if p > 0 else INF
    return p * o


def _asymptotics(head):
    """(m, g) of a sympy function head from the nonlinearity registry, or Undecided."""
    from ..nonlinearities import REGISTRY

    name = head.__name__
    for nl in REGISTRY.values():
        if nl.sympy_name == name and nl.asymptotics:
            return nl.asymptotics
    raise Undecided(f"the behaviour of {name} at 0 and at infinity is not known (register it with "
                    "asymptotics=(m, g))")


def _negative_square(a):
    """True for -c x^2 y^4 ... (c > 0): a quantity that is never positive."""
    coeff, rest = a.as_coeff_Mul()
    return coeff < 0 and all(f.is_Pow and f.exp.is_even or f.is_positive for f in sympy.Mul.make_args(rest))


def apply_function(m_g, k):
    """The order of phi(a) for a of order k, phi with asymptotics (m, g)."""
    m, g = m_g
    if k == 0:
        return sympy.S.Zero
    if k == ZERO:
        return ZERO if m > 0 else sympy.S.Zero
    return oscale(g, k) if k > 0 else (sympy.S.Zero if m == 0 else oscale(m, k))


def order(expr, orders):
    """The order of a sympy expression whose free symbols have the given orders (WIDTH has order 1)."""
    cache = {}

    def walk(e):
        if e in cache:
            return cache[e]
        if e in orders:
            out = orders[e]
        elif e == WIDTH:
            out = sympy.S.One
        elif e.is_Number:
            out = ZERO if e == 0 else sympy.S.Zero
        elif e.is_Add:
            out = omax(*[walk(a) for a in e.args])
        elif e.is_Mul:
            out = oadd(*[walk(a) for a in e.args])
        elif e.is_Pow:
            base, p = e.args
            if not p.is_Number:
                raise Undecided(f"a power with a varying exponent: {sympy.sstr(e)}")
            out = oscale(p, walk(base))
        elif isinstance(e, (sympy.Max, sympy.Min)):
            out = omax(*[walk(a) for a in e.args])
        elif isinstance(e, sympy.Piecewise):
            out = omax(*[walk(piece) for piece, _ in e.args])
        elif isinstance(e, sympy.exp):
            k = walk(e.args[0])
            # exp(-x^2 ...) of a growing x vanishes (Gaussian densities in derivatives); else it explodes
            out = sympy.S.Zero if k <= 0 else (ZERO if _negative_square(e.args[0]) else INF)
        elif isinstance(e, sympy.log):
            k = walk(e.args[0])
            if k == 0:
                out = sympy.S.Zero
            else:
                raise Undecided("log of a quantity that grows or vanishes with n (a log n factor)")
        elif isinstance(e, sympy.Function) and len(e.args) == 1:
            out = apply_function(_asymptotics(type(e)), walk(e.args[0]))
        elif isinstance(e, sympy.Function):
            ks = [walk(a) for a in e.args]
            if all(k == 0 for k in ks):
                out = sympy.S.Zero
            else:
                raise Undecided(f"{type(e).__name__} of arguments of orders {ks}")
        else:
            raise Undecided(f"an expression the order calculus does not know: {sympy.sstr(e)}")
        cache[e] = out
        return out

    return walk(sympy.sympify(expr))


def order_of_number(value):
    """The order of a width-dependent number c n^k (+ lower terms): its leading exponent."""
    return order(sympy.sympify(value), {})


def show(o):
    """An order as text: 1/2, -1, 0, 'zero', 'oo'."""
    if o == ZERO:
        return "zero"
    if o == INF:
        return "oo"
    return sympy.sstr(o)
