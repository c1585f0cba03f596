"""Fusion of pointwise quantities into generated numba kernels, and the evaluation schedule.

Closed-form recursions (an N x N kernel through L layers: E_l(i, j) from E_{l-1}(i, j) and the
diagonals) are pointwise over the grid.  Quantities on the same large grid whose references to
each other are pointwise (same indices, same order) form one *group*: one generated kernel loops
over the grid once (ranges of the first axis in parallel, rowpool.py) and keeps every member in registers, writing
only the members something else reads.  A quantity joins a group only if no quantity outside the
group lies on a dependency path from the group to it, so the groups and the remaining quantities
form a DAG; ``schedule()`` orders it.

A member whose inputs carry an error estimate gets first-order error propagation in the same loop:
err(f) = sum_k |df/dx_k| err(x_k), the derivatives taken symbolically.
"""
from __future__ import annotations

import hashlib
import heapq

import numpy as np
import sympy

from .. import functions as _functions  # noqa: F401  (registers the builtin nonlinearities)
from .. import nonlinearities as NL

from ..limit.symbols import INDEX, Integral, SteinCoefficient, quantity_of, qrefs_in
from .codegen import NumbaPrinter, module_source, with_standard_deviations

FUSE_MIN_POINTS = 50_000
# A group is closed once its members call this many transcendental functions.  Compile time grows
# quickly with the size of a kernel; small groups of the same structure (one layer of a deep
# network each) generate identical source and are compiled once, then reused.
MAX_GROUP_WEIGHT = 6
_CHEAP = {"Add", "Mul", "Pow", "Symbol", "Integer", "Rational", "Float", "Half", "One", "Zero", "NegativeOne",
          "Pi", "Max", "Min", "SafeCorr", "Zscore"} | NL.CHEAP_VIEW


def signature(q):
    """The structure of a definition with its quantity references anonymised (numbered in order of
    first appearance, keeping their index pattern): equal for the same quantity at every layer."""
    refs = []
    for node in sympy.preorder_traversal(q.definition):
        if quantity_of(node) is not None and node not in refs:
            refs.append(node)
    return q.definition.xreplace({r: sympy.Function(f"R{k}")(*r.args) for k, r in enumerate(refs)})


def weight(expr):
    """Number of transcendental function calls in ``expr`` (the cost that drives compile time)."""
    return sum(1 for f in sympy.preorder_traversal(expr)
               if isinstance(f, sympy.Function) and type(f).__name__ not in _CHEAP
               and not quantity_of(f))


def _deps(q):
    d = q.definition
    if isinstance(d, sympy.Basic):
        exprs = [d]
    elif isinstance(d, Integral):
        exprs = [d.integrand, *d.mean, *d.cov]
    elif isinstance(d, SteinCoefficient):
        exprs = [*d.moments, *d.cov]
    else:
        exprs = []
    return {quantity_of(r) for e in exprs for r in qrefs_in(sympy.sympify(e))}


def uncertain_quantities(quantities):
    """Quantities whose value carries an error estimate (integrals, Stein, and what depends on them)."""
    out = set()
    for q in quantities:
        if isinstance(q.definition, (Integral, SteinCoefficient)) or _deps(q) & out:
            out.add(q)
    return out


class Group:
    def __init__(self, axes):
        self.axes = axes
        self.members = []
        self.weight = 0
        self.signatures = set()

    def __repr__(self):
        return f"Group({len(self.members)} on {[a.name for a in self.axes]})"


def _identity(ref, k):
    return tuple(ref.args) == tuple(INDEX[:k])


def plan(limit, fuse_min_points=FUSE_MIN_POINTS):
    """Groups of fusable quantities and a schedule: a list of Quantity or Group."""
    qs = limit.quantities
    deps = {q: _deps(q) for q in qs}
    group_of = {}
    groups = []

    def node(q):
        return group_of.get(q, q)

    def depends_on(start, target):
        """Whether the condensed node ``start`` depends (transitively) on the group ``target``."""
        stack, seen = [start], set()
        while stack:
            n = stack.pop()
            if n is target:
                return True
            if id(n) in seen:
                continue
            seen.add(id(n))
            members = n.members if isinstance(n, Group) else [n]
            stack.extend(node(p) for m in members for p in deps[m])
        return False

    for q in qs:
        size = int(np.prod([a.size for a in q.axes], dtype=np.int64))
        if not isinstance(q.definition, sympy.Basic) or size < fuse_min_points or len(q.axes) == 0:
            continue
        target = None
        w = weight(q.definition)
        sig = signature(q)
        # Prefer the group holding most of q's inputs (siblings share work: the relu and step
        # kernels of one layer share the same correlation and arccosine), then the latest one.
        producers = [group_of[p] for p in deps[q] if p in group_of]
        candidates = sorted(set(producers), key=lambda g: -producers.count(g)) + list(reversed(groups))
        for g in dict.fromkeys(candidates):
            # A repeated structure starts the next layer: cutting there makes the kernels of all
            # layers identical, so they are compiled once.
            if g.axes != q.axes or (g.weight + w > MAX_GROUP_WEIGHT and g.members) or sig in g.signatures:
                continue
            refs = qrefs_in(q.definition)
            if any(group_of.get(quantity_of(r)) is g and not _identity(r, len(q.axes)) for r in refs):
                continue
            if any(node(p) is not g and depends_on(node(p), g) for p in deps[q]):
                continue
            target = g
            break
        if target is None:
            target = Group(q.axes)
            groups.append(target)
        target.members.append(q)
        target.weight += w
        target.signatures.add(sig)
        group_of[q] = target
    return schedule(qs, deps, group_of), group_of


def schedule(qs, deps, group_of):
    """Topological order of the condensed graph: among the ready steps, those on smaller grids first
    (then the quantities' order), so that the steps on the largest grid come last and together, where
    ``tiled.segments`` can run them in one pass."""
    node = {q: group_of.get(q, q) for q in qs}
    preds = {}
    for q in qs:
        preds.setdefault(node[q], set()).update(node[p] for p in deps[q] if node[p] is not node[q])
    pending = list(dict.fromkeys(node[q] for q in qs))

    def key(k):
        # smaller grids first; groups last among equals (data and other single steps they may
        # need come first); then the quantities' order
        n = pending[k]
        return (int(np.prod([a.size for a in n.axes], dtype=np.int64)), isinstance(n, Group), k)

    # Kahn's algorithm with a heap: the ready step of least key next, in O(V log V + E)
    position = {n: k for k, n in enumerate(pending)}
    waiting = {n: len(preds.get(n, ())) for n in pending}
    succs = {}
    for n in pending:
        for p in preds.get(n, ()):
            succs.setdefault(p, []).append(n)
    ready = [key(k) for k, n in enumerate(pending) if waiting[n] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        n = pending[heapq.heappop(ready)[2]]
        order.append(n)
        for m in succs.get(n, ()):
            waiting[m] -= 1
            if waiting[m] == 0:
                heapq.heappush(ready, key(position[m]))
    if len(order) != len(pending):  # pragma: no cover - plan() never builds a cycle
        raise RuntimeError("cyclic evaluation plan")
    return order


class GroupBody:
    """The members of a group as straight-line code over reads of input arrays.

    Each member's definition is rewritten over its inputs only (earlier members inlined), and the
    common subexpressions of the whole group are shared (sympy.cse) -- e.g. the correlation and its
    arccosine are computed once for the relu and the step kernel of the same layer.  ``reads`` lists
    the distinct reads as ``(quantity, pattern)`` (per axis of the quantity: a grid axis, or n + 0.5
    for a fixed member n); a read with repeated indices or fixed members (a diagonal C(i, i), a row
    C(0, j)) or transposed indices reads a contiguous copy made beforehand (``reduced``), so inner
    loops walk memory in order.  ``lines`` compute ``r<k>`` (exported member k) and ``q<k>`` (its
    error estimate) from the reads.
    """

    def __init__(self, members, exported, uncertain):
        self.exported = list(exported)
        self.uncertain_exported = [q for q in self.exported if q in uncertain]
        self.reads = []
        self.axes_of = []   # the grid axes each read depends on (increasing)
        self.uncertain_reads = []
        sym_of = {}

        def read(ref):
            p = quantity_of(ref)
            pattern = tuple(INDEX.index(a) if a in INDEX else int(a) + 0.5 for a in ref.args)
            if (p, pattern) not in sym_of:
                sym_of[(p, pattern)] = _a(len(self.reads))
                self.reads.append((p, pattern))
                self.axes_of.append(sorted({x for x in pattern if isinstance(x, int)}))
                if p in uncertain:
                    self.uncertain_reads.append(len(self.reads) - 1)
            return sym_of[(p, pattern)]

        value = {}
        for q in members:
            sub = {}
            for r in sorted(qrefs_in(q.definition), key=sympy.default_sort_key):
                p = quantity_of(r)
                sub[r] = value[p] if p in value else read(r)
            value[q] = q.definition.xreplace(sub)
        errors = []
        for q in self.uncertain_exported:
            terms = [sympy.Abs(sympy.diff(value[q], _a(m))) * _e(m) for m in self.uncertain_reads
                     if _a(m) in value[q].free_symbols]
            errors.append(sympy.Add(*terms))
        outputs = [with_standard_deviations(e) for e in [value[q] for q in self.exported] + errors]
        self._replacements, self._reduced = sympy.cse(outputs, order="none",
                                                      symbols=sympy.numbered_symbols("t", real=True))

    def lines(self, read_text, err_text):
        """Code lines, with read m printed as ``read_text(m)`` and its error as ``err_text(m)``."""
        names = {_a(m): read_text(m) for m in range(len(self.reads))}
        names.update({_e(m): err_text(m) for m in self.uncertain_reads})
        out = []
        for t, e in self._replacements:
            names[t] = t.name
            out.append(f"{t.name} = {NumbaPrinter(names).doprint(e)}")
        n = len(self.exported)
        out += [f"r{k} = {NumbaPrinter(names).doprint(e)}" for k, e in enumerate(self._reduced[:n])]
        out += [f"q{k} = {NumbaPrinter(names).doprint(e)}" for k, e in enumerate(self._reduced[n:])]
        return out


def _a(m):
    return sympy.Symbol(f"a{m}", real=True)


def _e(m):
    return sympy.Symbol(f"e{m}", real=True)


def reduced(arr, pattern):
    """``arr`` as read with ``pattern``: an array over the distinct grid axes in increasing order,
    contiguous (a diagonal, a row, a transpose are copied once)."""
    arr = np.asarray(arr, dtype=np.float64)
    axes = sorted({x for x in pattern if isinstance(x, int)})
    if list(pattern) == axes:
        return np.ascontiguousarray(arr)
    idx = []
    for k, x in enumerate(pattern):
        if isinstance(x, int):
            shape = [1] * len(axes)
            shape[axes.index(x)] = arr.shape[k]
            idx.append(np.arange(arr.shape[k]).reshape(shape))
        else:
            idx.append(int(x - 0.5))
    return np.ascontiguousarray(arr[tuple(idx)])


def _index_text(axes):
    return ", ".join(f"i{p}" for p in axes) or "()"


class FusedKernel:
    """One group as one kernel over full arrays."""

    def __init__(self, group, needed, uncertain, names=None):
        self.group = group
        k = len(group.axes)
        self.body = b = GroupBody(group.members, [q for q in group.members if q in needed], uncertain)
        lines = b.lines(lambda m: f"in{m}[{_index_text(b.axes_of[m])}]",
                        lambda m: f"err{b.uncertain_reads.index(m)}[{_index_text(b.axes_of[m])}]")
        ix = _index_text(range(k))
        lines += [f"out{s}[{ix}] = r{s}" for s in range(len(b.exported))]
        lines += [f"oerr{s}[{ix}] = q{s}" for s in range(len(b.uncertain_exported))]
        params = ([f"out{s}" for s in range(len(b.exported))] + [f"oerr{s}" for s in range(len(b.uncertain_exported))]
                  + [f"in{m}" for m in range(len(b.reads))] + [f"err{j}" for j in range(len(b.uncertain_reads))]
                  + ["out_shape"])
        # the first axis from lo to hi: ranges of it run in parallel on the row pool (rowpool.py)
        loops = [f"{'    ' * p}for i{p} in {'range(lo, hi)' if p == 0 else f'range(out_shape[{p}])'}:"
                 for p in range(k)]
        self.fn_name = "fused_" + hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]
        src = ["@njit(nogil=True, **_JIT)", f"def {self.fn_name}({', '.join(['lo', 'hi'] + params)}):"]
        src += ["    " + ln for ln in loops] + ["    " + "    " * k + ln for ln in lines or ["pass"]]
        self.source = module_source("\n".join(src))

    @property
    def members(self):
        return self.group.members

    def run(self, values, errors, alloc=np.empty):
        """Run the kernel; returns {quantity: (value array, error array or 0.0)} for exported members."""
        from .cache import load_generated  # imports numba: only when a large grid needs a kernel
        from .rowpool import run_ranges

        fn = getattr(load_generated(self.source, stem="fused"), self.fn_name)
        b = self.body
        shape = tuple(a.size for a in self.group.axes)
        outs = [alloc(shape) for _ in b.exported]
        oerrs = [alloc(shape) for _ in b.uncertain_exported]
        ins = [reduced(values[p], pattern) for p, pattern in b.reads]
        errs = [reduced(np.broadcast_to(np.asarray(errors[b.reads[m][0]], dtype=np.float64),
                                        np.shape(values[b.reads[m][0]])), b.reads[m][1]) for m in b.uncertain_reads]
        run_ranges(fn, shape[0] if shape else 1, *outs, *oerrs, *ins, *errs, np.array(shape, dtype=np.int64))
        err_of = dict(zip(b.uncertain_exported, oerrs))
        return {q: (out, err_of.get(q, 0.0)) for q, out in zip(b.exported, outs)}


def needed_outside(limit, group_of):
    """Quantities read by something outside their own group (or by an output); ``group_of`` maps a
    quantity to the group (or segment) that computes it."""
    needed = set()
    for q in limit.quantities:
        for p in _deps(q):
            if group_of.get(p) is None or group_of.get(p) is not group_of.get(q):
                needed.add(p)
    for items in limit.outputs.values():
        for _, e in items:
            needed |= {quantity_of(r) for r in qrefs_in(sympy.sympify(e))}
    return needed

