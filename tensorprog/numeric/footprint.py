"""The memory an evaluation needs: the arrays a run holds at its peak, predicted before allocating.

The model follows the evaluator step by step (the execution plan of ``plan.py``, the order of
``Evaluator.run``) and counts the float64 arrays alive after each step plus that step's
temporaries:

* resident: every array reachable from the program and its limit (data tables, Gaussian blocks'
  covariances), counted once per memory buffer;
* a fused kernel or tiled segment writes one array per stored member (and an error array per
  uncertain one) taken from the buffer pool, and copies each input it reads through a diagonal, a
  row or a transpose (``fused.reduced``); the pool keeps what it is given back, so the pool's
  footprint is, per array shape, the most arrays of that shape alive at once;
* a quantity evaluated alone holds its value and error arrays and, while it is computed, the
  temporaries of its method (expressions: two grid-sized arrays; quadrature and Monte Carlo: the
  means, covariances and parameters per point; Hermite series: the pair grid's covariance copy);
* arrays are released after their last use (``plan.last_use``);
* the outputs: a value and an error array per output that is not a plain quantity.

``peak_bytes`` is the largest total over the run; ``tests/test_memory_model.py`` and
``bench/bench_memory.py`` compare it with the measured peak RSS of a process.
"""
from __future__ import annotations

import numpy as np
import sympy

from ..limit.symbols import INDEX, Data, Integral, SteinCoefficient, quantity_of

FLOAT = 8


def grid_bytes(q) -> int:
    return FLOAT * int(np.prod([a.size for a in q.axes], dtype=np.int64))


def array_buffers(*roots, max_depth=8) -> dict:
    """{id of base buffer: bytes} of the distinct numpy buffers reachable from ``roots`` (objects'
    attributes, dicts, lists, tuples; sympy expressions are not entered). Views count once, by
    their base buffer."""
    return _walk(roots, max_depth)


def _walk(roots, max_depth):
    seen_obj, seen_buf = set(), {}
    stack = [(r, 0) for r in roots]
    while stack:
        obj, depth = stack.pop()
        if depth > max_depth:
            continue
        if isinstance(obj, np.ndarray):
            base = obj
            while isinstance(base.base, np.ndarray):
                base = base.base
            seen_buf[id(base)] = max(seen_buf.get(id(base), 0), base.nbytes)
            continue
        if id(obj) in seen_obj:
            continue
        seen_obj.add(id(obj))
        if isinstance(obj, (str, bytes, int, float, complex, bool, type(None), sympy.Basic, type)):
            continue
        if isinstance(obj, dict):
            stack.extend((v, depth + 1) for v in obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend((v, depth + 1) for v in obj)
        else:
            attrs = getattr(obj, "__dict__", None)
            if attrs is not None:
                stack.extend((v, depth + 1) for k, v in attrs.items() if not k.startswith("_execution"))
            for slot in getattr(type(obj), "__slots__", ()):
                if hasattr(obj, slot):
                    stack.append((getattr(obj, slot), depth + 1))
    return seen_buf


def resident_bytes(*roots) -> int:
    """Bytes of the distinct numpy buffers reachable from ``roots`` (``array_buffers``)."""
    return sum(array_buffers(*roots).values())


class _Timeline:
    """Bytes alive: pooled arrays (kept by the pool once allocated), other arrays, and the peak."""

    def __init__(self, base):
        self.base = base
        self.pool_free = {}         # size -> arrays of that size in the pool, unused
        self.pool_bytes = 0         # everything the pool ever allocated (it never returns memory)
        self.other = 0              # arrays outside the pool, alive
        self.peak = base

    def take(self, size):
        """A pooled array of ``size`` bytes (a recycled one when the pool has it)."""
        if size < FLOAT * (1 << 16):            # _BufferPool.MIN_SIZE: small arrays are not recycled
            self.other += size
            return ("other", size)
        if self.pool_free.get(size):
            self.pool_free[size] -= 1
        else:
            self.pool_bytes += size
        return ("pool", size)

    def alloc(self, size):
        self.other += size
        return ("other", size)

    def free(self, handle):
        kind, size = handle
        if kind == "pool":
            self.pool_free[size] = self.pool_free.get(size, 0) + 1
        else:
            self.other -= size

    def mark(self, transient=0):
        self.peak = max(self.peak, self.base + self.pool_bytes + self.other + transient)


def _transposed_reads(runner):
    """Bytes of the inputs a kernel copies: those read through a diagonal, a row or a transpose."""
    total = 0
    for p, pattern in getattr(getattr(runner, "body", runner), "reads", getattr(runner, "inputs", ())):
        axes = sorted({x for x in pattern if isinstance(x, int)})
        if list(pattern) != axes:
            sizes = {x: p.axes[k].size for k, x in enumerate(pattern) if isinstance(x, int)}
            total += FLOAT * int(np.prod(list(sizes.values()) or [1], dtype=np.int64))
    return total


def _alone_transient(q, uncertain):
    """Temporaries while a quantity is evaluated alone (not in a generated kernel)."""
    G = grid_bytes(q)
    d = q.definition
    if isinstance(d, Data):
        return 0
    if isinstance(d, Integral):
        # _gaussian: means (G, dim) and covariances (G, dim, dim); params (G, refs); the method's
        # value and error; the series path copies the covariance grid and writes value and error.
        return G * (d.dim + d.dim ** 2 + 3)
    if isinstance(d, SteinCoefficient):
        k = d.cov.shape[0]
        return G * (3 * k * k + 3 * k + 2)
    return 3 * G            # compile_numpy's result, its error and the broadcast copies


def _alone_bytes(q, uncertain):
    """Arrays a quantity evaluated alone keeps: its value, and its error where it is uncertain."""
    if isinstance(q.definition, Data):
        return 0
    return grid_bytes(q) * (2 if q in uncertain or isinstance(q.definition, (Integral, SteinCoefficient)) else 1)


def evaluation_peak(limit, min_points, resident=0):
    """Predicted peak bytes of ``Evaluator.run`` on ``limit`` (plan for ``min_points``), on top of
    ``resident`` bytes already held (the program's and the limit's arrays)."""
    from .plan import KERNELS, execution_plan

    plan = execution_plan(limit, min_points)
    t = _Timeline(resident)
    handles = {}
    for n, step in enumerate(plan.steps):
        if isinstance(step, KERNELS):
            stored = getattr(step, "stored", None)
            if stored is None:
                stored = step.body.exported
                errs = step.body.uncertain_exported
            else:
                errs = []
            for q in stored:
                handles.setdefault(q, []).append(t.take(grid_bytes(q)))
            for q in errs:
                handles.setdefault(q, []).append(t.take(grid_bytes(q)))
            t.mark(_transposed_reads(step))
        else:
            q = step
            size = _alone_bytes(q, plan.uncertain)
            if size:
                handles.setdefault(q, []).append(t.alloc(size))
            t.mark(_alone_transient(q, plan.uncertain))
        for q in plan.last_use.get(n, ()):
            for h in handles.pop(q, ()):
                t.free(h)
    # outputs: an output that is one plain quantity reference is returned as that array; any other
    # gets a value and an error array, and its expression's temporaries while it is computed
    for o in limit.program.outputs:
        items = limit.outputs[o.name]
        grid = FLOAT * int(np.prod(o.array_shape, dtype=np.int64))
        plain = len(items) == 1 and _plain(items[0][1], len(o.family_axes))
        if not plain:
            t.alloc(2 * grid)
            for _, expr in items:
                t.mark(4 * FLOAT * int(np.prod([a.size for a in o.family_axes], dtype=np.int64)))
        t.mark()
    return t.peak


def _plain(expr, ndim):
    expr = sympy.sympify(expr)
    q = quantity_of(expr)
    return q is not None and tuple(expr.args) == tuple(INDEX[:ndim])
