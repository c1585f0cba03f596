"""Training in the limit: ``gd(f[k], Y, eta, t)``, the scalar family f after t steps of gradient descent.

The training set is the first ``len(Y)`` members of f's data set (labels Y), the loss is
L = 1/2 sum_i (f_i - Y_i)^2, and every trained parameter (``param``) moves in its standard
coordinates theta at the rate r of its declaration, in the units of ``ntk`` (docs/ntk.md)::

    theta <- theta - n r eta dL/dtheta,     so that     f <- f - eta ntk(f, f_train) chi  (to first order)

with chi_i = f_i - Y_i.  After step s every matrix is its initial value plus rank-one updates and every
vector parameter its initial value plus multiples of backward vectors (Tensor Programs IV), so the
network at step s + 1 is a program over the *initial* weights, emitted by replaying f's forward
instructions with::

    W_{s+1} y   = W_s y   - r eta s2 n rho_c sum_i chi_i sum_u left_{u,i} mean(right_{u,i} y)
    W_{s+1}^T z = W_s^T z - r eta s2 n rho_r sum_i chi_i sum_u right_{u,i} mean(left_{u,i} z)
    p_{s+1}[m]  = p_s[m]  - r eta sum_i chi_i sum_l C(p, p_l)(m, i) pbar_{l,i}

(s2 the entry variance of W; (left, right) the uses of W in step s's backward pass, df/dW = (1/n)
sum_u left right^T; pbar = n df/dp).  Step s's backward pass differentiates f_s with every earlier
update held constant (the gradient at W_s), and is emitted by frontend/grad.py.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..errors import error
from ..ir.core import PARAMS, VEC_ARGS, WIDTH, AxisRef, InitMatrix, InitScalar, InitVector, Kind, MatMul, Nonlin
from ..ops.moment import Moment
from .grad import Backward, _At, _family_member, width_scalar
from .scope import Ctx, FVar, Scope
from .terms import DataT, ListT, MatT, Num, ScalT, VecT


class Training:
    """The steps of gradient descent on f (cached per (f, labels, eta) in the elaborator)."""

    def __init__(self, el, f, labels, eta, pos):
        self.el, self.f, self.labels, self.eta, self.pos = el, f, labels, eta, pos
        (axis,) = f.axes
        self.name = f"@train{f.id}"
        self.ctx = Ctx(Scope(), pos)
        self.ctx.fvars = [FVar(self.name, axis, pos)]
        defining = {ins.out.id: ins for ins in el.instrs}
        cone, stack = set(), [f.id]
        while stack:
            vid = stack.pop()
            if vid not in cone and vid in defining:
                cone.add(vid)
                stack.extend(v.id for v in defining[vid].inputs())
        self.template = [ins for ins in el.instrs if ins.out.id in cone]
        self.envs = [{vid: el.values[vid] for vid in cone}]      # step -> base value id -> its value
        self.current = [set(cone)]                                # step -> ids of that step's values
        self.updates = []                                         # step -> (chi, matrix uses, vector terms)
        if not any(v in el.params for v in cone):
            raise error(pos, f"gd({f.name}[...]): '{f.name}' depends on no trained parameter (`param`)")

    def at(self, t):
        """The value of f after t steps."""
        while len(self.envs) <= t:
            self._step(len(self.envs) - 1)
        return self.envs[t][self.f.id]

    # -------------------------------------------------------------- one step

    def _member(self, value, i):
        return self.el.leaf(value, (i,) if value.axes else ())

    def _step(self, s):
        el = self.el
        f_s = self.envs[s][self.f.id]
        frozen = frozenset(range(len(el.values))) - self.current[s]
        bw = Backward(el, f_s, self.pos, frozen=frozen)
        chi = [self._member(f_s, i) - sympy.nsimplify(float(y)) for i, y in enumerate(self.labels)]
        uses, vectors = {}, {}
        for ins in self.template:
            if isinstance(ins, InitMatrix) and ins.out.id in el.params:
                now = bw.uses.get(ins.out.id, ())
                uses[ins.out.id] = [[(self._member(bw.value_of(l), i), self._member(bw.value_of(r), i))
                                     for (l, r) in now] for i in range(len(chi))]
            if isinstance(ins, InitVector) and ins.out.id in el.params:
                leaf = bw.vector_adjoint(self.envs[s][ins.out.id])
                vectors[ins.out.id] = None if leaf is None else bw.value_of(leaf)
        self.updates.append((chi, uses, vectors))
        first = len(el.values)
        env = {}
        for ins in self.template:
            env[ins.out.id] = self._replay(ins, env, s)
        self.envs.append(env)
        self.current.append(set(range(first, len(el.values))) | {v.id for v in env.values()})

    def _leaf(self, arg, env):
        """The replayed argument, as a leaf over this step's index name."""
        value = env.get(arg.value.id, arg.value)
        return self.el.leaf(value, tuple(self.name if isinstance(t, AxisRef) else t for t in arg.index))

    def _replay(self, ins, env, s):
        """Step s + 1's version of ``ins`` (its value)."""
        el = self.el
        if isinstance(ins, (InitMatrix, InitScalar)) or (isinstance(ins, InitVector) and ins.out.id not in el.params):
            return ins.out
        if isinstance(ins, InitVector):
            return self._vector_update(ins, s)
        if isinstance(ins, MatMul):
            x = self._leaf(ins.arg, env)
            xv = el.leaf_of[x].value
            h = el.emit_matmul(MatT(ins.matrix, ins.transposed), VecT(x, xv.dim), self.ctx, ins.pos).e
            if ins.matrix.id in el.params:
                h = h + self._matrix_correction(ins, x, s)
            return self._value(Nonlin, h, ins) if h not in el.leaf_of else el.leaf_of[h].value
        expr = ins.fn.xreplace({**{VEC_ARGS[k]: self._leaf(a, env) for k, a in enumerate(ins.vec_args)},
                                **{PARAMS[k]: self._leaf(a, env) for k, a in enumerate(ins.params)}})
        return self._value(type(ins), expr, ins)

    def _value(self, cls, expr, ins):
        el = self.el
        if expr in el.leaf_of and el.leaf_of[expr].index in ((self.name,), ()):
            return el.leaf_of[expr].value
        sym = el.emit_cw(cls, expr, self.ctx, ins.pos, dim=ins.out.dim if cls is Nonlin else None,
                         order=[self.name])
        return el.leaf_of[sym].value

    def _rate(self, value):
        return self.el.params[value.id].rate * self.eta

    def _matrix_correction(self, ins, x, s):
        """sum over steps r <= s of (W_{r+1} - W_r) x (or its transpose), as an expression."""
        el = self.el
        rows, cols = ins.matrix.dim
        init = next(i for i in self.template if i.out is ins.matrix)
        coef = -self._rate(ins.matrix) * init.variance * WIDTH * (rows if ins.transposed else cols)
        total = sympy.S.Zero
        for chi, uses, _ in self.updates[: s + 1]:
            for i, pairs in enumerate(uses.get(ins.matrix.id, [])):
                for left, right in pairs:
                    out, inner = (right, left) if ins.transposed else (left, right)
                    total += coef * chi[i] * out * el.emit_cw(Moment, inner * x, self.ctx, ins.pos)
        return self._width_free(total, ins)

    def _vector_update(self, ins, s):
        """p_{s+1} = p_s - r eta sum_i chi_i sum_l C(p, p_l)(m, i) pbar_{l,i}."""
        el = self.el
        block = ins.block
        members = [m for m in self.template if isinstance(m, InitVector) and m.block is block]
        chi, _, vectors = self.updates[s]
        prev = self.envs[s][ins.out.id]
        total = self.el.leaf(prev, (self.name,) if prev.axes else ())
        rate = self._rate(ins.out)
        for other in members:
            pbar = vectors.get(other.out.id)
            if pbar is None:
                continue
            cov = block.cov(ins.member, other.member)           # over (axes of p) + (axes of p_l)
            for i in range(len(chi)):
                c = cov[..., i] if other.out.axes else cov
                if ins.out.axes:
                    c_leaf = el.as_scalar_leaf(DataT(np.ascontiguousarray(c, dtype=float), (self.name,)),
                                               self.ctx, _At(ins.pos))
                else:
                    c_leaf = sympy.Float(float(c))
                total += -rate * chi[i] * c_leaf * self._member(pbar, i)
        total = self._width_free(total, ins)
        return self._value(Nonlin, total, ins)

    def _width_free(self, expr, ins):
        """Width factors of an update (rates, variances times n) must have a limit: they become scalars."""
        if not expr.has(WIDTH):
            return expr
        out = sympy.S.Zero
        for term in sympy.Add.make_args(sympy.expand(expr)):
            w, rest = term.as_independent(*[s for s in term.free_symbols if s != WIDTH], as_Add=False)
            out += rest * width_scalar(self.el, w, self.ctx, ins.pos, lambda e: (
                f"training diverges as n grows: an update of '{ins.out.name}' is scaled by {sympy.sstr(e)} "
                "(check the rates of the parameters)"))
        return out


def gd_term(el, node, args, ctx):
    """``gd(f[k], Y, eta, t)``: f at member k after t steps of gradient descent (module docstring)."""
    if len(args) != 4:
        raise error(node.pos, "gd takes f[k], the labels of the training points, the learning rate and the "
                              "number of steps: gd(f[k], Y, eta, t)")
    f, names = _family_member(el, args[0], node.args[0], Kind.SCALAR)
    if len(f.axes) != 1:
        raise error(node.args[0].pos, "gd(f[k], ...): f must be a family over one data set (its first "
                                      "len(Y) points are the training set)")
    y = args[1]
    if isinstance(y, ListT) and all(isinstance(v, Num) for v in y.items):
        labels = np.array([float(v.v) for v in y.items])
    elif isinstance(y, DataT) and y.arr.ndim == 1 and not y.tags:
        labels = np.asarray(y.arr, dtype=float)
    else:
        raise error(node.args[1].pos, "the labels must be a list of numbers (one per training point)")
    if not 1 <= len(labels) <= f.axes[0].size or not np.all(np.isfinite(labels)):
        raise error(node.args[1].pos, f"expected 1 to {f.axes[0].size} finite labels (the first points of "
                                      f"{f.axes[0].name} are the training set), got {len(labels)}")
    if not isinstance(args[2], Num) or not args[2].v.is_positive:
        raise error(node.args[2].pos, "the learning rate must be a positive number")
    t = args[3]
    if not isinstance(t, Num) or not t.v.is_integer or t.v < 0:
        raise error(node.args[3].pos, "the number of steps must be a non-negative integer")
    key = (f.id, labels.tobytes(), args[2].v)
    if key not in el.trainings:
        el.trainings[key] = Training(el, f, labels, args[2].v, node.pos)
    value = el.trainings[key].at(int(t.v))
    return ScalT(el.leaf(value, tuple(names)))
