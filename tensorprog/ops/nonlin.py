"""Nonlin: out_alpha = fn(x0_alpha, ..., x{k-1}_alpha; p0, ...), coordinatewise; its rules."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..ir.core import Kind
from . import coordinatewise as cw
from .registry import (BACKWARD, CHECK, CSE_KEY, DERIVE, DESCRIBE, EDGES, LISTING, MEMORY, SAMPLE_LIMIT,
                       SCALING_ADJOINT, SCALING_CHANGE, SCALING_SIZE, SIMULATE, SIMULATE_PREPARE)


@dataclass(frozen=True, eq=False)
class Nonlin(cw.Coordinatewise):
    """out_alpha = fn(x0_alpha, ..., x{k-1}_alpha; p0, ...), coordinatewise."""

    op: ClassVar[str] = "nonlin"


CHECK.register(Nonlin)(cw.check_rule(Kind.VECTOR))
CSE_KEY.register(Nonlin)(cw.cse_key)


@DERIVE.register(Nonlin)
def _derive_nonlin(d, ins: Nonlin):
    """Z^y = phi(Z^{x1}, ..., Z^{xk}; theta°...)."""
    d.Z[ins.out.id] = d.substitute(ins)


SIMULATE_PREPARE.register(Nonlin)(cw.prepare)


@SAMPLE_LIMIT.register(Nonlin)   # the limit's samples are coordinates too
@SIMULATE.register(Nonlin)
def _simulate_nonlin(sim, ins: Nonlin, env, sizes, width, rng, pool):
    """y_alpha = fn(x0_alpha, ...; p0, ...), in slices of the width axis."""
    grid = tuple(a.size for a in ins.out.axes)
    if not ins.vec_args:
        env[ins.out.id] = cw.scalar_values(sim, ins, env, grid)
        return
    f, vecs, pars, w, step = cw.width_chunks(sim, ins, env, grid)
    out = np.empty(grid + (w,))
    for a in range(0, w, step):
        b = min(w, a + step)
        out[..., a:b] = f(*[x[..., a:b] for x in vecs], *pars)
    env[ins.out.id] = out


MEMORY.register(Nonlin)(cw.memory)
LISTING.register(Nonlin)(cw.listing)
DESCRIBE.register(Nonlin)(cw.describe_body)
EDGES.register(Nonlin)(cw.edges)


@BACKWARD.register(Nonlin)
def _backward_nonlin(bw, ins: Nonlin):
    """y = phi(x_1, ..., x_k; p): xbar_j += ybar dphi/dx_j, pbar_m += rho mean(ybar dphi/dp_m)
    (adjoints xbar = n df/dx of vectors of width rho n, pbar = df/dp of scalars)."""
    ybar = bw.vector_adjoint(ins.out)
    if ybar is None:
        return
    phi, vectors, scalars = bw.substituted(ins)
    for x in vectors:
        bw.add(x, ybar * bw.diff(phi, x, ins))
    for p in scalars:
        bw.add(p, bw.rho(ins.out) * bw.moment(ybar * bw.diff(phi, p, ins), ins))

SCALING_SIZE.register(Nonlin)(cw.scaling_size)
SCALING_CHANGE.register(Nonlin)(cw.scaling_change)
SCALING_ADJOINT.register(Nonlin)(cw.scaling_adjoint)
