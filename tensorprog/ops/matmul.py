"""MatMul: out = W x (or W^T x), with its rules, including its Gaussian-group rule in the limit.

In the limit (THEORY §3) the outputs W x_1, W x_2, ... of one matrix form a Gaussian group
Zhat^{W x} with Cov(Zhat^{Wx}, Zhat^{Wy}) = sigma^2 E[Z^x Z^y] (times rho = rows/cols for W^T),
independent of every other group; W^T x gets the correction ("Zdot") term
sigma^2 rho sum_y Z^y E[dZ^x / dZhat^{W y}] from the partner group of W (and symmetrically).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import sympy

from ..ir.core import Arg, Instr, Kind, Value
from .registry import (BACKWARD, CHECK, CSE_KEY, DERIVE, DESCRIBE, EDGES, GAUSSIAN_COV, GAUSSIAN_MEAN, LISTING, MEMORY,
                       SAMPLE_LIMIT, SCALING_ADJOINT, SCALING_CHANGE, SCALING_SIZE, SIMULATE, SIMULATE_PREPARE, nothing)


@dataclass(frozen=True, eq=False)
class MatMul(Instr):
    """out = W x (or W^T x when ``transposed``)."""

    matrix: Value = None
    arg: Arg = None
    transposed: bool = False
    op: ClassVar[str] = "matmul"

    def args(self):
        return (Arg(self.matrix), self.arg)


@CHECK.register(MatMul)
def _check_matmul(ins: MatMul):
    if ins.matrix.kind != Kind.MATRIX:
        yield f"'{ins.matrix.name}' is not a matrix"
        return
    if ins.arg.value.kind != Kind.VECTOR:
        yield f"'{ins.arg.value.name}' is not a vector"
        return
    rows, cols = ins.matrix.dim
    need, out = (rows, cols) if ins.transposed else (cols, rows)
    if ins.arg.value.dim != need:
        yield f"shape mismatch in {ins.matrix.name}{'.T' if ins.transposed else ''} @ {ins.arg.value.name}"
    if ins.out.dim != out:
        yield "matmul result has the wrong width"


@CSE_KEY.register(MatMul)
def _cse_key_matmul(cls, axes, *, matrix, arg, transposed):
    return ("matmul", matrix.id, transposed, arg.value.id, arg.index, axes)


# ---------------------------------------------------------------------- derive (limit pass)

def group_scale(s2, matrix, transposed):
    """sigma^2 for the covariance and Zdot of W x; sigma^2 rho (rho = rows/cols) for W^T x (THEORY §3)."""
    rows, cols = matrix.dim
    return s2 * _ratio(rows / cols) if transposed else s2


@functools.lru_cache(maxsize=256)
def _ratio(x):
    # nsimplify costs ~0.3 ms and is asked for every MatMul by W^T of a deep network
    return sympy.nsimplify(x)


def scale(d, ins: MatMul):
    return group_scale(d.sigma2[ins.matrix.id], ins.matrix, ins.transposed)


@DERIVE.register(MatMul)
def _derive_matmul(d, ins: MatMul):
    """Z^{Wx} = Zhat^{Wx} + sigma^2 sum_y Z^y E[dZ^x / dZhat^{W^T y}] (for W^T x: sigma^2 rho, partner W y)."""
    from ..limit.derive import ZdotTerm, _compose
    from ..limit.symbols import INDEX, atom_of, atoms_in, new_atom, reindex
    group = ("W", ins.matrix.id, ins.transposed)
    partner = ("W", ins.matrix.id, not ins.transposed)
    atom = new_atom(ins.out, group, d.name(ins.out), ins)
    d.atom[ins.out.id] = atom
    own = list(INDEX[:len(ins.out.axes)])
    x = d.z_of(ins.arg)
    s = scale(d, ins)
    zdot = []
    for a in sorted(atoms_in(x), key=sympy.default_sort_key):
        info = atom_of(a)
        if info.group != partner:
            continue
        src = info.instr
        y = reindex(d.Z[src.arg.value.id], _compose(src.arg.index, a.args))
        coef, method, derivative = d.engine.derivative(x, a, ins.out.axes)
        d.zdot.append(ZdotTerm(ins, a, y, coef, method, s, derivative))
        if coef != 0:
            zdot.append(y * coef)
    d.Z[ins.out.id] = atom(*own) + s * sympy.Add(*zdot)
    d.prime_covariances(atom, ins)


@GAUSSIAN_MEAN.register(MatMul)
def _mean_matmul(d, a):
    return sympy.S.Zero


@GAUSSIAN_COV.register(MatMul)
def _cov_matmul(d, a, b, axes):
    """Cov(Zhat^{Wx}, Zhat^{Wy}) = sigma^2 (rho) E[Z^x Z^y], one quantity per canonical pair."""
    from ..limit.expectation import canonical
    from ..limit.symbols import reindex
    pair = a * b if a != b else a ** 2
    g, gaxes, syms = canonical(pair, axes)
    key = (g, gaxes)
    if key not in d._cov_q:
        d._cov_q[key] = _group_cov(d, g, gaxes)
    return reindex(d._cov_q[key], syms)


def _group_cov(d, pair, axes):
    """sigma^2 (rho) E[Z^x Z^y] for the two Zhat atoms in ``pair`` (canonical index symbols)."""
    from ..limit.derive import _compose
    from ..limit.symbols import atom_of, atoms_in, new_quantity, reindex
    facs = sorted(atoms_in(pair), key=sympy.default_sort_key)
    a, b = (facs[0], facs[0]) if len(facs) == 1 else facs
    A, B = atom_of(a), atom_of(b)
    xa = reindex(d.Z[A.instr.arg.value.id], _compose(A.instr.arg.index, a.args))
    xb = reindex(d.Z[B.instr.arg.value.id], _compose(B.instr.arg.index, b.args))
    outer, d._current = d._current, A.instr  # what this covariance needs belongs to the MatMul
    try:
        moment = d.engine.expect(xa * xb, axes)
    finally:
        d._current = outer
    s = scale(d, A.instr)
    value = sympy.sympify(s * moment)
    if value.is_number:
        return value
    q = d.add(new_quantity("Σ", axes, value, "cov", origin=(A.label, A.instr.pos),
                           method=f"{sympy.sstr(s)}·E[Z^x Z^y]", meaning=("cov", a, b)))
    return q.ref()


# ---------------------------------------------------------------------- simulate

SIMULATE_PREPARE.register(MatMul)(nothing)


@SIMULATE.register(MatMul)
def _simulate_matmul(sim, ins: MatMul, env, sizes, width, rng, pool):
    """y = W x or W^T x: one BLAS product for a whole family (X W^T or X W, no copy of W)."""
    from ..simulate.simulator import _gather
    grid = tuple(a.size for a in ins.out.axes)
    w_mat = env[ins.matrix.id]
    x = _gather(env[ins.arg.value.id], ins.arg.index, grid, vector=True)
    cols = x.shape[-1]
    flat = np.broadcast_to(x, grid + (cols,)).reshape(-1, cols)
    y = flat @ (w_mat if ins.transposed else w_mat.T)
    env[ins.out.id] = y.reshape(grid + (y.shape[-1],))


@SAMPLE_LIMIT.register(MatMul)
def _sample_matmul(sampler, ins: MatMul, env, sizes, samples, rng, pool):
    """Draws of Z^{Wx} = Zhat^{Wx} + s sum_k Z^{y_k} E[dZ^x / dZhat^{W^T y_k}] (simulate/limit_sampler.py):
    Zhat from W's group given its earlier draws, the correction from the partner group by Stein's lemma."""
    from ..simulate.simulator import _gather
    grid = tuple(a.size for a in ins.out.axes)
    x = _gather(env[ins.arg.value.id], ins.arg.index, grid, vector=True)
    flat = np.ascontiguousarray(np.broadcast_to(x, grid + (samples,)).reshape(-1, samples))
    own = sampler.group(ins.matrix, ins.transposed)
    partner = sampler.group(ins.matrix, not ins.transposed)
    z = own.draw(flat, rng) + own.scale * partner.stein_combination(flat)
    env[ins.out.id] = z.reshape(grid + (samples,))


@MEMORY.register(MatMul)
def _memory_matmul(sim, ins: MatMul, nbytes, sizes, born):
    return nbytes[ins.out.id], nbytes[ins.arg.value.id]


# ---------------------------------------------------------------------- listing, names, graph

@LISTING.register(MatMul)
def _listing_matmul(ins: MatMul):
    return f"matmul {ins.matrix.name}{'.T' if ins.transposed else ''} @ {ins.arg}"


@DESCRIBE.register(MatMul)
def _describe_matmul(ins: MatMul, arg_text, show):
    from ..ir.describe import _is_simple
    arg = arg_text(ins.arg, show)
    if not _is_simple(arg):
        arg = f"({arg})"
    return f"{ins.matrix.name}{'.T' if ins.transposed else ''}@{arg}"


@EDGES.register(MatMul)
def _edges_matmul(ins: MatMul):
    return ((ins.matrix, "matrix^T" if ins.transposed else "matrix"), (ins.arg.value, "arg"))


# ---------------------------------------------------------------------- reverse mode

@BACKWARD.register(MatMul)
def _backward_matmul(bw, ins: MatMul):
    """h = W x: xbar += W^T hbar, and df/dW = (hbar / n) x^T, recorded as the use (left hbar, right x);
    h = W^T y: ybar += W hbar, df/dW = y (hbar / n)^T, the use (left y, right hbar)."""
    hbar = bw.vector_adjoint(ins.out)
    if hbar is None:
        return
    x = bw.arg_leaf(ins.arg)
    bw.add(x, bw.matmul(ins.matrix, hbar, not ins.transposed, ins))
    bw.use(ins.matrix, (x, hbar) if ins.transposed else (hbar, x))


# ---------------------------------------------------------------------- tpc scaling (tensorprog/scaling)

@SCALING_SIZE.register(MatMul)
def _scaling_size_matmul(an, ins: MatMul):
    """W x: the order of x plus order(n s2) / 2 (the central limit over the fan-in)."""
    an.size[ins.out.id] = an.guarded(ins, lambda: an.size[ins.arg.value.id] + an.matrix_factor(ins.matrix))


@SCALING_CHANGE.register(MatMul)
def _scaling_change_matmul(an, ins: MatMul):
    """Delta(W x) = W Delta x + (Delta W) x: the larger order of the two."""
    from ..scaling.orders import ZERO, oadd, omax

    parts = []
    if ins.arg.value.id in an.step_change:
        parts.append(oadd(an.step_change[ins.arg.value.id], an.matrix_factor(ins.matrix)))
    if an.is_trained(ins.matrix):
        parts.append(an.matrix_step(ins))
    o = an.guarded(ins, lambda: omax(*parts))
    if o != ZERO:
        an.step_change[ins.out.id] = o


@SCALING_ADJOINT.register(MatMul)
def _scaling_adjoint_matmul(an, ins: MatMul):
    """n df/dx = W^T (n df/dh): the order of h's plus order(n s2) / 2."""
    if ins.out.id in an.adj:
        an.add_adjoint(ins.arg.value, an.adj[ins.out.id] + an.matrix_factor(ins.matrix))
