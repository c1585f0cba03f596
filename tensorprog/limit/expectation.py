"""Gaussian expectations of expressions in atoms: linearity, independence, projection, closed forms.

``Expectations.expect(f, axes)`` returns E[f] as a sympy expression of quantity
references (or a number).  The steps, each exact:

1. linearity: expand the top level of f (never inside functions) and pull out
   factors without atoms;
2. independence: split each product into factors over independent Gaussian
   groups (different matrices, W vs W^T, initial blocks), E[fg] = E[f] E[g];
3. projection: every nonlinear function's argument that is affine in atoms is
   one Gaussian variable u = c + sum_a w_a Z_a, so E[...] is an integral over as
   many variables as there are distinct arguments (not atoms), with
   Cov(u, u') = sum w_a w'_b Cov(Z_a, Z_b);
4. a closed form from the rule table (``closed_forms.py``) if one applies, else a
   numeric :class:`~tensorprog.limit.symbols.Integral` quantity.

Every non-trivial result is a named quantity, memoised on its integrand with
canonical index symbols, so E[f(Z(i)) f(Z(j))] is derived once for all pairs and
shared wherever it recurs.
"""
from __future__ import annotations

import sympy

from .. import functions as _functions  # noqa: F401  (registers the builtin nonlinearities)
from .. import nonlinearities as NL
from sympy import DiracDelta, Derivative

from . import closed_forms, dag, printers, templates
from ..ir.core import Formals
from .symbols import (INDEX, Integral, SteinCoefficient, atom_of, atoms_in, distinct_subexpressions, index_symbols_in,
                      is_atom, is_qref, reindex)


class LimitError(Exception):
    """A problem computing a limit; the driver attaches the instruction's source position."""


def canonical(expr, axes):
    """Rename the index symbols of ``expr`` to i, j, ... in order: (renamed, their axes, original symbols)."""
    syms = index_symbols_in(expr)
    canon = dag.xreplace(expr, {s: INDEX[k] for k, s in enumerate(syms) if s != INDEX[k]})
    return canon, tuple(axes[INDEX.index(s)] for s in syms), syms


def normalize(f):
    """Expand products inside function arguments, so equal integrands written differently share one key."""
    expanded = {}

    def fix(e):
        if isinstance(e, sympy.Function) and not isinstance(e, sympy.core.function.AppliedUndef):
            return e.func(*[dag.expand_mul(a, expanded) if atoms_in(a) else a for a in e.args])
        return e
    return dag.rebuild(f, fix)


def expand_top(f):
    """Distribute products over sums at the top level only (function arguments stay intact)."""
    return sympy.expand(f, deep=False, mul=True, multinomial=True, power_exp=False, power_base=False, log=False)


def _hold_linear_combinations(f):
    """Hide sums of several atoms that are also arguments of functions behind placeholder symbols.

    (b + z) exp(-(b + z)^2) is u exp(-u^2) over the one Gaussian u = b + z (a 1-D closed form);
    expanding the prefactor first would give b exp(-(b+z)^2) + z exp(-(b+z)^2), each over the two
    variables b and b + z.  Returns (f with placeholders, {placeholder: sum}); ({}) when nothing to hold.
    """
    inside = set()
    for node in distinct_subexpressions(f):
        if isinstance(node, sympy.Function) and not isinstance(node, sympy.core.function.AppliedUndef):
            for arg in node.args:
                inside.update(e for e in distinct_subexpressions(arg)
                              if e.is_Add and len(atoms_in(e)) > 1 and _linear(e) is not None)
    if not inside:
        return f, {}
    # created in a canonical order: the placeholders' order decides the order of the terms, hence
    # of the quantities and of floating-point sums, which must not depend on the hash seed
    hold = {e: sympy.Dummy("held") for e in sorted(inside, key=sympy.default_sort_key)}
    held = dag.xreplace(f, hold)
    return held, {d: e for e, d in hold.items()}


def vanishes_on_delta(term) -> bool:
    """Whether a product term is 0 because a factor vanishes where a Dirac delta in it is supported.

    g(x) delta(x - c) = g(c) delta(x - c) for g continuous at c; when g(c) = 0 the term is 0
    (e.g. x^2 delta(x) = 0, so step(a) a^2 has derivative 2 a step(a) almost surely).  For each
    delta factor delta(a Z + b) (Z an atom, a free of atoms) the other factors g are evaluated at
    Z = -b/a; a delta power delta^k is delta * delta^(k-1), so the remaining deltas are left out of g.
    Only an exact 0 counts: a finite nonzero g(c), or g undefined there, leaves the term as it is.
    """
    factors = sympy.Mul.make_args(term)
    for k, fac in enumerate(factors):
        base = fac.base if fac.is_Pow and fac.exp.is_Integer and fac.exp > 0 else fac
        if not isinstance(base, DiracDelta) or len(base.args) != 1:
            continue
        arg = base.args[0]
        for z in sorted(atoms_in(arg), key=sympy.default_sort_key):
            a = arg.diff(z)
            if a == 0 or atoms_in(a):
                continue
            root = sympy.expand(-(arg - a * z) / a)   # arg is linear in z: a is free of atoms
            rest = [f for j, f in enumerate(factors) if j != k and not f.has(DiracDelta)]
            if not rest:
                break
            g = sympy.Mul(*rest).xreplace({z: root})
            if g == 0:
                return True
            break
    return False


class Expectations:
    """The expectation engine of one derivation; ``owner`` supplies atom covariances and quantities."""

    def __init__(self, owner):
        self.owner = owner
        self._memo = {}
        self._component_memo = {}
        self._derivative_memo = {}

    # ------------------------------------------------------------------ E[f]

    def expect(self, f, axes):
        f = sympy.sympify(f)
        if not atoms_in(f):
            return f
        if templates.worth_it(f):
            # keyed by structure and names: the integrand over stand-ins, normalised once per structure
            stand_in, renaming = templates.placeholders(f)
            if stand_in not in _NORMALIZED:
                _NORMALIZED[stand_in] = normalize(stand_in)
            g, gaxes, syms = canonical(_NORMALIZED[stand_in], axes)
            key = (g, gaxes, renaming.signature)
            if key not in self._memo:
                self._memo[key] = self._expect_sum_by_template(g, renaming, gaxes)
            return reindex(self._memo[key], syms)
        g, gaxes, syms = canonical(normalize(f), axes)
        key = (g, gaxes)
        if key not in self._memo:
            self._memo[key] = self._expect_sum(g, gaxes, self._component)
        return reindex(self._memo[key], syms)

    def _expect_sum_by_template(self, stand_in, renaming, axes):
        """``_expect_sum`` of the integrand ``renaming.back(stand_in)`` through the template of its
        structure: the expansion, the split into independent factors and the combination are
        replayed; each factor's value is the real component's (its own memo), checked against what
        the template saw: a number stays that number, a symbolic value stays symbolic."""
        key = (stand_in, len(axes))
        variants = _SUM_TEMPLATES.setdefault(key, [])
        for events, result in variants:
            values = {}
            for component, seen in events:
                val = self._component(renaming.back(component), axes)
                if isinstance(seen, _ComponentValue) and not val.is_number:
                    values[seen] = val
                elif val != seen:
                    break
            else:
                return dag.xreplace(renaming.back(result), values)
        events, values = [], {}

        def component(f, axes):
            val = self._component(renaming.back(f), axes)
            if not val.is_number:
                values[_component_value(len(events))] = val
                val = _component_value(len(events))
            events.append((f, val))
            return val
        result = self._expect_sum(stand_in, axes, component)
        if len(variants) < 4:
            variants.append((tuple(events), result))
        return dag.xreplace(renaming.back(result), values)

    def _expect_sum(self, g, axes, component):
        total = []
        held, back = _hold_linear_combinations(g)
        for term in sympy.Add.make_args(expand_top(held)):
            term = dag.xreplace(term, back)
            if dag.has(term, DiracDelta) and vanishes_on_delta(term):
                continue
            atoms = atoms_in(term)
            if not atoms:
                total.append(term)
                continue
            coeff, rest = term.as_independent(*atoms, as_Add=False)
            total.append(coeff * self._expect_product(rest, axes, component))
        return sympy.Add(*total)

    def _expect_product(self, rest, axes, component):
        """E of a product: one factor per group of dependent atoms (independent groups factorise)."""
        factors = sympy.Mul.make_args(rest)
        comps = []  # list of (set of groups, [factors])
        for fac in factors:
            groups = {atom_of(a).group for a in atoms_in(fac)}
            merged = [c for c in comps if c[0] & groups]
            for c in merged:
                comps.remove(c)
                groups |= c[0]
            comps.append((groups, [fac for c in merged for fac in c[1]] + [fac]))
        result = sympy.S.One
        for _, facs in comps:
            val = component(sympy.Mul(*facs), axes)
            if val == 0:
                return sympy.S.Zero
            result *= val
        return result

    def _component(self, f, axes):
        g, gaxes, syms = canonical(f, axes)
        key = (g, gaxes)
        if key not in self._component_memo:
            self._component_memo[key] = self._evaluate_component(g, gaxes)
        return reindex(self._component_memo[key], syms)

    def _evaluate_component(self, f, axes):
        if templates.worth_it(f):
            return self._evaluate_component_by_template(f, axes)
        F, variables, mean, cov = self.project(f, axes)
        closed = None
        if not dag.has(F, Derivative):
            closed = closed_form(F, len(variables), mean, cov)
        if closed is not None:
            from .derive import is_cheap
            if is_cheap(closed):
                return closed
            return self.owner.moment_quantity(closed, axes, f, method=_closed_form_name(F, len(variables)))
        return self._integral(f, F, variables, mean, cov, axes)

    def _integral(self, f, F, variables, mean, cov, axes):
        if dag.has(F, DiracDelta):
            # Printed with the program's variable names (atoms print as Z[x], Ẑ[W@x]), never internal ids.
            raise LimitError(f"cannot integrate a Dirac delta numerically: E[{printers.text(f, {})}]")
        integral = Integral(F, tuple(variables), tuple(mean), cov)
        return self.owner.moment_quantity(integral, axes, f, method=f"numeric, {len(variables)}-dimensional")

    def _evaluate_component_by_template(self, f, axes):
        """``_evaluate_component`` through templates of f's structure: its projection (F, forms) and,
        keyed by f with its Gaussian's mean and covariance entries over stand-ins, its closed form
        (renamed back without rebuilding its special functions and powers, the largest cost of a
        deep network's derivation)."""
        from .derive import is_cheap
        stand_in, renaming = templates.placeholders(f)
        if stand_in not in _PROJECTION_TEMPLATES:
            _PROJECTION_TEMPLATES[stand_in] = self._projection(stand_in)
        F_t, forms_t = _PROJECTION_TEMPLATES[stand_in]
        back = renaming.back
        forms = [(back(c0), {renaming.back_atom(a): back(w) for a, w in ws.items()}) for c0, ws in forms_t]
        mean, entries = self._moment_entries(forms, axes)
        entries = tuple(entries)
        d = len(forms)
        variables = list(U[:d])
        if dag.has(F_t, Derivative):
            return self._integral(f, back(F_t), variables, mean, _symmetric(d, entries), axes)
        joint, ranks = renaming.extended(tuple(mean) + entries)
        key = (stand_in, ranks, tuple(joint.forth(m) for m in mean), tuple(joint.forth(e) for e in entries))
        if key not in _CLOSED_TEMPLATES:
            closed = closed_form(joint.forth(back(F_t)), d, list(key[2]), _symmetric(d, key[3]))
            _CLOSED_TEMPLATES[key] = (closed, closed is not None and is_cheap(closed))
        closed, cheap = _CLOSED_TEMPLATES[key]
        if closed is None:
            return self._integral(f, back(F_t), variables, mean, _symmetric(d, entries), axes)
        closed = joint.back(closed)
        if cheap:
            return closed
        return self.owner.moment_quantity(closed, axes, f, method=_closed_form_name(back(F_t), d))

    # ------------------------------------------------------------------ projection

    def project(self, f, axes):
        """Rewrite f(atoms) as F(u) over Gaussian variables u (affine forms of atoms): (F, u, mean, cov)."""
        F, coeffs = self._projection(f)
        return (F, list(U[:len(coeffs)])) + self._moments(coeffs, axes)

    @staticmethod
    def _projection(f):
        """(F, forms): f(atoms) = F(u_0, ..., u_{d-1}) with u_p = c_p + sum_a w_pa a, forms[p] = (c_p, {a: w_pa})."""
        atoms = sorted(atoms_in(f), key=sympy.default_sort_key)
        forms = {}  # form -> (variable, (constant, {atom: weight}))

        def var(form, parts):
            key = sympy.expand(form)
            if key not in forms:
                forms[key] = (U[len(forms)], parts)
            return forms[key][0]

        seen = {}

        def visit(e):
            # Memoised: f is a DAG with much sharing (unrolled training steps), walked as a tree
            # it is exponentially large.
            if e in seen:
                return seen[e]
            if not atoms_in(e):
                out = e
            else:
                # An affine combination of atoms (an atom, c * atom, a sum) is one Gaussian
                # variable; a non-affine expression is rebuilt from its visited parts, so e.g.
                # exp(-(a + b)^2) is exp(-u^2) over the single variable u = a + b.
                parts = _linear(e)
                out = var(e, parts) if parts is not None else e.func(*[visit(a) for a in e.args])
            seen[e] = out
            return out

        F = visit(f)
        if len(forms) > len(atoms):
            # More forms than atoms (e.g. a + b/6 and b in one integrand): the atoms themselves
            # are the smaller set of variables.
            forms = {a: (U[k], (sympy.S.Zero, {a: sympy.S.One})) for k, a in enumerate(atoms)}
            F = dag.xreplace(f, {a: v for a, (v, _) in forms.items()})
        return F, [parts for _, parts in forms.values()]

    def _moments(self, coeffs, axes):
        """(mean, cov) of the variables u_p = c_p + sum_a w_pa a of ``coeffs`` (atom means and covariances
        from the owner)."""
        mean, entries = self._moment_entries(coeffs, axes)
        return mean, _symmetric(len(coeffs), entries)

    def _moment_entries(self, coeffs, axes):
        """(mean, [Cov(u_p, u_q) for p <= q in row order]): as :meth:`_moments`, without the matrix.

        Terms that are 0, and weights that are 1, are left out of the sums and products: adding 0
        or multiplying by 1 gives sympy's same expression, at a fraction of the cost."""
        one, zero = sympy.S.One, sympy.S.Zero
        mean = []
        for c0, ws in coeffs:
            m = zero
            for a, w in ws.items():
                am = self.owner.atom_mean(a)
                if am is not zero:
                    m += am if w is one else w * am
            mean.append(c0 + m)
        d = len(coeffs)
        entries = []
        atom_cov = {}

        def c(a, b):
            if (a, b) not in atom_cov:
                atom_cov[(a, b)] = atom_cov[(b, a)] = self.owner.atom_cov(a, b, axes)
            return atom_cov[(a, b)]

        for p in range(d):
            for q in range(p, d):
                terms = []
                for a, wa in coeffs[p][1].items():
                    for b, wb in coeffs[q][1].items():
                        w = wa * wb
                        cab = c(a, b)
                        terms.append(cab if w is one else w * cab)
                entries.append(terms[0] if len(terms) == 1 else sympy.Add(*terms))
        return mean, entries

    # ------------------------------------------------------------------ E[dZ/dZhat]

    def derivative(self, f, atom, axes):
        """E[d f / d atom]: (expression, method, d f / d atom).  Smooth: sympy's derivative; kinks: Stein."""
        key = (f, atom)
        if key in self._derivative_memo:
            return self._derivative_memo[key]
        d = _derivative_by_template(f, atom)
        if d == 0:
            out = (sympy.S.Zero, "derivative is 0", d)
        elif not dag.has(d, DiracDelta, Derivative):
            out = (self.expect(d, axes), "derivative (sympy)", d)
        else:
            out = (self._stein(f, atom, axes), "Stein's lemma", d)
        self._derivative_memo[key] = out
        return out

    def _stein(self, f, atom, axes):
        """E[grad f] = C^+ E[Z f] over the atoms of ``atom``'s group that f depends on."""
        group = atom_of(atom).group
        same = sorted((a for a in atoms_in(f) if atom_of(a).group == group), key=sympy.default_sort_key)
        moments = [self.expect(a * f, axes) for a in same]
        if all(m == 0 for m in moments):
            return sympy.S.Zero
        cov = sympy.Matrix(len(same), len(same), lambda p, q: self.owner.atom_cov(same[p], same[q], axes))
        coef = SteinCoefficient(same.index(atom), cov, tuple(moments))
        return self.owner.stein_quantity(coef, axes, ("d", f, atom))


_SUM_TEMPLATES = templates.table("sum")                 # (integrand, number of axes) -> [(events, result)]
_PROJECTION_TEMPLATES = templates.table("projection")   # integrand -> (F, forms)
_DERIVATIVE_TEMPLATES = templates.table("derivative")   # (expression, atom) -> derivative
_CLOSED_TEMPLATES = templates.table("closed form")      # (integrand, means, cov entries) -> (closed form, cheap)
_NORMALIZED = templates.table("normalized")             # integrand -> normalize(integrand)
# (all over stand-ins)


class _ComponentValue(sympy.Symbol):
    """The value of the k-th component a sum template asked for, when it is not a number."""


_COMPONENT_VALUES = []


def _component_value(k):
    while len(_COMPONENT_VALUES) <= k:
        _COMPONENT_VALUES.append(_ComponentValue(f"V~{len(_COMPONENT_VALUES)}"))
    return _COMPONENT_VALUES[k]


def _derivative_by_template(f, atom):
    """``dag.diff(f, atom)`` through the template of f's structure (the chain rule is the same at every layer)."""
    if not templates.worth_it(f):
        return dag.diff(f, atom)
    stand_in, renaming = templates.placeholders(f)
    key = (stand_in, renaming.forth(atom))
    if key not in _DERIVATIVE_TEMPLATES:
        _DERIVATIVE_TEMPLATES[key] = dag.diff(*key)
    return renaming.back(_DERIVATIVE_TEMPLATES[key])


def _symmetric(d, entries):
    """The symmetric d x d sympy matrix with upper triangle ``entries`` (row by row)."""
    cov = sympy.zeros(d, d)
    it = iter(entries)
    for p in range(d):
        for q in range(p, d):
            cov[p, q] = cov[q, p] = next(it)
    return cov


def _linear(expr):
    """(c, {atom: w}) with expr = c + sum w * atom and c, w free of atoms; None if expr is not affine."""
    if is_atom(expr):
        return sympy.S.Zero, {expr: sympy.S.One}
    if not atoms_in(expr):
        return expr, {}
    if expr.is_Add:
        c0, ws = sympy.S.Zero, {}
        for t in expr.args:
            part = _linear(t)
            if part is None:
                return None
            c0 += part[0]
            for a, w in part[1].items():
                ws[a] = ws.get(a, sympy.S.Zero) + w
        return c0, {a: w for a, w in ws.items() if w != 0}
    if expr.is_Mul:
        dep = [t for t in expr.args if atoms_in(t)]
        if len(dep) != 1:
            return None
        const = sympy.Mul(*[t for t in expr.args if t is not dep[0]])
        part = _linear(dep[0])
        if part is None:
            return None
        return const * part[0], {a: const * w for a, w in part[1].items()}
    return None


# Canonical names of the projected Gaussian variables (fixed, so that equal shapes share cache keys),
# and the placeholders of the closed-form cache; created on demand.
U = Formals("u")
_S = {}
_M = Formals("M")


def _s(p, q):
    if (p, q) not in _S:
        _S[(p, q)] = sympy.Symbol(f"S{p}_{q}", real=True)
    return _S[(p, q)]
_CLOSED_CACHE: dict = {}


# Functions the rule table knows (with polynomials).  An integrand with any other function
# (tanh, sigmoid, a user function, ...) can only have a closed form by symmetry, which is
# checked directly: handing it to the table would expand it for nothing.
_TABLE_FUNCTIONS = NL.TABLE_VIEW  # live: user-registered closed forms join it


def _table_can_apply(F):
    return all(type(f).__name__ in _TABLE_FUNCTIONS for f in distinct_subexpressions(F)
               if isinstance(f, sympy.Function) and not is_qref(f))


def _odd(F, d, mean):
    """E[F(u)] = 0 when u is centred and F(-u) = -F(u)."""
    if any(m != 0 for m in mean):
        return False
    # Structural only (no expand: integrands after training steps are large).
    if dag.parity(F, U[:d]) != dag.ODD:
        return False
    # An odd F with a non-integrable singularity (x^-1, tanh(x) x^-4) has no mean: the integrator refuses it.
    from ..numeric.singular import is_integrable
    return is_integrable(F, tuple(U[:d]))


def closed_form(F, d, mean, cov):
    """The table's closed form of E[F(u)], u ~ N(mean, cov), or None.

    Looked up by shape: the covariance and mean entries are replaced by placeholders
    (keeping which entries are zero), so the same integrand at every layer of a deep
    network asks the rule table once.
    """
    if d > 16:
        return None
    if not _table_can_apply(F):
        return sympy.S.Zero if _odd(F, d, mean) else None
    zeros_c = tuple(tuple(bool(cov[p, q] == 0) for q in range(d)) for p in range(d))
    zeros_m = tuple(bool(m == 0) for m in mean)
    key = (F, zeros_c, zeros_m)
    if key not in _CLOSED_CACHE:
        C = sympy.Matrix(d, d, lambda p, q: 0 if zeros_c[p][q] else _s(min(p, q), max(p, q)))
        m = tuple(0 if zeros_m[p] else _M[p] for p in range(d))
        _CLOSED_CACHE[key] = closed_forms.gaussian_expectation(F, tuple(U[:d]), C, m)
    tmpl = _CLOSED_CACHE[key]
    if tmpl is None:
        return None
    sub = {_s(p, q): cov[p, q] for p in range(d) for q in range(p, d)}
    sub.update({_M[p]: mean[p] for p in range(d)})
    return sympy.sympify(tmpl).xreplace(sub)


def _closed_form_name(F, d):
    heads = sorted({type(a).__name__ for a in F.atoms(sympy.Function)})
    return "closed form" + (f" ({' x '.join(heads)})" if heads else " (Gaussian moments)")
