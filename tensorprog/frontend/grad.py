"""The compiler writes the backward pass: reverse-mode differentiation of a program, and its NTK.

For a scalar family f[i] (one member per input) the backward pass is emitted as ordinary IR
instructions (Nonlin, Moment, MatMul by W^T), so the limit pass derives it like a hand-written one
and finds every correction term (Zdot) of the transposes itself.  The adjoints are scaled to have
coordinates of size O(1) when f is an average (a Moment)::

    xbar = n df/dx       for a vector x (width rho n),        sbar = df/ds   for a scalar s,

and each instruction kind contributes through its BACKWARD rule (tensorprog/ops/*):
``y = phi(x; p)``: xbar += ybar dphi/dx, pbar += rho mean(ybar dphi/dp);  ``s = mean(phi(x; p))``:
xbar += sbar dphi/dx / rho, pbar += sbar mean(dphi/dp);  ``s = F(p)``: pbar += sbar dF/dp;
``h = W x``: xbar += W^T hbar (``h = W^T y``: ybar += W hbar).  The instructions of one adjoint are
fused into one Nonlin, emitted once all of its contributions are known (reverse program order).

The NTK (:func:`ntk_term`) of two members f[i], h[j] (of one family or two) is, with every trained
parameter written as a fixed linear image of iid N(0, 1) coordinates theta (its *standard
coordinates*) and trained at the rate declared with ``param(rate = ...)`` (default 1)::

    ntk(f[i], h[j]) = n sum_theta rate_theta df_i/dtheta dh_j/dtheta,

the kernel of the network output F = sqrt(n) f (the readout v.x/sqrt(n) = sqrt(n) mean(v x) of the
NTK and standard parametrizations).  In adjoints it is a sum of Moments (docs/ntk.md):

* matrix W (rows x cols = rho_r n x rho_c n, entries of variance s2(n)), one term per pair of uses
  (u of f, u' of h), a use being (left, right) = (hbar, x) for h = W x and (y, hbar) for h = W^T y::

      n s2 rate rho_r rho_c mean(left_u left'_u') mean(right_u right'_u');

* a Gaussian block of vectors p_1, ..., p_m (width rho n, covariance C_kl)::

      rate rho sum_kl mean(pbar_k pbar'_l) C_kl(i, j)

  (an input layer g[i] ~ N(0, K(i, i')) is such a block: its standard coordinates are the weights
  and bias of the layer, and the term is mean(gbar gbar') K(i, j)).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import sympy

from ..errors import error
from ..ir.core import PARAMS, VEC_ARGS, WIDTH, Arg, AxisRef, InitMatrix, InitVector, Kind, Nonlin
from ..ops.moment import Moment
from ..ops.registry import BACKWARD, CSE_KEY
from .scope import Ctx, FVar, Scope
from .terms import DataT, MatT, ScalT, VecT, WidthT, width_limit


class Backward:
    """The backward pass of one scalar family ``f``: adjoints of every value f depends on."""

    def __init__(self, el, f, pos, frozen=frozenset(), parameter_values=None):
        self.el, self.f, self.pos = el, f, pos
        # values held constant (a training step's earlier updates): no adjoint flows into them
        self.frozen = frozen
        # base id of a trained vector parameter -> its value where f is evaluated (after training steps)
        self.parameter_values = parameter_values or {}
        self.names = tuple(f"@{f.id}.{p}" for p in range(len(f.axes)))
        self.ctx = Ctx(Scope(), pos)
        self.ctx.fvars = [FVar(nm, ax, pos) for nm, ax in zip(self.names, f.axes)]
        self.terms = defaultdict(list)     # value id -> contributions (sympy, over leaves)
        self.adjoints = {}                 # vector value id -> leaf of its emitted adjoint
        self.uses = defaultdict(list)      # matrix value id -> [(left leaf, right leaf)]
        self.scalar = {}                   # scalar value id -> its adjoint (a sympy expression)
        self.defining = {ins.out.id: ins for ins in el.instrs}
        self._run()

    # -------------------------------------------------------------- the interpreter loop

    def _run(self):
        el = self.el
        cone = self._cone(self.defining)
        self.terms[self.f.id].append(sympy.S.One)
        for ins in reversed([ins for ins in el.instrs if ins.out.id in cone]):
            self._check_members(ins)
            BACKWARD.rule(ins)(self, ins)

    def _cone(self, defining):
        """Ids of the values f depends on (f included), not through frozen values."""
        return dependency_cone(defining, [self.f.id], self.frozen)

    def _check_members(self, ins):
        """f[i] may use the members i of families over its own data sets (and unindexed values)."""
        own = tuple(AxisRef(p) for p in range(len(self.f.axes)))
        if ins.out.axes and ins.out.axes != self.f.axes:
            raise error(ins.pos, f"cannot differentiate '{self.f.name}' through '{ins.out.name}': it is a family "
                                 f"over {', '.join(map(str, ins.out.axes))}, not over the data sets of "
                                 f"'{self.f.name}' ({', '.join(map(str, self.f.axes)) or 'none'})")
        for a in ins.args():
            if a.value.axes and a.value.id not in self.frozen and (a.index != own or ins.out.axes != self.f.axes):
                raise error(ins.pos, f"cannot differentiate '{self.f.name}' through '{ins.out.name}': it uses "
                                     f"{a} (another member of a family); gradients are taken member by member")

    # -------------------------------------------------------------- the API of the BACKWARD rules

    def leaf(self, value):
        return self.el.leaf(value, self.names if value.axes else ())

    def arg_leaf(self, arg):
        """The leaf of an argument: f's own member (identity index), or a fixed member of a frozen value."""
        return self.el.leaf(arg.value, tuple(self.names[t.p] if isinstance(t, AxisRef) else t for t in arg.index))

    def value_of(self, leaf):
        return self.el.leaf_of[leaf].value

    def rho(self, value):
        """The width of a vector as a multiple of n."""
        return sympy.sympify(value.dim)

    def add(self, leaf, term):
        """One contribution to the adjoint of the value of ``leaf``."""
        if term != 0 and self.value_of(leaf).id not in self.frozen:
            self.terms[self.value_of(leaf).id].append(term)

    def vector_adjoint(self, value):
        """The leaf of xbar = n df/dx, emitted on first request (in reverse program order every use of x
        has contributed by then), or None if it is 0.  An adjoint that does not depend on the member i
        is an unindexed vector (e.g. the readout's v)."""
        if value.id in self.adjoints:
            return self.adjoints[value.id]
        total = sympy.Add(*self.terms.pop(value.id, ()))
        if total == 0:
            leaf = None
        elif total in self.el.leaf_of and self.el.leaf_of[total].index in (self.names, ()):
            leaf = total                     # xbar is a value already (e.g. b + W x: bbar = hbar)
        elif not any(self.value_of(s).kind == Kind.VECTOR for s in total.free_symbols if s in self.el.leaf_of):
            leaf = self._emit_broadcast(total, value)
        else:
            name = f"d{self.f.name}/d{value.name}"
            leaf = self.el.emit_cw(Nonlin, total, self.ctx, self._pos(value), name=name, dim=value.dim,
                                   order=list(self.names))
        self.adjoints[value.id] = leaf
        return leaf

    def _emit_broadcast(self, total, value):
        """A vector adjoint whose coordinates are all equal (f = mean(x): xbar = 1): a Nonlin of x that
        ignores its argument (a Nonlin takes its width from a vector argument)."""
        el = self.el
        pars = sorted((s for s in total.free_symbols if s in el.leaf_of), key=lambda s: el.leaf_of[s].value.id)
        family = bool(value.axes) or any(isinstance(t, str) for s in pars for t in el.leaf_of[s].index)
        axes = self.f.axes if family else ()

        def arg(leaf):
            """The leaf's member: f's own (a name: an axis reference) or a fixed one (an int)."""
            lf = el.leaf_of[leaf]
            return Arg(lf.value, tuple(AxisRef(self.names.index(t)) if isinstance(t, str) else t for t in lf.index))

        vec_args, params = (arg(self.leaf(value)),), tuple(arg(s) for s in pars)
        fn = total.xreplace({s: PARAMS[k] for k, s in enumerate(pars)})
        key = CSE_KEY[Nonlin](Nonlin, axes, fn=fn, vec_args=vec_args, params=params)
        out = el.cse.get(key)
        if out is None:
            out = el.new_value(f"d{self.f.name}/d{value.name}", Kind.VECTOR, axes, value.dim)
            el.instrs.append(Nonlin(out, self._pos(value), fn=fn, vec_args=vec_args, params=params))
            el.cse[key] = out
        return el.leaf(out, self.names if axes else ())

    def _pos(self, value):
        """An adjoint's instructions are listed at the statement that defined the forward value."""
        ins = self.defining.get(value.id)
        return ins.pos if ins is not None else self.pos

    def scalar_adjoint(self, value):
        """sbar = df/ds (a sympy expression over leaves), or None if 0."""
        if value.id not in self.scalar:
            self.scalar[value.id] = sympy.Add(*self.terms.pop(value.id, ()))
        s = self.scalar[value.id]
        return None if s == 0 else s

    def substituted(self, ins):
        """(the instruction's function of leaves, leaves of its distinct vector args, of its scalar args)."""
        vecs = [self.arg_leaf(a) for a in ins.vec_args]
        pars = [self.arg_leaf(a) for a in ins.params]
        phi = ins.fn.xreplace({**{VEC_ARGS[k]: s for k, s in enumerate(vecs)},
                               **{PARAMS[k]: s for k, s in enumerate(pars)}})
        return phi, list(dict.fromkeys(vecs)), list(dict.fromkeys(pars))

    def diff(self, phi, leaf, ins):
        """d phi / d leaf, refused where the derivative is not a function (a Dirac delta)."""
        d = sympy.diff(phi, leaf)
        if d.has(sympy.DiracDelta):
            raise error(ins.pos, f"cannot differentiate '{self.f.name}' through {self._readable(phi)}: its "
                                 f"derivative with respect to '{self.value_of(leaf).name}' is a Dirac delta (step "
                                 "or sign of a vector that carries gradient has no gradient)")
        if d.has(sympy.Derivative, sympy.Subs):
            raise error(ins.pos, f"cannot differentiate {self._readable(phi)}: its derivative is not known")
        return d

    def _readable(self, expr):
        """``expr`` over leaves, with the program's names of the values."""
        names = {s: sympy.Symbol(self.value_of(s).name) for s in expr.free_symbols if s in self.el.leaf_of}
        return sympy.sstr(expr.xreplace(names))

    def moment(self, expr, ins):
        """The leaf of mean(expr) (a Moment over f's data sets), or the number itself."""
        if not any(self.value_of(s).kind == Kind.VECTOR for s in expr.free_symbols if s in self.el.leaf_of):
            return expr  # the average of a scalar is the scalar
        return self.el.emit_cw(Moment, expr, self.ctx, ins.pos)

    def matmul(self, matrix, leaf, transposed, ins):
        """The leaf of W leaf (W^T leaf when ``transposed``)."""
        value = self.value_of(leaf)
        return self.el.emit_matmul(MatT(matrix, transposed), VecT(leaf, value.dim), self.ctx, ins.pos).e

    def use(self, matrix, pair):
        self.uses[matrix.id].append(pair)


def dependency_cone(defining, roots, stop=frozenset()):
    """Ids of the values the ``roots`` depend on (roots included) through ``defining`` (value id ->
    instruction), not entering values in ``stop``."""
    seen, stack = set(), list(roots)
    while stack:
        vid = stack.pop()
        if vid in seen or vid not in defining or vid in stop:
            continue
        seen.add(vid)
        stack.extend(v.id for v in defining[vid].inputs())
    return seen


def backward(el, f, pos):
    """The (cached) backward pass of the scalar family ``f``.  For f after t steps of ``gd`` (a value of
    a training's replay) the gradient is the one at the trained weights: the updates are held constant
    (frontend/train.py), so ``ntk(gd(...), gd(...))`` is the NTK after training."""
    if f.id not in el.backward_passes:
        frozen, params = _trained_state(el, f, pos)
        el.backward_passes[f.id] = Backward(el, f, pos, frozen=frozen, parameter_values=params)
    return el.backward_passes[f.id]


def _trained_state(el, f, pos):
    """(values a trained output's gradient holds constant: everything outside its step's replay,
    base id -> the value of each parameter at that step); (nothing, {}) for an untrained f."""
    for training in el.trainings.values():
        if any(f is v for deltas in getattr(training, "deltas", ()) for v in deltas.values()):
            raise error(pos, "in the kernel regime (scale = sqrt(n)) the NTK does not move in the limit: "
                             "ntk(f[i], f[j]) of the untrained f is the NTK after training")
        for t, current in enumerate(training.current[1:], start=1):
            if f.id in current:
                return frozenset(range(len(el.values))) - current, training.envs[t]
    return frozenset(), {}


# ------------------------------------------------------------------ the NTK


class _At:
    """Where a generated term's errors point."""

    def __init__(self, pos):
        self.pos = pos


def width_scalar(el, expr, ctx, pos, diverges):
    """``expr`` (a number or a factor depending on n: a kernel term's or an update's scale) as a number or
    an initial scalar, once its limit as n -> oo is known to be finite; else ``diverges(expr)`` is the error."""
    if not expr.has(WIDTH):
        return expr
    lim = width_limit(expr)
    if (lim is None or not lim.is_finite) and not el.width_dependent:
        raise error(pos, diverges(expr))
    return el.as_scalar_leaf(WidthT(expr), ctx, _At(pos))


def _family_member(el, t, node, what):
    """(value, index names) of ``f[i]`` (one member of a family, indexed by family indices) or of a
    single value (no index names: e.g. an unrolled member f[0])."""
    lf = el.leaf_of.get(t.e) if hasattr(t, "e") else None
    if lf is None or lf.value.kind != what or \
            not all(isinstance(i, str) for i in lf.index) or len(set(lf.index)) != len(lf.index):
        kind = "scalar" if what == Kind.SCALAR else "vector"
        raise error(node.pos, f"expected a {kind} of the program: one member of a family over data, e.g. f[i] "
                              f"(a name defined with a data-set index), or a single {kind}")
    return lf.value, lf.index


def ntk_term(el, node, args, ctx):
    """The ScalT expression of ``ntk(f[i], h[j])`` (see the module docstring)."""
    if len(args) != 2:
        raise error(node.pos, f"ntk takes two members of scalar families, e.g. ntk(f[i], f[j]); got {len(args)} "
                              "arguments")
    (fa, ia), (fb, ib) = (_family_member(el, t, a, Kind.SCALAR) for t, a in zip(args, node.args))
    if set(ia) & set(ib) and tuple(ia) != tuple(ib):
        raise error(node.pos, f"ntk({fa.name}[...], {fb.name}[...]): index the two members either alike (the "
                              "diagonal, ntk(f[i], f[i])) or with different indices (ntk(f[i], f[j]))")
    if not el.params:
        raise error(node.pos, "ntk(...) needs trained parameters: mark the initial matrices and vectors the "
                              "network trains with `param` (e.g. `param matrix W ~ N(0, 1/n)`)")
    A, B = backward(el, fa, node.pos), backward(el, fb, node.pos)

    def rename(leaf, names):
        """The same member, under the statement's index names."""
        lf = el.leaf_of[leaf]
        return el.leaf(lf.value, names if lf.value.axes else ())

    def mean(x, y):
        return el.emit_cw(Moment, x * y, ctx, node.pos)

    def factor(expr, param):
        return width_scalar(el, expr, ctx, node.pos, lambda e: (
            f"the NTK term of the parameter '{param.value.name}' (line {param.pos.line}) grows with the width: "
            f"its factor {sympy.sstr(e)} diverges as n -> oo; its rate or the output's scale is wrong for this "
            "parametrization"))

    total, touched = sympy.S.Zero, False
    blocks = {}
    for ins in el.instrs:
        if isinstance(ins, InitVector) and ins.out.id in el.params:
            blocks.setdefault(id(ins.block), (ins.block, []))[1].append(ins)
    for ins in el.instrs:
        param = el.params.get(ins.out.id)
        if param is None or not isinstance(ins, InitMatrix):
            continue
        pairs = [(u, w) for u in A.uses.get(ins.out.id, ()) for w in B.uses.get(ins.out.id, ())]
        if not pairs:
            continue
        touched = True
        rows, cols = ins.out.dim
        f = factor(WIDTH * ins.variance * param.rate * rows * cols, param)
        for (la, ra), (lb, rb) in pairs:
            total += f * mean(rename(la, ia), rename(lb, ib)) * mean(rename(ra, ia), rename(rb, ib))
    for block, members in blocks.values():
        param = el.params[members[0].out.id]
        for ka in members:
            # (after training the parameter's current value: the initial one plus its frozen updates)
            abar = A.vector_adjoint(A.parameter_values.get(ka.out.id, ka.out))
            for kb in members:
                bbar = B.vector_adjoint(B.parameter_values.get(kb.out.id, kb.out))
                if abar is None or bbar is None:
                    continue
                touched = True
                cov = _cov_scalar(el, block, ka, kb, ia, ib, ctx, node.pos)
                if cov == 0:
                    continue
                f = factor(param.rate * sympy.sympify(ka.out.dim), param)
                total += f * cov * mean(rename(abar, ia), rename(bbar, ib))
    if not touched:
        raise error(node.pos, f"'{fa.name}' and '{fb.name}' depend on no common trained parameter (`param`)")
    return ScalT(total)


def _cov_scalar(el, block, ka, kb, ia, ib, ctx, pos):
    """C_kl(i, j) = Cov(p_k[i], p_l[j]) as a number or a data leaf over the statement's indices."""
    arr = block.cov(ka.member, kb.member)
    tags = (tuple(ia) if ka.out.axes else ()) + (tuple(ib) if kb.out.axes else ())
    if not tags:
        return sympy.Float(float(arr))
    if not arr.any():
        return 0
    if len(set(tags)) < len(tags):      # ntk(f[i], f[i]): the diagonal of C(i, j)
        k = len(tags) // 2
        letters = "abcdefghijklm"[:k]
        arr, tags = np.einsum(f"{letters}{letters}->{letters}", arr).copy(), tags[:k]
    return el.as_scalar_leaf(DataT(arr, tags), ctx, _At(pos))


def grad_term(el, node, args, ctx):
    """``grad(f[i], x[i])``: the vector n df_i/dx_i (the adjoint of x in f's backward pass)."""
    if len(args) != 2:
        raise error(node.pos, "grad takes a scalar family member and a vector: grad(f[i], x[i])")
    fa, ia = _family_member(el, args[0], node.args[0], Kind.SCALAR)
    t = args[1]
    lf = el.leaf_of.get(t.e) if isinstance(t, VecT) else None
    if lf is None or lf.value.kind != Kind.VECTOR:
        raise error(node.args[1].pos, "grad(f[i], x) differentiates with respect to a vector of the program")
    if lf.value.axes and tuple(lf.index) != tuple(ia):
        raise error(node.args[1].pos, f"grad({fa.name}[...], x): x must be indexed like {fa.name}, "
                                      f"as {lf.value.name}[{', '.join(ia)}]")
    bw = backward(el, fa, node.pos)
    leaf = bw.vector_adjoint(lf.value)
    if leaf is None:
        raise error(node.pos, f"'{fa.name}' does not depend on '{lf.value.name}': its gradient is 0")
    return VecT(el.leaf(el.leaf_of[leaf].value, tuple(ia)), lf.value.dim)
