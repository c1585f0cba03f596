"""Training in the limit: ``gd(f[k], Y, eta, t)``, the scalar family f after t steps of gradient descent.

The training set is the first ``len(Y)`` members of f's data set (labels Y).  Step s uses the batch
B_s (all training points, or ``batches = [[...], ...]``), the loss L_s = sum_{i in B_s} l(f_i, Y_i) and
the learning rate eta_s (a number, or a list ``[eta_0, eta_1, ...]``: a schedule); every trained
parameter (``param``) moves in its standard coordinates theta at the rate r of its declaration, in the
units of ``ntk`` (docs/ntk.md)::

    theta <- theta - n r eta_s dL_s/dtheta,     so that     f <- f - eta_s ntk(f, f_B) chi  (to first order)

with chi_i = dl/df(f_i, Y_i): f_i - Y_i for the squared loss l = (f - y)^2 / 2 (the default), the
derivative of a user function ``loss = ell`` (``fn ell(f, y) = ...``), or, for ``loss = softmax`` over
the K outputs f^0..f^{K-1} (all members of the list that f[c] belongs to; integer labels),
chi^c_i = softmax(f_i)^c - [Y_i = c] (cross-entropy l = logsumexp(f_i) - f_i^{Y_i}).

After step s every matrix is its initial value plus rank-one updates and every vector parameter its
initial value plus multiples of backward vectors (Tensor Programs IV), so the network at step s + 1
is a program over the *initial* weights, emitted by replaying the outputs' forward instructions with::

    W_{s+1} y   = W_s y   - r eta_s s2 n rho_c sum_{c,i} chi^c_i sum_u left^c_{u,i} mean(right^c_{u,i} y)
    W_{s+1}^T z = W_s^T z - r eta_s s2 n rho_r sum_{c,i} chi^c_i sum_u right^c_{u,i} mean(left^c_{u,i} z)
    p_{s+1}[m]  = p_s[m]  - r eta_s sum_{c,i} chi^c_i sum_l C(p, p_l)(m, i) pbar^c_{l,i}

(s2 the entry variance of W; (left, right) the uses of W in the backward pass of f^c_s,
df/dW = (1/n) sum_u left right^T; pbar = n df/dp).  Step s's backward passes differentiate f_s with
every earlier update held constant (the gradient at W_s), and are emitted by frontend/grad.py.
``value = h[k]`` returns any value the outputs depend on (a hidden vector, another scalar) after the
steps instead of f: feature kernels after training are means of products of such values.
``scale = sqrt(n)``: the output is sqrt(n) f (the NTK parametrization), trained by KernelTraining.

A program parsed ``width_dependent`` (``tpc scaling``, ``tpc simulate``: nothing is taken to the limit)
may scale the output by any c n^a, ``F = scale f``: then the replay is exact gradient descent at finite
width on l(F, y), chi = dl/dF(F_i, Y_i) / scale (so that F <- F - eta ntk(f, f_B) chi to first order,
the units of the rates), and gd returns F.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

from ..errors import error
from ..ir.core import PARAMS, VEC_ARGS, WIDTH, AxisRef, InitMatrix, InitScalar, InitVector, Kind, MatMul, Nonlin
from ..ops.moment import Moment
from . import ast
from .grad import Backward, _At, dependency_cone, width_scalar
from .scope import Ctx, FVar, Scope
from .terms import DataT, ListT, MatT, Num, ScalT, VecT, WidthT


@dataclass(frozen=True)
class Loss:
    """A per-point loss l(f_i, y_i) of the K outputs at a training point: ``chi(f, y)`` gives dl/df^c
    (sympy expressions of the outputs' leaves f = [f^0, ...] and the label y) for c < K."""

    name: str
    body: object = None          # user loss: its sympy body in ``formals``
    formals: tuple = ()

    def chi(self, f, y):
        if self.name == "squared":
            return [f[0] - sympy.nsimplify(float(y))]
        if self.name == "softmax":
            exps = [sympy.exp(fc) for fc in f]
            total = sympy.Add(*exps)
            return [e / total - (1 if c == int(y) else 0) for c, e in enumerate(exps)]
        fv, yv = self.formals
        d = sympy.diff(self.body, fv)
        return [d.xreplace({fv: f[0], yv: sympy.nsimplify(float(y))})]


@dataclass(frozen=True)
class TrainingSpec:
    """What ``tpc scaling`` reads of a training: the outputs f (values), the initial program they depend
    on (``template``, in order), the output's scale F = scale f, the most steps any gd(...) asked for,
    the loss, where the first gd(...) is, and the trained parameters' rates ((value id, rate), ...)."""

    outputs: tuple
    template: tuple
    scale: object
    steps: int
    loss: Loss
    pos: object
    rates: tuple = ()


class Training:
    """The steps of gradient descent on the outputs fs (cached per training in the elaborator)."""

    def __init__(self, el, fs, labels, etas, loss, batches, pos, scale=sympy.S.One):
        self.el, self.fs, self.labels, self.etas, self.loss, self.batches, self.pos = \
            el, fs, labels, etas, loss, batches, pos
        self.scale = self.output_scale = scale      # chi = dl/dF / scale (Training's exact replay)
        self.steps_asked = 0
        (axis,) = fs[0].axes
        self.name = f"@train{fs[0].id}"
        self.ctx = Ctx(Scope(), pos)
        self.ctx.fvars = [FVar(self.name, axis, pos)]
        cone = self.cone = dependency_cone({ins.out.id: ins for ins in el.instrs}, [f.id for f in fs])
        self.template = [ins for ins in el.instrs if ins.out.id in cone]
        self.envs = [{vid: el.values[vid] for vid in cone}]      # step -> base value id -> its value
        self.current = [set(cone)]                                # step -> ids of that step's values
        self.updates = []                                         # step -> (matrix terms, vector terms)
        if not any(v in el.params for v in cone):
            names = ", ".join(f.name for f in fs)
            raise error(pos, f"gd({fs[0].name}[...]): '{names}' depends on no trained parameter (`param`)")

    def spec(self):
        rates = tuple((ins.out.id, self.el.params[ins.out.id].rate) for ins in self.template
                      if ins.out.id in self.el.params)
        return TrainingSpec(tuple(self.fs), tuple(self.template), self.output_scale, self.steps_asked, self.loss,
                            self.pos, rates)

    def at(self, t, value_id):
        """The value (base id ``value_id``) after t steps."""
        while len(self.envs) <= t:
            self._step(len(self.envs) - 1)
        return self.envs[t][value_id]

    # -------------------------------------------------------------- one step

    def _member(self, value, i):
        return self.el.leaf(value, (i,) if value.axes else ())

    def _batch(self, s):
        return self.batches[s] if self.batches is not None else range(len(self.labels))

    def _step(self, s):
        """Step s's backward passes, chi and updates; then the forward replay giving step s + 1."""
        el = self.el
        frozen = frozenset(range(len(el.values))) - self.current[s]
        outs = [self.envs[s][f.id] for f in self.fs]
        grads = self._gradients(outs, self.envs[s], frozen)
        self.updates.append(self._terms(grads, s, [[self._member(f_s, i) for f_s in outs] for i in self._batch(s)]))
        first = len(el.values)
        env = {}
        for ins in self.template:
            env[ins.out.id] = self._replay(ins, env, s)
        self.envs.append(env)
        self.current.append(set(range(first, len(el.values))) | {v.id for v in env.values()})

    def _gradients(self, outs, env, frozen=frozenset()):
        """Per output: ({matrix id: [(left, right) values]}, {vector id: pbar value}), from its backward pass."""
        el = self.el
        grads = []
        for f_s in outs:
            bw = Backward(el, f_s, self.pos, frozen=frozen)
            uses, pbars = {}, {}
            for ins in self.template:
                if isinstance(ins, InitMatrix) and ins.out.id in el.params:
                    uses[ins.out.id] = [(bw.value_of(l), bw.value_of(r)) for (l, r) in bw.uses.get(ins.out.id, ())]
                if isinstance(ins, InitVector) and ins.out.id in el.params:
                    leaf = bw.vector_adjoint(env[ins.out.id])
                    if leaf is not None:
                        pbars[ins.out.id] = bw.value_of(leaf)
            grads.append((uses, pbars))
        return grads

    def _terms(self, grads, s, outputs):
        """Step s's update terms, {matrix id: [(chi, left_i, right_i)]} and {vector id: [(chi, i, pbar)]}, with
        ``outputs[b]`` the outputs (expressions) at the b-th point of the batch."""
        matrices, vectors = {}, {}
        for i, f_i in zip(self._batch(s), outputs):
            chis = self.loss.chi([self.scale * f for f in f_i], self.labels[i])
            for (uses, pbars), chi in zip(grads, (c / self.scale for c in chis)):
                if chi == 0:
                    continue
                for mid, pairs in uses.items():
                    matrices.setdefault(mid, []).extend((chi, self._member(l, i), self._member(r, i)) for l, r in pairs)
                for pid, pbar in pbars.items():
                    vectors.setdefault(pid, []).append((chi, i, pbar))
        return matrices, vectors

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

    def _rate(self, value, s):
        return self.el.params[value.id].rate * self.etas[s]

    def _matrix_correction(self, ins, x, s):
        """sum over steps r <= s of (W_{r+1} - W_r) x (or its transpose), as an expression."""
        el = self.el
        rows, cols = ins.matrix.dim
        init = next(i for i in self.template if i.out is ins.matrix)
        total = sympy.S.Zero
        for r, (matrices, _) in enumerate(self.updates[: s + 1]):
            coef = -self._rate(ins.matrix, r) * init.variance * WIDTH * (rows if ins.transposed else cols)
            for chi, left, right in matrices.get(ins.matrix.id, ()):
                out, inner = (right, left) if ins.transposed else (left, right)
                total += coef * chi * out * el.emit_cw(Moment, inner * x, self.ctx, ins.pos)
        return self._width_free(total, ins)

    def _vector_update(self, ins, s):
        """p_{s+1} = p_s + (step s's update of p)."""
        prev = self.envs[s][ins.out.id]
        total = self.el.leaf(prev, (self.name,) if prev.axes else ()) + self._vector_step(ins, s)
        return self._value(Nonlin, self._width_free(total, ins), ins)

    def _vector_step(self, ins, s):
        """Step s's update of a trained vector p: -r eta_s sum_{c,i} chi^c_i sum_l C(p, p_l)(m, i) pbar^c_{l,i}
        (p_l the members of p's Gaussian block), as an expression over this step's index."""
        _, vectors = self.updates[s]
        total = sympy.S.Zero
        for other in (m for m in self.template if isinstance(m, InitVector) and m.block is ins.block):
            for chi, i, pbar in vectors.get(other.out.id, ()):
                total += -self._rate(ins.out, s) * chi * self._cov_leaf(ins, other, i) * self._member(pbar, i)
        return total

    def _cov_leaf(self, ins, other, i):
        """C(p, p_l)(m, i): the covariance of ``ins``'s member (over this step's index) with member i of
        ``other`` (another member of its Gaussian block)."""
        cov = ins.block.cov(ins.member, other.member)             # over (axes of p) + (axes of p_l)
        c = cov[..., i] if other.out.axes else cov
        if not ins.out.axes:
            return sympy.Float(float(c))
        return self.el.as_scalar_leaf(DataT(np.ascontiguousarray(c, dtype=float), (self.name,)), self.ctx,
                                      _At(ins.pos))

    def _width_free(self, expr, ins):
        """Width factors of an update (rates, variances times n) must have a limit: they become scalars."""
        if not expr.has(WIDTH):
            return expr
        if self.el.width_dependent:        # finite width: n is a scalar of the program
            return expr.xreplace({WIDTH: self.el.as_scalar_leaf(WidthT(WIDTH), self.ctx, _At(ins.pos))})
        out = sympy.S.Zero
        for term in sympy.Add.make_args(sympy.expand(expr)):
            w, rest = term.as_independent(*[s for s in term.free_symbols if s != WIDTH], as_Add=False)
            out += rest * width_scalar(self.el, w, self.ctx, ins.pos, lambda e: (
                f"training diverges as n grows: an update of '{ins.out.name}' is scaled by {sympy.sstr(e)} "
                "(check the rates of the parameters)"))
        return out


class KernelTraining(Training):
    """Training with the output F = sqrt(n) f (``scale = sqrt(n)``: the NTK parametrization's readout).

    The updates are then 1/sqrt(n) of the f-scale ones, features move by O(n^-1/2) and the limit is
    the first-order (tangent) change: for every value x of the outputs' cone, dx_s = sqrt(n) (x_s - x_0)
    is O(1) and, to first order,

        d(W x)   = W_0 dx + sum_{r < s} (the rank-one terms of step r applied to x_0)
        d phi(x; p) = sum_j d_j phi(x_0; p_0) dx_j + sum_k d_{p_k} phi dp_k      (Nonlin, Moment, scalars)
        dp       = sum_{r < s} -r eta_r sum_{c,i} chi^c_{r,i} C(p, p_l) pbar^c_{l,i}   (a trained vector)

    with the backward passes of step 0 (gradients move by O(n^-1/2) too).  The output after t steps is
    F_t - F_0 = df_t (the centred network: F_0, random and of mean 0, is subtracted; chi = df - Y), so
    df_{t+1} = df_t - eta_t ntk(f, f_B) chi_t, the kernel regime; every other value keeps its initial
    value in the limit (feature kernels do not move).
    """

    def __init__(self, el, fs, labels, etas, loss, batches, pos, scale=sympy.sqrt(WIDTH)):
        super().__init__(el, fs, labels, etas, loss, batches, pos)
        self.output_scale = scale                  # chi stays dl/dF: the tangent replay is in F's units
        self.deltas = [{}]               # step -> base value id -> tangent value (absent: 0)
        self.grads = None

    def at(self, t, value_id):
        """F_t - F_0 for an output (None when 0), the initial value for any other value."""
        if value_id not in {f.id for f in self.fs}:
            return self.envs[0][value_id]
        while len(self.deltas) <= t:
            self._step(len(self.deltas) - 1)
        return self.deltas[t].get(value_id)

    def _step(self, s):
        if self.grads is None:
            self.grads = self._gradients([self.envs[0][f.id] for f in self.fs], self.envs[0])
        deltas = self.deltas[s]
        outputs = [[self._member(deltas[f.id], i) if f.id in deltas else sympy.S.Zero for f in self.fs]
                   for i in self._batch(s)]
        self.updates.append(self._terms(self.grads, s, outputs))
        env = {}
        for ins in self.template:
            out = self._tangent(ins, env, s)
            if out is not None:
                env[ins.out.id] = out
        self.deltas.append(env)

    def _tangent(self, ins, env, s):
        """The tangent of ``ins`` after step s (a value), or None when it is 0."""
        el = self.el
        if isinstance(ins, (InitMatrix, InitScalar)) or (isinstance(ins, InitVector) and ins.out.id not in el.params):
            return None
        if isinstance(ins, InitVector):
            total = sympy.Add(*[self._vector_step(ins, r) for r in range(s + 1)])
            return self._emit(Nonlin, self._width_free(total, ins), ins)
        initial = self.envs[0]
        if isinstance(ins, MatMul):
            total = sympy.S.Zero
            if ins.arg.value.id in env:
                dx = self._leaf(ins.arg, env)
                total += el.emit_matmul(MatT(ins.matrix, ins.transposed), VecT(dx, ins.arg.value.dim), self.ctx,
                                        ins.pos).e
            if ins.matrix.id in el.params:
                total += self._matrix_correction(ins, self._leaf(ins.arg, initial), s)
            return self._emit(Nonlin, total, ins)
        at0 = {**{VEC_ARGS[k]: self._leaf(a, initial) for k, a in enumerate(ins.vec_args)},
               **{PARAMS[k]: self._leaf(a, initial) for k, a in enumerate(ins.params)}}
        total = sympy.S.Zero
        for symbol, a in [(VEC_ARGS[k], a) for k, a in enumerate(ins.vec_args)] + \
                         [(PARAMS[k], a) for k, a in enumerate(ins.params)]:
            if a.value.id in env:
                total += ins.fn.diff(symbol).xreplace(at0) * self._leaf(a, env)
        return self._emit(type(ins), total, ins)

    def _emit(self, cls, expr, ins):
        return None if expr == 0 else self._value(cls, expr, ins)


# ------------------------------------------------------------------ gd(...): the arguments

def _numbers(t):
    """The numbers of a list literal or 1-D data, else None."""
    if isinstance(t, ListT) and all(isinstance(v, Num) for v in t.items):
        return np.array([float(v.v) for v in t.items])
    if isinstance(t, DataT) and t.arr.ndim == 1 and not t.tags:
        return np.asarray(t.arr, dtype=float)
    return None


def _loss(el, keywords, node):
    """The Loss named by ``loss = ...`` (default squared)."""
    kw = keywords.get("loss")
    if kw is None:
        return Loss("squared")
    if not isinstance(kw.value, ast.Name):
        raise error(kw.value.pos, "loss must name a loss: squared, softmax, or a function ell(f, y) declared "
                                  "with `fn`")
    name = kw.value.id
    if name in ("squared", "softmax"):
        return Loss(name)
    uf = el.fns.get(name)
    if uf is None:
        raise error(kw.value.pos, f"unknown loss '{name}': use squared, softmax, or a function ell(f, y) "
                                  "declared with `fn`")
    if len(uf.formals) != 2:
        raise error(kw.value.pos, f"the loss function '{name}' must take two arguments, the output and the "
                                  f"label: fn {name}(f, y) = ...; it takes {len(uf.formals)}")
    return Loss(name, uf.body, tuple(uf.formals))


def _outputs(el, node, f, loss):
    """The outputs the loss is a function of: [f], or for softmax every member of f's list (f[c])."""
    if loss.name != "softmax":
        return [f]
    base = node.args[0]
    while isinstance(base, ast.Subscript):
        base = base.base
    entry = el.names.get(base.id) if isinstance(base, ast.Name) else None
    if entry is None or list(entry.pattern).count("u") != 1 or len(entry.entries) < 2:
        raise error(node.args[0].pos, "loss = softmax needs the K >= 2 outputs as one list over the classes, "
                                      "e.g. f[c][k] with f[c][i] = ... for c in 0..K-1")
    return [entry.entries[k] for k in sorted(entry.entries)]


def _batches(el, keywords, n_train, steps, ctx):
    kw = keywords.get("batches")
    if kw is None:
        return None
    from .expressions import elaborate
    t = elaborate(el, kw.value, ctx)
    rows = None
    if isinstance(t, ListT) and all(_numbers(b) is not None for b in t.items):
        rows = [_numbers(b) for b in t.items]
    elif isinstance(t, DataT) and t.arr.ndim == 2 and not t.tags:
        rows = list(np.asarray(t.arr, dtype=float))
    if rows is None:
        raise error(kw.value.pos, "batches must be a list of lists of training-point numbers, one list per step")
    if len(rows) < steps:
        raise error(kw.value.pos, f"{steps} steps need {steps} batches, got {len(rows)}")
    out = []
    for b in rows:
        if not len(b) or not np.all(b == np.round(b)) or b.min() < 0 or b.max() >= n_train or len(set(b)) != len(b):
            raise error(kw.value.pos, f"each batch must list distinct training points 0..{n_train - 1} "
                                      f"(the first len(Y) points), got {b.tolist()}")
        out.append(tuple(int(i) for i in b))
    return tuple(out)


def gd_term(el, node, args, ctx, keywords):
    """``gd(f[k], Y, eta, t[, loss = ..., batches = ..., value = ...])`` (module docstring)."""
    if len(args) != 4:
        raise error(node.pos, "gd takes f[k], the labels of the training points, the learning rate and the "
                              "number of steps: gd(f[k], Y, eta, t)")
    lf = el.leaf_of.get(args[0].e) if isinstance(args[0], ScalT) else None
    if lf is None or lf.value.kind != Kind.SCALAR or len(lf.index) != 1:
        raise error(node.args[0].pos, "gd(f[k], ...): f[k] must be a member of a scalar family over one data set "
                                      "(its first len(Y) points are the training set), e.g. f[k] or f[0]")
    f, names = lf.value, lf.index
    if len(f.axes) != 1:
        raise error(node.args[0].pos, "gd(f[k], ...): f must be a family over one data set (its first "
                                      "len(Y) points are the training set)")
    loss = _loss(el, keywords, node)
    labels = _numbers(args[1])
    if labels is None:
        raise error(node.args[1].pos, "the labels must be a list of numbers (one per training point)")
    if not 1 <= len(labels) <= f.axes[0].size or not np.all(np.isfinite(labels)):
        raise error(node.args[1].pos, f"expected 1 to {f.axes[0].size} finite labels (the first points of "
                                      f"{f.axes[0].name} are the training set), got {len(labels)}")
    fs = _outputs(el, node, f, loss)
    if loss.name == "softmax" and not (np.all(labels == np.round(labels)) and labels.min() >= 0
                                       and labels.max() < len(fs)):
        raise error(node.args[1].pos, f"softmax labels are classes 0..{len(fs) - 1}, one per training point")
    t = args[3]
    if not isinstance(t, Num) or not t.v.is_integer or t.v < 0:
        raise error(node.args[3].pos, "the number of steps must be a non-negative integer")
    steps = int(t.v)
    if isinstance(args[2], Num):
        if not args[2].v.is_positive:
            raise error(node.args[2].pos, "the learning rate must be a positive number")
        etas = _Constant(args[2].v)
    else:
        rates = _numbers(args[2])
        if rates is None or not np.all(rates > 0) or not np.all(np.isfinite(rates)):
            raise error(node.args[2].pos, "the learning rate must be a positive number or a list of them "
                                          "(one per step)")
        if len(rates) < steps:
            raise error(node.args[2].pos, f"{steps} steps need {steps} learning rates, got {len(rates)}")
        etas = tuple(sympy.nsimplify(float(r)) for r in rates)
    batches = _batches(el, keywords, len(labels), steps, ctx)
    kind, scale = _output_scale(el, keywords, ctx)
    key = (tuple(g.id for g in fs), labels.tobytes(), loss, etas, batches, kind, scale)
    if key not in el.trainings:
        el.trainings[key] = kind(el, fs, labels, etas, loss, batches, node.pos, scale)
    training = el.trainings[key]
    training.steps_asked = max(training.steps_asked, steps)
    return _result(el, training, steps, f, names, keywords, ctx, node)


@dataclass(frozen=True)
class _Constant:
    """A constant learning rate: eta_s = eta for every step s."""

    eta: object

    def __getitem__(self, s):
        return self.eta


def _output_scale(el, keywords, ctx):
    """(training class, scale).  ``scale = 1`` (the default: the output is f, a 1/n readout as in muP /
    mean-field): Training; ``scale = sqrt(n)`` (the output is sqrt(n) f, the NTK parametrization's
    readout): KernelTraining.  A width-dependent program takes any positive c n^a (exact replay)."""
    kw = keywords.get("scale")
    if kw is None:
        return Training, sympy.S.One
    from .expressions import elaborate
    t = elaborate(el, kw.value, ctx)
    if isinstance(t, Num) and t.v == 1:
        return Training, sympy.S.One
    if el.width_dependent and isinstance(t, (Num, WidthT)) and _positive_scale(t):
        return Training, (t.v if isinstance(t, Num) else t.e)
    if isinstance(t, WidthT) and sympy.simplify(t.e - sympy.sqrt(WIDTH)) == 0:
        return KernelTraining, sympy.sqrt(WIDTH)
    raise error(kw.value.pos, "scale must be 1 (the output is f: muP, mean-field) or sqrt(n) (the output is "
                              "sqrt(n) f: the NTK parametrization); other scales c n^a have no limit of their own: "
                              "analyse them with `tpc scaling`, run them with `tpc simulate`")


def _positive_scale(t):
    v = t.v if isinstance(t, Num) else t.e
    return all(sympy.sympify(v).subs(WIDTH, w) > 0 for w in (1, 1000))


def _result(el, training, steps, f, names, keywords, ctx, node):
    """f (or ``value = ...``) after the steps, as the statement's term."""
    kw = keywords.get("value")
    if kw is None:
        value = training.at(steps, f.id)
        if value is not None and training.scale != 1 and not isinstance(training, KernelTraining):
            scale = el.as_scalar_leaf(WidthT(training.scale) if training.scale.has(WIDTH) else Num(training.scale),
                                      ctx, node)
            return ScalT(scale * el.leaf(value, tuple(names)))
        if value is not None:
            return ScalT(el.leaf(value, tuple(names)))
        # F_0 - F_0 = 0: still a scalar of the program (data zeros over the statement's index, if any), so
        # that it can be an output
        named = tuple(k for k in names if isinstance(k, str))
        zeros = np.zeros(f.axes[0].size) if named else np.zeros(())
        return ScalT(el.as_scalar_leaf(DataT(zeros, named), ctx, node))
    from .expressions import elaborate
    t = elaborate(el, kw.value, ctx)
    lf = el.leaf_of.get(t.e) if isinstance(t, (ScalT, VecT)) else None
    if lf is None or lf.value.id not in training.cone:
        raise error(kw.value.pos, "value must be a vector or scalar of the program that the trained outputs "
                                  "depend on (e.g. a hidden layer h[k])")
    value = training.at(steps, lf.value.id)
    leaf = el.leaf(value, lf.index)
    return VecT(leaf, value.dim) if lf.value.kind == Kind.VECTOR else ScalT(leaf)


# ------------------------------------------------------------------ the empirical coordinate check

def coord_check_outputs(el):
    """Outputs for ``tpc simulate --coord-check`` (a width-dependent program): for the k-th training,
    each named vector x of its cone over the outputs' data set (or over none) and each step t <= T,
    ``@cc/k/x/t`` = mean(x_t^2) (per data point) and, for t >= 1, ``@dd/k/x/t`` = mean((x_t - x_0)^2);
    a named scalar s (the output: F = scale f) gives ``@cc/k/s/t`` = s_t itself.  RMS sizes are their
    square roots (scaling/coordcheck.py)."""
    from ..ir.core import Output
    from ..ops.scalar_fn import ScalarFn

    outs = []
    for k, tr in enumerate(el.trainings.values()):
        T = max(tr.steps_asked, 1)
        (axis,) = tr.fs[0].axes

        def output(name, leaf, pos):
            value = el.leaf_of[leaf].value
            layout = (("f", 0),) if value.axes else ()
            outs.append(Output(name, pos, layout, (), (), tuple(value.axes), (((), value),)))

        for ins in tr.template:
            v = ins.out
            if v.name.startswith("%") or v.kind == Kind.MATRIX or v.axes not in ((), (axis,)):
                continue
            x0 = tr.at(0, v.id)
            for t in range(T + 1):
                xt = tr.at(t, v.id)
                lt, l0 = (el.leaf(x, (tr.name,) if x.axes else ()) for x in (xt, x0))
                if v.kind == Kind.SCALAR:       # a scalar itself (the output: F = scale f)
                    scaled = v in tr.fs and tr.output_scale != 1
                    output(f"@cc/{k}/{v.name}/{t}", el.emit_cw(ScalarFn, tr._width_free(tr.output_scale * lt, ins),
                                                               tr.ctx, ins.pos) if scaled else lt, ins.pos)
                    continue
                output(f"@cc/{k}/{v.name}/{t}", el.emit_cw(Moment, lt ** 2, tr.ctx, ins.pos), ins.pos)
                if t and xt is not x0:
                    output(f"@dd/{k}/{v.name}/{t}", el.emit_cw(Moment, (lt - l0) ** 2, tr.ctx, ins.pos), ins.pos)
    return outs
