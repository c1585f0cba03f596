"""Singularities of Gaussian integrands: which are integrable, which are refused (issue 18).

An integrand F(u) can blow up only where a factor does: a negative power |t|^e, t^e (e < 0) or a
log|t|, of a base t that is affine in u (or a function g(t) of an affine t with g(0) = 0, such as
tanh(t) in 1/tanh(t)).  The set t = 0 is a hyperplane, and whether E F(u) is finite depends on how
F behaves across it, in one dimension: write u_k = (s - beta - sum_{j != k} alpha_j u_j) / alpha_k
(k with alpha_k != 0) so that t = s, and take the leading term of F as s -> 0+ and as s -> 0-,
the other variables generic:

    F ~ c_+- |s|^nu (log|s|)^m,

where nu is the order of the pole of the power minus the order of the zero of its prefactor
(tanh(x) x^-4 ~ x^-3: nu = -3; tanh(x)^2 x^-2 ~ 1: nu = 0).  The integral of |s|^nu |log s|^m
near 0 is finite iff nu > -1, so nu <= -1 is refused (IntegrationError): "diverges" when the two
sides do not cancel, "is undefined (a principal value at best)" when they are opposite
(c_- = -c_+, the odd case: x^-1, tanh(x) x^-2).  -1 < nu < 0 or a log factor is an integrable
singularity, integrated split at it (integrals._quad1d); nu >= 0 without a log is a removable one
(sin(x)/x) and needs nothing.  If sympy cannot find the leading term, the rule falls back to the
power alone (|t|^e with e <= -1 is refused).
"""
from __future__ import annotations

import sympy


class IntegrationError(ValueError):
    pass


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


def _affine(t, variables):
    lin = linear_in(t, variables)
    return lin if lin is not None and any(c != 0 for c in lin[0]) else None


def _unwrap_power(p):
    """(base, exponent) of a power, through (t^2)^(-1/2) = |t|^-1 and Abs."""
    base, e = p.base, p.exp
    while isinstance(base, sympy.Pow) and base.exp.is_number:
        base, e = base.base, e * base.exp
    while isinstance(base, sympy.Abs):
        base = base.args[0]
    return base, e


def _candidates(F, variables):
    """{t: the factor that blows up there}: affine t at whose zero a factor of F may be infinite."""
    found = {}
    for p in F.atoms(sympy.Pow):
        base, e = _unwrap_power(p)
        if not (e.is_number and e.is_negative):
            continue
        if _affine(base, variables):
            found.setdefault(base, p)
        elif isinstance(base, sympy.Function) and len(base.args) == 1 and _affine(base.args[0], variables):
            try:
                vanishes = base.func(sympy.S.Zero) == 0
            except Exception:  # a function sympy cannot evaluate at 0: no claim
                vanishes = False
            if vanishes:
                found.setdefault(base.args[0], p)
    for f in F.atoms(sympy.log):
        arg = f.args[0]
        while isinstance(arg, (sympy.Abs, sympy.Pow)):
            arg = arg.args[0]
        if _affine(arg, variables):
            found.setdefault(arg, f)
    return found


_S = sympy.Symbol("s_", positive=True)


def _kinked_at(G):
    """True if G has a kinked function (relu, abs, step, ...) of an argument that vanishes at
    s = 0: a Taylor series of it there is wrong on each side (relu(s) is s, not s/2 + ...)."""
    from .. import nonlinearities as NL

    kinked = {"Max", "Min", "Heaviside", "DiracDelta", "Abs", "sign"} | NL.NONSMOOTH_VIEW
    for f in G.atoms(sympy.Function):
        if type(f).__name__ in kinked and any(_S in a.free_symbols and a.subs(_S, 0) == 0 for a in f.args):
            return True
    return False


def _one_sided(F, variables, t, side):
    """(c, nu, m) with F ~ c s^nu (log s)^m as t = side * s -> 0+, the other variables generic, or
    None if that is not known: a Puiseux/Laurent series in s (sympy's, through the registry
    classes' derivatives) up to O(s), whose leading term's coefficient must be provably nonzero."""
    alpha, beta = linear_in(t, variables)
    k = next(j for j, a in enumerate(alpha) if a != 0)
    rest = beta + sum(a * v for j, (a, v) in enumerate(zip(alpha, variables)) if j != k)
    G = F.subs(variables[k], (side * _S - rest) / alpha[k])
    if _kinked_at(G):
        return None
    expansion = G.series(_S, 0, 1).removeO()
    if expansion == 0:
        return sympy.S.Zero, sympy.oo, 0          # bounded: O(s)
    lead = expansion.as_leading_term(_S)
    if lead.is_Add:
        return None
    powers = lead.as_powers_dict()
    nu = powers.pop(_S, sympy.S.Zero)
    m = powers.pop(sympy.log(_S), sympy.S.Zero)
    coeff = sympy.Mul(*[b ** e for b, e in powers.items()])
    if not nu.is_number or not m.is_number or _S in coeff.free_symbols:
        return None
    if not coeff.free_symbols:   # an unevaluated f(0) could be 0: check its value
        value = coeff.evalf()
        if not value.is_number or value == 0:
            return None
    return coeff, nu, m


def _refuse(what, t, why):
    raise IntegrationError(f"the Gaussian expectation of {what} {why[0]}: its singularity at {t} = 0 is not "
                           f"integrable ({why[1]})")


def singular_points(F, variables):
    """The affine arguments t of F at whose zero F is unbounded but integrable (see the module
    docstring); raises IntegrationError if a singularity is not integrable."""
    out = []
    for t, factor in _candidates(F, variables).items():
        try:
            sides = [_one_sided(F, variables, t, side) for side in (1, -1)]
        except Exception:  # sympy's series machinery on an unusual function: the rule below
            sides = [None, None]
        if None in sides:
            if isinstance(factor, sympy.log):
                out.append(t)
                continue
            base, e = _unwrap_power(factor)
            if e <= -1:
                odd = e.is_integer and e.is_odd and not isinstance(factor.base, sympy.Abs)
                _refuse(factor, t, ("is undefined (a principal value at best)" if odd else "diverges",
                                    f"|t|^{e} with {e} <= -1"))
            out.append(t)
            continue
        (c_plus, nu_plus, m_plus), (c_minus, nu_minus, m_minus) = sides
        nu = min(nu_plus, nu_minus)
        if nu <= -1:
            odd = nu_plus == nu_minus and m_plus == m_minus and sympy.simplify(c_plus + c_minus) == 0
            lead = _S ** nu * sympy.log(_S) ** max(m_plus, m_minus)
            shown = str(lead.subs(_S, sympy.Abs(t)) if not odd else
                        (_S ** nu).subs(_S, t) * sympy.log(sympy.Abs(t)) ** m_plus)
            _refuse(F, t, ("is undefined (a principal value at best)" if odd else "diverges",
                           f"the integrand behaves like {shown} there, of order {nu} <= -1"))
        if nu < 0 or m_plus != 0 or m_minus != 0:
            out.append(t)
    return out


def is_integrable(F, variables):
    """False if F has a singularity that ``singular_points`` refuses (for rules, such as parity,
    that would otherwise give a finite value to a divergent integral)."""
    if not _candidates(F, variables):
        return True
    try:
        singular_points(F, variables)
    except IntegrationError:
        return False
    return True
