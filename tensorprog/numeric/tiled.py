"""Tiled execution of consecutive fused groups: one pass over the grid for a whole recursion.

A *segment* is a run of groups on the same grid whose references to each other are pointwise.
Its generated driver loops over all grid axes but the last (ranges of those positions run in
parallel on the row pool, rowpool.py), and along the last axis in tiles of ``TILE`` entries; for each tile it calls every group's tile function in order.  Values that
only later groups of the segment read stay in tile buffers (in cache); only what something outside
the segment reads is written to full arrays.  So an L-layer kernel recursion (NNGP and NTK) reads
its inputs and writes its outputs once, instead of once per layer -- the difference between being
limited by memory traffic and by arithmetic.

Each group's tile function is a plain loop over the tile (it vectorises); functions with the same
body (every layer of a deep network) are generated once.  Values that depend on the last axis alone
(a column's variance and its square root) are computed once per run into buffers over that axis,
instead of once per row.
"""
from __future__ import annotations

import hashlib

import numpy as np

from ..limit.symbols import INDEX, quantity_of, qrefs_in
from .codegen import module_source
from .fused import Group, GroupBody, reduced

TILE = 1024


def segments(steps, uncertain):
    """Split a schedule: runs of consecutive certain groups on one grid whose mutual references are
    pointwise become lists (segments); everything else stays as it is."""
    out = []
    current = None
    for step in steps:
        if isinstance(step, Group) and len(step.axes) >= 1 and not (set(step.members) & uncertain):
            if current is not None and current[0].axes == step.axes and _pointwise_into(step, current):
                current.append(step)
                continue
            current = [step]
            out.append(current)
        else:
            current = None
            out.append(step)
    return out


def _pointwise_into(group, segment):
    members = {q for g in segment for q in g.members}
    k = len(group.axes)
    for q in group.members:
        for r in qrefs_in(q.definition):
            if quantity_of(r) in members and tuple(r.args) != tuple(INDEX[:k]):
                return False
    return True


class Segment:
    def __init__(self, groups, needed):
        """``needed``: quantities read by anything outside their own group (or by an output)."""
        self.groups = groups
        self.axes = groups[0].axes
        k = len(self.axes)
        members = [q for g in groups for q in g.members]
        member_set = set(members)
        # What each group exports: members read by later groups of the segment or from outside.
        read_later = set()
        for g in groups:
            for q in g.members:
                for r in qrefs_in(q.definition):
                    p = quantity_of(r)
                    if p in member_set and p not in g.members:
                        read_later.add(p)
        self.stored = [q for q in members if q in needed]
        self.inputs = []        # (quantity, pattern) read from full arrays made before the segment
        tiles, calls, prelude, nbufs = {}, [], [], 0
        where = {}              # member -> ("out", s) (a stored array) or ("row", r) (a scratch row)
        rows = 0
        for g in groups:
            exported = [q for q in g.members if q in read_later or q in needed]
            body = GroupBody(g.members, exported, set())
            # Every value that stays inside the segment lives in one row of a per-thread scratch
            # array: one array argument instead of dozens keeps the tile loop vectorisable.
            kinds = []
            for m, (p, _) in enumerate(body.reads):
                if p in member_set:
                    kinds.append("row" if where[p][0] == "row" else "array")
                else:
                    axes = body.axes_of[m]
                    kinds.append("array" if axes and axes[-1] == k - 1 else "scalar")
            out_kinds = ["out" if q in needed else "row" for q in exported]
            read_text = {"row": "scr[ra{m}, t]", "array": "a{m}[t]", "scalar": "a{m}"}
            src_lines = body.lines(lambda m: read_text[kinds[m]].format(m=m), lambda m: "0.0")
            columns = {m for m, (p, _) in enumerate(body.reads)
                       if k >= 2 and p not in member_set and body.axes_of[m] == [k - 1]}
            src_lines, pre_lines, hoisted = _hoist_columns(body, src_lines, columns)
            store = [f"o{s}[t] = r{s}" if kind == "out" else f"scr[wo{s}, t] = r{s}"
                     for s, kind in enumerate(out_kinds)]
            params = (["n", "scr"] + [f"a{m}" for m, kd in enumerate(kinds) if kd != "row"]
                      + [f"ra{m}" for m, kd in enumerate(kinds) if kd == "row"]
                      + [f"o{s}" for s, kd in enumerate(out_kinds) if kd == "out"]
                      + [f"wo{s}" for s, kd in enumerate(out_kinds) if kd == "row"]
                      + [f"h{x}" for x in range(len(hoisted))])
            text = "\n".join(src_lines + store) + repr(params)
            name = "tile_" + hashlib.sha256(text.encode()).hexdigest()[:12]
            if name not in tiles:
                tiles[name] = ("@njit(no_cpython_wrapper=True, **_JIT)\n" + f"def {name}({', '.join(params)}):\n    for t in range(n):\n"
                               # a group whose values are all unused has no lines: "pass" keeps it valid
                               + "\n".join("        " + ln for ln in (src_lines + store or ["pass"])))
            arrays, read_rows = [], []
            for m, ((p, pattern), kd) in enumerate(zip(body.reads, kinds)):
                if p in member_set:
                    kind, ref = where[p]
                    if kind == "row":
                        # unsigned, so that numba needs no wraparound check (which would stop SIMD)
                        read_rows.append(f"np.uint64({ref})")
                    else:
                        arrays.append(f"out{ref}[{_outer_index(k)}j0:j0 + n]")
                    continue
                if (p, pattern) not in self.inputs:
                    self.inputs.append((p, pattern))
                j = self.inputs.index((p, pattern))
                axes = body.axes_of[m]
                if kd == "array":
                    arrays.append(f"in{j}[{''.join(f'i{a}, ' for a in axes[:-1])}j0:j0 + n]")
                elif axes:
                    arrays.append(f"in{j}[{', '.join(f'i{a}' for a in axes)}]")
                else:
                    arrays.append(f"in{j}[()]")
            outs, write_rows = [], []
            for q, kind in zip(exported, out_kinds):
                if kind == "out":
                    s_ = self.stored.index(q)
                    where[q] = ("out", s_)
                    outs.append(f"out{s_}[{_outer_index(k)}j0:j0 + n]")
                else:
                    where[q] = ("row", rows)
                    write_rows.append(f"np.uint64({rows})")
                    rows += 1
            hbufs = []
            if hoisted:
                # Column-only values, computed once per segment run (not once per row) into
                # buffers over the last axis that every row's tiles then read.
                pre_params = [f"a{m}" for m in sorted(columns)] + [f"h{x}" for x in range(len(hoisted))]
                pre_body = pre_lines + [f"h{x}[t] = {tname}" for x, tname in enumerate(hoisted)]
                pre = "pre_" + hashlib.sha256(("\n".join(pre_body) + repr(pre_params)).encode()).hexdigest()[:12]
                tiles.setdefault(pre, "@njit(no_cpython_wrapper=True, **_JIT)\n" + f"def {pre}(n, {', '.join(pre_params)}):\n"
                                 "    for t in range(n):\n" + "\n".join("        " + ln for ln in pre_body or ["pass"]))
                hbufs = [f"hb{nbufs + x}" for x in range(len(hoisted))]
                nbufs += len(hoisted)
                prelude += [f"{b} = np.empty(last)" for b in hbufs]
                col_inputs = [f"in{self.inputs.index(body.reads[m])}[0:last]" for m in sorted(columns)]
                prelude.append(f"{pre}(last, {', '.join(col_inputs + hbufs)})")
            calls.append(f"{name}(n, scr, {', '.join(arrays + read_rows + outs + write_rows + [b + '[j0:j0 + n]' for b in hbufs])})")
        drv = "seg_" + hashlib.sha256("\n".join(list(tiles) + calls).encode()).hexdigest()[:12]
        params = [f"out{s}" for s in range(len(self.stored))] + [f"in{j}" for j in range(len(self.inputs))]
        # The column buffers, once per run; then the rows [lo, hi) of the outer positions (all grid
        # axes but the last), run on the row pool (rowpool.py), one scratch array per range: an
        # allocation per position (hundreds of KiB, so an mmap and page faults each time) would
        # serialise the threads.
        self.prelude_name = "prelude_" + drv[4:]
        hb_all = [f"hb{x}" for x in range(nbufs)]
        lines = ["@njit(**_JIT)", f"def {self.prelude_name}({', '.join(params + ['shape'])}):",
                 f"    last = shape[{k - 1}]"]
        lines += ["    " + ln for ln in prelude]
        lines += [f"    return ({''.join(b + ', ' for b in hb_all)})", ""]
        lines += ["@njit(nogil=True, **_JIT)", f"def {drv}({', '.join(['lo', 'hi'] + params + hb_all + ['shape'])}):",
                  f"    last = shape[{k - 1}]",
                  f"    scr = np.empty(({max(rows, 1)}, {TILE}))",
                  "    for flat in range(lo, hi):"]
        for p in range(k - 1):
            stride = " * ".join(f"shape[{r}]" for r in range(p + 1, k - 1)) or "1"
            lines += [f"        i{p} = (flat // ({stride})) % shape[{p}]"]
        lines += [f"        for j0 in range(0, last, {TILE}):", f"            n = min({TILE}, last - j0)"]
        lines += ["            " + c for c in calls]
        self.fn_name = drv
        self.source = module_source(*tiles.values(), "\n".join(lines))

    @property
    def members(self):
        return [q for g in self.groups for q in g.members]

    def run(self, values, errors=None, alloc=np.empty):
        from .cache import load_generated
        from .rowpool import run_ranges

        module = load_generated(self.source, stem="segment")
        shape = tuple(a.size for a in self.axes)
        outs = [alloc(shape) for _ in self.stored]
        ins = [reduced(values[p], pattern) for p, pattern in self.inputs]
        shape_arr = np.array(shape, dtype=np.int64)
        buffers = getattr(module, self.prelude_name)(*outs, *ins, shape_arr)
        run_ranges(getattr(module, self.fn_name), int(np.prod(shape[:-1], dtype=np.int64)), *outs, *ins, *buffers,
                   shape_arr)
        return {q: (out, 0.0) for q, out in zip(self.stored, outs)}


def _hoist_columns(body, lines, columns):
    """Split a group's code: temporaries that depend only on the reads ``columns`` (inputs over the
    last grid axis alone, e.g. the variances of the column inputs and their square roots) are the
    same for every row.  Returns (tile lines with those read from buffers h<x>[t], the lines that
    compute them, the names of the hoisted temporaries the tile still uses)."""
    from .fused import _a

    free = {_a(m) for m in columns}
    hoisted = set()
    for t, e in body._replacements:
        if e.free_symbols and e.free_symbols <= free | hoisted:
            hoisted.add(t)
    if not hoisted:
        return lines, [], []
    ntemps = len(body._replacements)
    used = set()
    for t, e in body._replacements:
        if t not in hoisted:
            used |= e.free_symbols
    for e in body._reduced:
        used |= e.free_symbols
    kept = [t.name for t, _ in body._replacements if t in hoisted and t in used]
    tile, pre = [], []
    for (t, _), line in zip(body._replacements, lines[:ntemps]):
        if t in hoisted:
            pre.append(line)
            if t.name in kept:
                tile.append(f"{t.name} = h{kept.index(t.name)}[t]")
        else:
            tile.append(line)
    return tile + lines[ntemps:], pre, kept


def _outer_index(k):
    return "".join(f"i{p}, " for p in range(k - 1))
