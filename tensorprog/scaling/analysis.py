"""The static coordinate check: width exponents of a program at initialisation and after each step.

For a training ``gd(f[k], Y, eta, t, scale = c n^s)`` with parameters trained at rates r_p = c n^(e_p)
(``param(rate = ...)``, in the units of ``ntk``: docs/ntk.md), every value x of the outputs' cone
gets (tensorprog/scaling/orders.py for the calculus):

* its order at initialisation, kappa(x): vectors by the op rules (``W x`` has the order of x times
  sqrt(n s2), a coordinatewise function by the order calculus); a Moment mean(phi) has the order of
  phi when its limit E[phi(Z)] is not 0, and one half less when it is (the limit is 0 and what is left
  is the central-limit fluctuation, Theta(n^-1/2) times phi's size): decided structurally (phi is
  linear in a centred Gaussian vector independent of the rest, or phi >= 0 and not 0) or by deriving
  the limit (tensorprog.limit);
* the order lambda(x) of n df/dx (vectors) and of df/dx (scalars): the reverse pass;
* the order of its change after step t, D_t(x) = order(x_t - x_0), by the first-order (tangent)
  pass: a trained vector p moves by  -r eta n^-s chi sum C pbar,  of order e_p - s + order(chi) +
  lambda(p); a trained matrix W changes W y by  -r eta s2 n n^-s chi sum_u left_u mean(right_u y),
  of order e_W + order(n s2) - s + order(chi) + max_u(lambda(h_u) + kappa(x_u)) + kappa(y)
  (Tensor Programs IV: the updates are sums of outer products); a coordinatewise function moves by
  sum_a d phi/da Delta a.  After a step the sizes are max(kappa, D_t) and the next step repeats the
  passes at those sizes.  chi = dl/dF at (F, y): order max(0, order F) for the squared loss.

Generic position is assumed after initialisation: the terms of a sum do not cancel and a vector's
update correlates with what it feeds (as in Tensor Programs IV's Dichotomy theorem).  Verdicts:
unstable (some value's order > 0 at initialisation or some change's > 0: the first is named),
trivial (the output never moves: every D_t(F) < 0), feature learning (some hidden vector moves by
Theta(1)), else the kernel regime.
"""
from __future__ import annotations

import copy

import sympy

from ..errors import TPError
from ..ir.core import PARAMS, VEC_ARGS, WIDTH, Kind
from ..frontend.grad import dependency_cone
from ..ir.describe import describe
from ..ops.init import InitScalar, InitVector
from ..ops.registry import SCALING_ADJOINT, SCALING_CHANGE, SCALING_SIZE
from .orders import INF, ZERO, Undecided, oadd, omax, order, order_of_number


class Analysis:
    """The interpreter state of the three passes (one per training of the program)."""

    def __init__(self, program, spec):
        self.program, self.spec = program, spec
        self.template = list(spec.template)
        self.defining = {ins.out.id: ins for ins in self.template}
        self.rates = {vid: order_of_number(r) for vid, r in spec.rates}
        self.scale = order_of_number(spec.scale)
        self.size, self.init, self.change, self.step_change, self.adj = {}, {}, {}, {}, {}
        self.undecided = {}          # value id -> why its order is not decided
        self.uses = {}               # matrix id -> its MatMul instructions
        for ins in self.template:
            if hasattr(ins, "matrix"):
                self.uses.setdefault(ins.matrix.id, []).append(ins)
        self.chi = sympy.S.Zero

    # ------------------------------------------------------------------ helpers for the op rules

    def name(self, value):
        return describe(value, self.defining)

    def order_in(self, ins, expr, table):
        """The order of ``expr`` (over ins's formal arguments) with each argument's order from ``table``."""
        orders = {}
        for k, a in enumerate(ins.vec_args):
            orders[VEC_ARGS[k]] = table.get(a.value.id, ZERO)
        for k, a in enumerate(ins.params):
            orders[PARAMS[k]] = table.get(a.value.id, ZERO)
        return order(expr, orders)

    def inherit(self, ins):
        """Undecided inputs make the output undecided (returns True then)."""
        for a in ins.args():
            if a.value.id in self.undecided:
                self.undecided.setdefault(ins.out.id, f"depends on {self.name(a.value)}, whose order is undecided")
                return True
        return False

    def guarded(self, ins, compute):
        """``compute()``, or 0 with the value marked undecided when the calculus cannot tell."""
        if self.inherit(ins):
            return sympy.S.Zero
        try:
            return compute()
        except Undecided as u:
            self.undecided.setdefault(ins.out.id, u.reason)
            return sympy.S.Zero

    def matrix_factor(self, matrix):
        """order(n s2 fan-in multiple) / 2: how much W x grows over x (0 for entries of variance sigma^2/n)."""
        ins = self.defining[matrix.id]
        rows, cols = matrix.dim
        return order_of_number(ins.variance * WIDTH * cols) / 2

    def is_trained(self, value):
        return value.id in self.rates

    def vector_step(self, value):
        """The order of a trained vector's update at this step: e_p - s + order(chi) + lambda(p)."""
        lam = self.adj.get(value.id, ZERO)
        return oadd(self.rates[value.id], -self.scale, self.chi, lam)

    def matrix_step(self, ins):
        """The order of (W_{t+1} - W_t) x for ins = W x: the update -r eta s2 n n^-s chi sum_u left_u
        mean(right_u x) over W's uses u = (n df/dh_u, x_u) has order e_W + order(n s2) - s + order(chi)
        + max_u (lambda(h_u) + kappa(x_u)) + kappa(x) (the inner products generic: not 0)."""
        W = ins.matrix
        best = omax(*[oadd(self.adj.get(u.out.id, ZERO), self.size.get(u.arg.value.id, ZERO))
                      for u in self.uses.get(W.id, ())])
        return oadd(self.rates[W.id], 2 * self.matrix_factor(W), -self.scale, self.chi, best,
                    self.size.get(ins.arg.value.id, ZERO))

    def add_adjoint(self, value, o):
        if o != ZERO:
            self.adj[value.id] = omax(self.adj.get(value.id, ZERO), o)

    def moment_limit_is_zero(self, ins):
        """Whether E[phi(Z)] = 0 for a Moment at initialisation: True, False, or Undecided."""
        return _limit_is_zero(self, ins)

    # ------------------------------------------------------------------ the passes

    def run(self):
        """Orders at initialisation and after each step: a list of per-step dicts of D_t."""
        for ins in self.template:
            SCALING_SIZE.rule(ins)(self, ins)
        self.init = dict(self.size)
        history = []
        for _ in range(self.spec.steps):
            self.adj = {}
            for f in self.spec.outputs:
                self.adj[f.id] = sympy.S.Zero
            for ins in reversed(self.template):
                SCALING_ADJOINT.rule(ins)(self, ins)
            self.chi = self._chi_order()
            self.step_change = {}
            for ins in self.template:
                SCALING_CHANGE.rule(ins)(self, ins)
            for vid, d in self.step_change.items():
                self.change[vid] = omax(self.change.get(vid, ZERO), d)
                self.size[vid] = omax(self.init.get(vid, ZERO), self.change[vid])
            history.append(dict(self.change))
        return history

    def output_order(self, table):
        """The order of F = scale f (the largest over the outputs)."""
        return omax(*[oadd(self.scale, table.get(f.id, ZERO)) for f in self.spec.outputs])

    def _chi_order(self):
        """order of dl/dF at (F, y)."""
        F = self.output_order(self.size)
        loss = self.spec.loss
        if loss.name == "softmax":
            return sympy.S.Zero          # softmax - one-hot is bounded
        if loss.name == "squared":
            return omax(F, sympy.S.Zero)
        fv, yv = loss.formals
        return order(sympy.diff(loss.body, fv), {fv: F, yv: sympy.S.Zero})


# ---------------------------------------------------------------------- E[phi] = 0 at initialisation?

def _cone(an, values):
    """Ids of the values ``values`` depend on (within the template)."""
    return dependency_cone(an.defining, [v.id for v in values])


def _fresh_gaussian(an, a, others):
    """True when Z^a is a centred Gaussian independent of every Z the other arguments depend on:
    an initial vector of zero mean whose block is not used by them, or W x with W used nowhere else."""
    ins = an.defining.get(a.value.id)
    rest = _cone(an, others)
    if a.value.id in rest:
        return False
    if isinstance(ins, InitVector):
        block_ids = {m.id for m in ins.block.members}
        return not (block_ids & rest) and all(not m.any() for m in ins.block.means)
    if hasattr(ins, "matrix"):        # W used once: Z^{Wx} is Zhat, no Zdot (no W^T anywhere)
        return len(an.uses.get(ins.matrix.id, ())) == 1
    return False


def _limit_is_zero(an, ins):
    fn = ins.fn
    # 1. linear in a centred Gaussian independent of the rest: E[Z g(...)] = E[Z] E[g] = 0
    for k, a in enumerate(ins.vec_args):
        x = VEC_ARGS[k]
        if sympy.diff(fn, x, 2) == 0 and fn.xreplace({x: 0}) == 0:
            others = [b.value for j, b in enumerate(ins.vec_args) if j != k] + [p.value for p in ins.params]
            if _fresh_gaussian(an, a, others):
                return True
    # 2. phi >= 0 (on the diagonal of a family) and not identically 0: E[phi] > 0
    same = {}
    for k, a in enumerate(ins.vec_args):
        same.setdefault(a.value.id, VEC_ARGS[k])
    real = {VEC_ARGS[k]: sympy.Symbol(f"_r{same[a.value.id]}", real=True) for k, a in enumerate(ins.vec_args)}
    diag = fn.xreplace(real)
    if diag != 0 and diag.is_nonnegative:
        return False
    # 3. the limit itself, derived at initialisation
    return _derived_is_zero(an, ins)


def _plain_cone(an, ins):
    """The instructions of ins's cone, if all its vectors are Theta(1) and no scalar grows or depends on
    n explicitly (then the program's own limit is the normalised one); else Undecided."""
    cone = _cone(an, [ins.out])
    for vid in sorted(cone):
        dep = an.defining[vid]
        o = an.size.get(vid, sympy.S.Zero)
        width_scalar = isinstance(dep, InitScalar) and not dep.is_data and dep.value.has(WIDTH)
        if vid in an.undecided or width_scalar or (dep.out.kind == Kind.VECTOR and o != 0) or \
                (dep.out.kind == Kind.SCALAR and o > 0 and vid != ins.out.id):
            raise Undecided(f"the limit of {an.name(ins.out)} involves {an.name(dep.out)}, whose size depends "
                            "on n: outside the Master Theorem at this scale")
    return [i for i in an.template if i.out.id in cone]


def _subprogram(an, instrs):
    sub = copy.copy(an.program)
    sub.instructions, sub.outputs = tuple(instrs), ()
    return sub


def _sampled(an, ins, instrs, draws=1 << 12, replicates=8):
    """(mean, standard error) of the moment's limit by sampling the Master Theorem's Z (per member)."""
    import numpy as np

    from ..ops.registry import SAMPLE_LIMIT, interpret
    from ..simulate.limit_sampler import LimitSampler

    sampler = LimitSampler(_subprogram(an, instrs))
    sizes = sampler.sizes(draws)
    runs = []
    for r in range(replicates):
        env = {}
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([0, draws, r])))
        with np.errstate(all="ignore"):
            for _ in interpret(SAMPLE_LIMIT, sampler.instructions, sampler, env, sizes, draws, rng, None):
                pass
        runs.append(np.asarray(env[ins.out.id], dtype=float))
    stack = np.stack(runs)
    return stack.mean(axis=0), stack.std(axis=0, ddof=1) / np.sqrt(replicates)


def _derived_is_zero(an, ins):
    """Sample the limit (a clearly non-zero member decides: not 0); else derive it (an exact 0 decides)."""
    from ..limit.derive import Deriver

    instrs = _plain_cone(an, ins)
    mean, se = _sampled(an, ins, instrs)
    if (abs(mean) > 8 * se + 1e-12).any():
        return False
    try:
        d = Deriver(_subprogram(an, instrs))
        d.run()
    except TPError as e:
        raise Undecided(f"the limit of {an.name(ins.out)} could not be derived: {e.message}") from None
    theta = d.theta.get(ins.out.id)
    if theta is not None and sympy.sympify(theta).is_number:
        return bool(sympy.sympify(theta) == 0)
    raise Undecided(f"the limit of {an.name(ins.out)} is sampled as {float(abs(mean).max()):.2g} +- "
                    f"{float(se.max()):.1g} and its derivation is not a number: 0 or not cannot be told")


__all__ = ["Analysis", "INF", "ZERO"]
