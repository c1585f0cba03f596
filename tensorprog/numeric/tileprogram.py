"""A limit program specialised to one tile of its outputs' grid: the same quantities, on sub-blocks.

An output over the family axes (A_0, ..., A_{k-1}) (e.g. an N x N kernel, or N x M train x test)
has one *role* per position p: in a tile, role p ranges over a block of A_p's points.  A quantity
reference ``q(i, j)`` inside a definition takes the roles of the index symbols it is called with, so
every quantity the outputs need appears as *instances* ``(q, roles)``: ``E(i, j)`` as (E, (0, 1)),
``Σ(j)`` as (Σ, (1,)), ``C(i, i)`` as (C, (0, 0)), a transposed ``E(j, i)`` as (E, (1, 0)).  An
instance is a quantity over one axis per distinct role (its *slots*), with the definition of ``q``
re-indexed accordingly; its values on the tile are exactly the values of ``q`` at those points, so
the same evaluator, plan and generated kernels compute a tile as they compute the whole grid:

* *point instances* (one distinct role: the per-point, "diagonal" quantities such as a layer's
  variance q(x_i, x_i)) are evaluated once over the whole axis (:meth:`TiledProgram.point_limit`)
  and bound into every tile by slicing;
* *mixed instances* (two or more roles) are what a tile computes (:meth:`TiledProgram.tile_limit`).

A program whose quantities couple the points of a family -- a reference to a fixed member ``q(0)``
(a Moment over the batch, batch normalisation), an index symbol outside a reference, two distinct
index symbols of one role -- cannot be split this way: :class:`NotTileable` says why.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import sympy

from ..limit.symbols import INDEX, Data, Integral, SteinCoefficient, new_quantity, quantity_of, qrefs_in, symbols_in


class NotTileable(Exception):
    """The program couples the points of a family: it is evaluated in memory as a whole."""


class TileAxis:
    """An axis of a tile program: a block of a data set's points, resized from tile to tile (an
    ``ir.core.Axis`` is immutable and compared by value; this one is compared by identity)."""

    def __init__(self, name, size):
        self.name, self.size = name, int(size)

    def __str__(self):
        return f"{self.name}[{self.size}]"

    def __repr__(self):
        return f"TileAxis({self.name!r}, {self.size})"


class Bound(Data):
    """A value computed elsewhere (the per-point pass, or a block of a data table), given to a tile's
    evaluator with its error (``TileEvaluator.bound``)."""


class BoundUncertain(Integral):
    """A bound value that carries an error estimate.  Planned like an integral, so that the
    quantities depending on it propagate errors exactly as in the whole-program plan."""

    def __init__(self):
        super().__init__(sympy.S.Zero, (), (), sympy.Matrix())


class _Limit:
    """The part of the LimitProgram interface the evaluator and its planner read."""

    def __init__(self, quantities, outputs, out_objects, source, names):
        self.quantities = quantities
        self.outputs = outputs
        self.program = _Program(out_objects, source)
        self.names = names


@dataclasses.dataclass
class _Program:
    outputs: list
    source: object


class TiledProgram:
    """The instances of a limit program's tiled outputs (those over two or more family axes).

    ``groups``: the output names per family-axes tuple, each computed tile by tile together (NNGP
    and NTK share their recursion); ``point_outputs``: outputs over at most one axis, evaluated
    whole in the per-point pass.
    """

    def __init__(self, limit):
        from .fused import uncertain_quantities

        self.limit = limit
        self.uncertain = uncertain_quantities(limit.quantities)
        self.order = {q: n for n, q in enumerate(limit.quantities)}
        self.outputs = {o.name: o for o in limit.program.outputs}
        self.point_outputs = [o.name for o in limit.program.outputs if len(o.family_axes) <= 1]
        groups = {}
        for o in limit.program.outputs:
            if len(o.family_axes) >= 2:
                groups.setdefault(tuple(o.family_axes), []).append(o.name)
        self.groups = [(axes, names) for axes, names in groups.items()]
        # per output group: the instances (q, roles per position of q) its outputs need
        self.instances = []
        for axes, names in self.groups:
            self.instances.append({})
            roles = tuple(range(len(axes)))
            for name in names:
                for _, expr in limit.outputs[name]:
                    self._visit_expr(sympy.sympify(expr), roles, axes, self.instances[-1])
        # the per-point pass: point instances by (quantity, number of positions) over the full axis
        self.points = {}
        for found in self.instances:
            for (q, roles) in found:
                if len(set(roles)) <= 1:
                    self.points[(q, len(roles))] = None
        for name in self.point_outputs:
            o = self.outputs[name]
            for _, expr in limit.outputs[name]:
                self._visit_points(sympy.sympify(expr))

    # ------------------------------------------------------------------ the instance closure

    def _visit_expr(self, expr, roles, axes, found):
        _check_indices(expr, self.limit)
        for r in self._refs(expr):
            q = quantity_of(r)
            child = []
            for a in r.args:
                if a not in INDEX or INDEX.index(a) >= len(roles):
                    raise NotTileable(f"{self._where(q)} refers to a fixed member ({r.func.__name__}{r.args}): "
                                      "it couples the points of a family")
                child.append(roles[INDEX.index(a)])
            # two distinct index symbols of one role would need a whole block of a point quantity
            for role in set(child):
                if len({a for a, c in zip(r.args, child) if c == role}) > 1:
                    raise NotTileable(f"{self._where(q)} is used at two distinct points of one data set")
            for m, role in enumerate(child):
                if q.axes[m] != axes[role]:
                    raise NotTileable(f"{self._where(q)}: axis {q.axes[m].name} where {axes[role].name} "
                                      "was expected")
            key = (q, tuple(child))
            if key in found:
                continue
            found[key] = True
            for e in _definition_exprs(q.definition):
                self._visit_expr(e, tuple(child), axes, found)

    def _visit_points(self, expr):
        """Point instances that a point output (over one axis or none) needs."""
        for r in self._refs(expr):
            q = quantity_of(r)
            if any(a not in INDEX for a in r.args):
                raise NotTileable(f"{self._where(q)} refers to a fixed member: it couples the points of a family")
            key = (q, len(r.args))
            if key not in self.points:
                self.points[key] = None
                for e in _definition_exprs(q.definition):
                    self._visit_points(sympy.sympify(e).xreplace({s: INDEX[0] for s in INDEX[:len(r.args)]}))

    def _refs(self, expr):
        """The references of ``expr`` in a fixed order (the quantities' evaluation order, then their
        arguments): instances are then created -- and named -- in the same order in every process,
        and sympy orders their terms as it ordered the original quantities', so that the generated
        arithmetic is the same as the whole-grid path's."""
        return sorted(qrefs_in(expr), key=lambda r: (self.order[quantity_of(r)], [INDEX.index(a) if a in INDEX
                                                                                    else -1 for a in r.args]))

    def _where(self, q):
        name, pos = q.origin or (q.label, None)
        line = f" (line {pos.line})" if pos is not None and getattr(pos, "line", None) else ""
        return f"{self.limit.names.get(q, q.label)} of {name}{line}"

    # ------------------------------------------------------------------ the per-point pass

    def point_limit(self):
        """The per-point program: each point instance (q, m) as a quantity over q's axis (all m
        positions at one point) or a scalar; and the point outputs.  Returns (limit, {key: quantity})."""
        made = {}
        for (q, m) in sorted(self.points, key=lambda k: (self.order[k[0]], k[1])):
            made[(q, m)] = None
        out = {}

        def rewrite(expr):
            expr = sympy.sympify(expr)
            repl = {}
            for r in qrefs_in(expr):
                p = quantity_of(r)
                inst = out[(p, len(r.args))]
                repl[r] = inst(*r.args[:1]) if r.args else inst()
            return expr.xreplace(repl)

        for (q, m) in made:
            axes = q.axes[:1] if m else ()
            sub = {s: INDEX[0] for s in INDEX[:m]}
            d = q.definition
            if isinstance(d, Data):
                arr = np.asarray(d.array, float)
                idx = (np.arange(arr.shape[0]),) * m if m else ()
                defn = Data(arr[idx] if m else arr, d.text)
            else:
                defn = _map_definition(d, lambda e: rewrite(sympy.sympify(e).xreplace(sub)))
            out[(q, m)] = new_quantity(q.label, axes, defn, q.kind, method=q.method, origin=q.origin,
                                       meaning=q.meaning)
        quantities = list(out.values())
        outputs, objs = {}, []
        for name in self.point_outputs:
            outputs[name] = [(key, rewrite(e)) for key, e in self.limit.outputs[name]]
            objs.append(self.outputs[name])
        names = {inst: self.limit.names.get(q, q.label) for (q, _), inst in out.items()}
        return _Limit(quantities, outputs, objs, self.limit.program.source, names), out

    # ------------------------------------------------------------------ one tile

    def tile_limit(self, group):
        """The program of a tile of output group ``group``: its axes are :class:`TileAxis` objects,
        whose sizes the caller sets per tile (one plan and one set of kernels for every tile).

        Mixed instances become quantities over the tile's axes; point instances and data become
        :class:`Bound` (or :class:`BoundUncertain`) quantities whose values the evaluator is given.
        Returns (limit, {instance: (quantity, kind)}, tile axes) with kind "point", "data" or
        "computed"."""
        axes, names = self.groups[group]
        tile_axes = [TileAxis(f"{a.name}[tile {p}]", a.size) for p, a in enumerate(axes)]
        keys = sorted(self.instances[group], key=lambda k: (self.order[k[0]], k[1]))
        made = {}

        def slots(roles):
            return list(dict.fromkeys(roles))

        def rewrite(expr, roles):
            expr = sympy.sympify(expr)
            mine = slots(roles)
            repl = {}
            for r in qrefs_in(expr):
                p = quantity_of(r)
                child = tuple(roles[INDEX.index(a)] for a in r.args)
                inst = made[(p, child)][0]
                repl[r] = inst(*[INDEX[mine.index(c)] for c in slots(child)])
            return expr.xreplace(repl)

        for key in keys:
            q, roles = key
            grid = tuple(tile_axes[c] for c in slots(roles))
            d = q.definition
            if len(set(roles)) <= 1 and (q, len(roles)) in self.points:
                kind = "point"
                defn = BoundUncertain() if q in self.uncertain else Bound(None, "per-point value")
            elif isinstance(d, Data):
                kind, defn = "data", Bound(None, d.text)
            else:
                kind = "computed"
                defn = _map_definition(d, lambda e, roles=roles: rewrite(e, roles))
            made[key] = (new_quantity(q.label, grid, defn, q.kind, method=q.method, origin=q.origin,
                                      meaning=q.meaning), kind)
        roles = tuple(range(len(axes)))
        outputs, objs = {}, []
        for name in names:
            outputs[name] = [(key, rewrite(e, roles)) for key, e in self.limit.outputs[name]]
            objs.append(dataclasses.replace(self.outputs[name], family_axes=tuple(tile_axes)))
        quantities = [inst for inst, _ in made.values()]
        qnames = {inst: self.limit.names.get(q, q.label) for (q, _), (inst, _) in made.items()}
        return _Limit(quantities, outputs, objs, self.limit.program.source, qnames), made, tile_axes


def _definition_exprs(d):
    if isinstance(d, sympy.Basic):
        return [d]
    if isinstance(d, Integral):
        return [d.integrand, *d.mean, *d.cov]
    if isinstance(d, SteinCoefficient):
        return [*d.moments, *d.cov]
    return []


def _map_definition(d, f):
    """A definition with ``f`` applied to each of its expressions."""
    if isinstance(d, sympy.Basic):
        return f(d)
    if isinstance(d, Integral):
        return Integral(f(d.integrand), d.variables, tuple(f(m) for m in d.mean), d.cov.applyfunc(f))
    if isinstance(d, SteinCoefficient):
        return SteinCoefficient(d.target, d.cov.applyfunc(f), tuple(f(m) for m in d.moments))
    return d


def _check_indices(expr, limit):
    """Index symbols may appear only as arguments of quantity references: a tile's grid positions
    are local (0 .. tile size - 1), so e.g. a Kronecker delta of i and j would be wrong off the diagonal."""
    expr = sympy.sympify(expr)
    refs = qrefs_in(expr)
    bare = expr.xreplace({r: sympy.Dummy() for r in refs}) if refs else expr
    if symbols_in(bare) & set(INDEX):
        raise NotTileable(f"an expression uses a data-point index directly ({limit.text(expr) if hasattr(limit, 'text') else expr})")


def data_block(array, roles, ranges):
    """The block of a data table at the tile: position m of ``array`` restricted to the range of
    role ``roles[m]``; repeated roles take the diagonal.  Axes in slot order (first appearance)."""
    arr = np.asarray(array)
    order = list(dict.fromkeys(roles))
    if len(order) == len(roles):
        block = arr[tuple(slice(*ranges[r]) for r in roles)]
        perm = [roles.index(r) for r in order]
        return np.ascontiguousarray(np.transpose(block, perm))
    idx = []
    for r in roles:
        shape = [1] * len(order)
        lo, hi = ranges[r]
        shape[order.index(r)] = hi - lo
        idx.append(np.arange(lo, hi).reshape(shape))
    return np.ascontiguousarray(arr[tuple(idx)])
