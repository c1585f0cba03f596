"""Fusion of pointwise quantities into generated numba kernels, and the evaluation schedule.

Closed-form recursions (an N x N kernel through L layers: E_l(i, j) from E_{l-1}(i, j) and the
diagonals) are pointwise over the grid.  Quantities on the same large grid whose references to
each other are pointwise (same indices, same order) form one *group*: one generated kernel loops
over the grid once (``prange`` over the first axis) and keeps every member in registers, writing
only the members something else reads.  A quantity joins a group only if no quantity outside the
group lies on a dependency path from the group to it, so the groups and the remaining quantities
form a DAG; ``schedule()`` orders it.

A member whose inputs carry an error estimate gets first-order error propagation in the same loop:
err(f) = sum_k |df/dx_k| err(x_k), the derivatives taken symbolically.
"""
from __future__ import annotations

import hashlib

import numpy as np
import sympy

from ..limit.symbols import INDEX, Integral, SteinCoefficient, quantity_of, qrefs_in
from .codegen import NumbaPrinter, module_source

FUSE_MIN_POINTS = 50_000
# A group is closed once its members call this many transcendental functions.  Compile time grows
# quickly with the size of a kernel; small groups of the same structure (one layer of a deep
# network each) generate identical source and are compiled once, then reused.
MAX_GROUP_WEIGHT = 6
_CHEAP = {"Add", "Mul", "Pow", "Symbol", "Integer", "Rational", "Float", "Half", "One", "Zero", "NegativeOne",
          "Pi", "relu", "step", "sign", "Abs", "Max", "Min", "SafeCorr", "Zscore"}


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
    """Topological order of the condensed graph, following the quantities' order where possible."""
    node = {q: group_of.get(q, q) for q in qs}
    preds = {}
    for q in qs:
        preds.setdefault(node[q], set()).update(node[p] for p in deps[q] if node[p] is not node[q])
    order, done = [], set()
    pending = list(dict.fromkeys(node[q] for q in qs))
    while pending:
        for k, n in enumerate(pending):
            if preds[n] <= done:
                order.append(n)
                done.add(n)
                del pending[k]
                break
        else:  # pragma: no cover - plan() never builds a cycle
            raise RuntimeError("cyclic evaluation plan")
    return order


class FusedKernel:
    """The generated kernel of one group, and how to call it.

    Every member's definition is rewritten over symbols -- ``m<k>`` for earlier members (kept in
    registers), ``a<k>`` for each distinct read of an input array -- and common subexpressions of
    the whole group are shared (sympy.cse), so e.g. the correlation and its arccosine are computed
    once for the relu and the step kernel of the same layer.
    """

    def __init__(self, group, needed, uncertain, names=None):
        self.group = group
        k = len(group.axes)
        members = list(group.members)
        self.stored = [q for q in members if q in needed]
        self.uncertain_stored = [q for q in self.stored if q in uncertain]
        self.inputs, self.err_inputs = [], []
        reads = {}      # (input quantity, args) -> symbol
        read_src = {}   # symbol -> source text of the array read
        err_src = {}    # symbol -> source text of the error read

        def read(ref):
            """The symbol of one read of an input array.  A read with repeated indices or fixed members
            (a diagonal C(i, i), a row C(0, j)) reads a reduced copy made before the kernel runs, so
            that the inner loop walks contiguous memory instead of striding through a matrix."""
            p = quantity_of(ref)
            syms = list(dict.fromkeys(a for a in ref.args if a in INDEX))
            pattern = tuple(syms.index(a) if a in INDEX else int(a) + 0.5 for a in ref.args)
            idx = ", ".join(f"i{INDEX.index(a)}" for a in syms) or "()"
            key = (p, pattern, idx)
            if key not in reads:
                if (p, pattern) not in self.inputs:
                    self.inputs.append((p, pattern))
                j = self.inputs.index((p, pattern))
                sym = sympy.Symbol(f"a{len(reads)}", real=True)
                reads[key] = sym
                read_src[sym] = f"in{j}[{idx}]"
                if p in uncertain:
                    if (p, pattern) not in self.err_inputs:
                        self.err_inputs.append((p, pattern))
                    err_src[sym] = f"err{self.err_inputs.index((p, pattern))}[{idx}]"
            return reads[key]

        # Each member as an expression of input reads only (earlier members inlined: the common
        # subexpression pass below computes each of them once).
        value = {}
        for q in members:
            sub = {}
            for r in sorted(qrefs_in(q.definition), key=sympy.default_sort_key):
                p = quantity_of(r)
                sub[r] = value[p] if p in value else read(r)
            value[q] = q.definition.xreplace(sub)
        errsym = {a: sympy.Symbol(f"E{a.name}", real=True) for a in reads.values() if a in err_src}
        error = {}
        for q in self.uncertain_stored:
            terms = [sympy.Abs(sympy.diff(value[q], a)) * errsym[a] for a in sorted(value[q].free_symbols & set(errsym),
                                                                                   key=lambda x: x.name)]
            error[q] = sympy.Add(*terms)
        outputs = [value[q] for q in self.stored] + [error[q] for q in self.uncertain_stored]
        replacements, reduced = sympy.cse(outputs, order="none", symbols=sympy.numbered_symbols("t", real=True))
        names_map = dict(read_src)
        names_map.update({errsym[a]: err_src[a] for a in errsym})
        lines = []
        for t, e in replacements:
            names_map[t] = t.name
            lines.append(f"{t.name} = {NumbaPrinter(names_map).doprint(e)}")
        for s_, e in enumerate(reduced[:len(self.stored)]):
            lines.append(f"r{s_} = {NumbaPrinter(names_map).doprint(e)}")
        for s_, e in enumerate(reduced[len(self.stored):]):
            lines.append(f"q{s_} = {NumbaPrinter(names_map).doprint(e)}")
        ix = ", ".join(f"i{p}" for p in range(k))
        for s_ in range(len(self.stored)):
            lines.append(f"out{s_}[{ix}] = r{s_}")
        for s_ in range(len(self.uncertain_stored)):
            lines.append(f"oerr{s_}[{ix}] = q{s_}")
        params = ([f"out{s_}" for s_ in range(len(self.stored))]
                  + [f"oerr{s_}" for s_ in range(len(self.uncertain_stored))]
                  + [f"in{j}" for j in range(len(self.inputs))]
                  + [f"err{j}" for j in range(len(self.err_inputs))] + ["out_shape"])
        loops = [f"{'    ' * p}for i{p} in {'prange' if p == 0 else 'range'}(out_shape[{p}]):" for p in range(k)]
        fn = "fused_" + hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]
        src = ["@njit(parallel=True, **_JIT)", f"def {fn}({', '.join(params)}):"]
        src += ["    " + ln for ln in loops]
        src += ["    " + "    " * k + ln for ln in lines]
        self.fn_name = fn
        self.source = module_source("\n".join(src))

    def run(self, values, errors, alloc=np.empty):
        """Run the kernel; returns {quantity: (value array, error array or 0.0)} for stored members."""
        from .cache import load_generated  # imports numba: only when a large grid needs a kernel

        mod = load_generated(self.source, stem="fused")
        fn = getattr(mod, self.fn_name)
        shape = tuple(a.size for a in self.group.axes)
        outs = [alloc(shape) for _ in self.stored]
        oerrs = [alloc(shape) for _ in self.uncertain_stored]
        ins = [_reduced(values[p], pattern) for p, pattern in self.inputs]
        errs = [_reduced(np.broadcast_to(np.asarray(errors[p], dtype=np.float64), np.shape(values[p])), pattern)
                for p, pattern in self.err_inputs]
        fn(*outs, *oerrs, *ins, *errs, np.array(shape, dtype=np.int64))
        err_of = dict(zip(self.uncertain_stored, oerrs))
        return {q: (out, err_of.get(q, 0.0)) for q, out in zip(self.stored, outs)}


def _reduced(arr, pattern):
    """``arr`` read with an index pattern: k = the k-th distinct loop index, n + 0.5 = fixed member n."""
    arr = np.asarray(arr, dtype=np.float64)
    if all(isinstance(x, int) for x in pattern) and list(pattern) == list(range(len(pattern))):
        return np.ascontiguousarray(arr)
    distinct = sorted({x for x in pattern if isinstance(x, int)})
    idx = []
    for x in pattern:
        if isinstance(x, int):
            shape = [1] * len(distinct)
            shape[distinct.index(x)] = arr.shape[len(idx)]
            idx.append(np.arange(arr.shape[len(idx)]).reshape(shape))
        else:
            idx.append(int(x - 0.5))
    return np.ascontiguousarray(arr[tuple(idx)])


def needed_outside(limit, group_of):
    """Quantities read by something outside their own group (or by an output)."""
    needed = set()
    for q in limit.quantities:
        for p in _deps(q):
            if group_of.get(p) is None or group_of.get(p) is not group_of.get(q):
                needed.add(p)
    for items in limit.outputs.values():
        for _, e in items:
            needed |= {quantity_of(r) for r in qrefs_in(sympy.sympify(e))}
    return needed

