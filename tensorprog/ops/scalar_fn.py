"""ScalarFn: out = fn(p0, ..., p{m-1}), a function of scalars only; its rules."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..ir.core import Kind
from . import coordinatewise as cw
from .registry import (BACKWARD, CHECK, CSE_KEY, DERIVE, DESCRIBE, EDGES, LISTING, MEMORY, SAMPLE_LIMIT,
                       SCALING_ADJOINT, SCALING_CHANGE, SCALING_SIZE, SIMULATE, SIMULATE_PREPARE)


@dataclass(frozen=True, eq=False)
class ScalarFn(cw.Coordinatewise):
    """out = fn(p0, ..., p{m-1}), a function of scalars only."""

    op: ClassVar[str] = "scalar_fn"


CHECK.register(ScalarFn)(cw.check_rule(Kind.SCALAR, vectors_allowed=False))
CSE_KEY.register(ScalarFn)(cw.cse_key)


@DERIVE.register(ScalarFn)
def _derive_scalar_fn(d, ins: ScalarFn):
    """theta° = phi(theta°...)."""
    d.set_scalar(ins, d.substitute(ins))


SIMULATE_PREPARE.register(ScalarFn)(cw.prepare)


@SAMPLE_LIMIT.register(ScalarFn)   # the limit's samples are coordinates too
@SIMULATE.register(ScalarFn)
def _simulate_scalar_fn(sim, ins: ScalarFn, env, sizes, width, rng, pool):
    env[ins.out.id] = cw.scalar_values(sim, ins, env, tuple(a.size for a in ins.out.axes))


@MEMORY.register(ScalarFn)
def _memory_scalar_fn(sim, ins: ScalarFn, nbytes, sizes, born):
    return nbytes[ins.out.id], 0


LISTING.register(ScalarFn)(cw.listing)
DESCRIBE.register(ScalarFn)(cw.describe_body)
EDGES.register(ScalarFn)(cw.edges)


@BACKWARD.register(ScalarFn)
def _backward_scalar_fn(bw, ins: ScalarFn):
    """s = F(p_1, ..., p_m): pbar_j += sbar dF/dp_j."""
    sbar = bw.scalar_adjoint(ins.out)
    if sbar is None:
        return
    phi, _, scalars = bw.substituted(ins)
    for p in scalars:
        bw.add(p, sbar * bw.diff(phi, p, ins))

SCALING_SIZE.register(ScalarFn)(cw.scaling_size)
SCALING_CHANGE.register(ScalarFn)(cw.scaling_change)
SCALING_ADJOINT.register(ScalarFn)(cw.scaling_adjoint)
