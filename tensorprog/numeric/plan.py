"""The execution plan of a limit program: which quantities run fused, tiled or alone, and when each
array can be recycled.

Planning (grouping, code generation, common subexpressions) is symbolic work that depends only on
the limit program and the backend, not on the run: it is done once per limit program and kept on it,
so evaluating the same limit again (a benchmark, a sweep over seeds) pays only for the arithmetic.
"""
from __future__ import annotations

import sympy

from ..limit.symbols import quantity_of, qrefs_in
from . import fused, tiled


class ExecutionPlan:
    """``steps``: a list of ``Quantity`` (evaluated alone), ``fused.FusedKernel`` (one group) or
    ``tiled.Segment`` (consecutive groups, one pass over the grid); ``last_use``: step index ->
    quantities that no later step or output reads."""

    def __init__(self, limit, min_points):
        self.uncertain = fused.uncertain_quantities(limit.quantities)
        if min_points is None:
            self.steps = list(limit.quantities)
        else:
            raw, _ = fused.plan(limit, min_points)
            raw = tiled.segments(raw, self.uncertain)
            owner = {q: step for step in raw for q in members_of(step)}
            # What a step must write to full arrays: members read by another step or an output.
            # Inside a segment, values passed between its groups stay in per-tile scratch rows.
            needed = fused.needed_outside(limit, owner)
            self.steps = [tiled.Segment(s, needed) if isinstance(s, list)
                          else fused.FusedKernel(s, needed, self.uncertain, limit.names) if isinstance(s, fused.Group)
                          else s for s in raw]
        self.last_use = self._last_uses(limit)

    def _last_uses(self, limit):
        where = {}
        for n, step in enumerate(self.steps):
            for q in members_of(step):
                for p in fused._deps(q):
                    where[p] = n
        keep = {quantity_of(r) for items in limit.outputs.values() for _, e in items
                for r in qrefs_in(sympy.sympify(e))}
        out = {}
        for q, n in where.items():
            if q not in keep:
                out.setdefault(n, []).append(q)
        return out


KERNELS = (fused.FusedKernel, tiled.Segment)


def members_of(step):
    """The quantities a schedule step computes."""
    if isinstance(step, list):
        return [q for g in step for q in g.members]
    if isinstance(step, (fused.Group, fused.FusedKernel, tiled.Segment)):
        return list(step.members)
    return [step]


def execution_plan(limit, min_points):
    """The plan for ``limit`` (built once per limit program and fusion threshold)."""
    cache = limit.__dict__.setdefault("_execution_plans", {})
    if min_points not in cache:
        cache[min_points] = ExecutionPlan(limit, min_points)
    return cache[min_points]
