"""Moment: out = (1/n) sum_alpha fn(x0_alpha, ...; p0, ...), a scalar; its rules."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import sympy

from ..ir.core import Kind
from . import coordinatewise as cw
from .registry import (BACKWARD, CHECK, CSE_KEY, DERIVE, DESCRIBE, EDGES, LISTING, MEMORY, SAMPLE_LIMIT,
                       SCALING_ADJOINT, SCALING_CHANGE, SCALING_SIZE, SIMULATE, SIMULATE_PREPARE)


@dataclass(frozen=True, eq=False)
class Moment(cw.Coordinatewise):
    """out = (1/n) sum_alpha fn(x0_alpha, ...; p0, ...), a scalar."""

    op: ClassVar[str] = "moment"


CHECK.register(Moment)(cw.check_rule(Kind.SCALAR))
CSE_KEY.register(Moment)(cw.cse_key)


@DERIVE.register(Moment)
def _derive_moment(d, ins: Moment):
    """theta° = E phi(Z^{x1}, ..., Z^{xk}; theta°...) (the expectation engine)."""
    d.set_scalar(ins, d.engine.expect(d.substitute(ins), ins.out.axes))


SIMULATE_PREPARE.register(Moment)(cw.prepare)


@SAMPLE_LIMIT.register(Moment)   # the limit's samples are coordinates too
@SIMULATE.register(Moment)
def _simulate_moment(sim, ins: Moment, env, sizes, width, rng, pool):
    """(1/n_x) sum_alpha fn(...), n_x the width of its vectors, summed in slices of the width axis."""
    grid = tuple(a.size for a in ins.out.axes)
    if not ins.vec_args:  # the average of a constant
        env[ins.out.id] = cw.scalar_values(sim, ins, env, grid)
        return
    f, vecs, pars, w, step = cw.width_chunks(sim, ins, env, grid)
    total = np.zeros(grid)
    for a in range(0, w, step):
        b = min(w, a + step)
        total += np.broadcast_to(f(*[x[..., a:b] for x in vecs], *pars), grid + (b - a,)).sum(axis=-1)
    env[ins.out.id] = total / w


MEMORY.register(Moment)(cw.memory)
LISTING.register(Moment)(cw.listing)


@DESCRIBE.register(Moment)
def _describe_moment(ins: Moment, arg_text, show):
    return f"mean({cw.describe_body(ins, arg_text, show)})"


EDGES.register(Moment)(cw.edges)


@BACKWARD.register(Moment)
def _backward_moment(bw, ins: Moment):
    """s = (1/(rho n)) sum_alpha phi(x_alpha; p): xbar_j += sbar dphi/dx_j / rho, pbar_m += sbar mean(dphi/dp_m)."""
    sbar = bw.scalar_adjoint(ins.out)
    if sbar is None:
        return
    phi, vectors, scalars = bw.substituted(ins)
    rho = bw.rho(ins.vec_args[0].value) if ins.vec_args else 1
    for x in vectors:
        bw.add(x, sbar * bw.diff(phi, x, ins) / rho)
    for p in scalars:
        bw.add(p, sbar * bw.moment(bw.diff(phi, p, ins), ins))


@SCALING_SIZE.register(Moment)
def _scaling_size_moment(an, ins: Moment):
    """mean(phi) is of phi's order when E[phi(Z)] != 0, else the central-limit fluctuation: 1/2 less."""
    from ..scaling.orders import Undecided

    cw.scaling_size(an, ins)
    if ins.out.id in an.undecided:
        return
    try:
        if an.moment_limit_is_zero(ins):
            an.size[ins.out.id] -= sympy.Rational(1, 2)
    except Undecided as u:
        an.undecided[ins.out.id] = u.reason


SCALING_CHANGE.register(Moment)(cw.scaling_change)
SCALING_ADJOINT.register(Moment)(cw.scaling_adjoint)
