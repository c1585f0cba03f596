"""Outputs: ``out name[...] = expression`` and ``out name``, assembled into arrays of scalars."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from ..errors import did_you_mean, error
from ..ir.core import Kind, Output
from .scope import Ctx, FVar, _Poisoned, _display
from .terms import Num, ScalT, VecT, WidthT, kind_name


@dataclass
class _OutBuilder:
    name: str
    pos: object
    pattern: tuple
    axes: tuple
    items: dict = field(default_factory=dict)


class Outputs:
    """Mixin of :class:`~tensorprog.frontend.lowering.Elaborator`: the output statements."""

    def stmt_OutDecl(self, s, scope):
        ctx0 = Ctx(scope, s.pos)
        for b in self.loop_bindings(s.loops, scope, ctx0):
            ctx = Ctx(scope.child(b), s.pos)
            if s.value is None:
                self.output_existing(s, ctx)
                continue
            key = self.target_key(s.target, ctx, allow_family=True, defining=False)
            t = self.expr(s.value, ctx)
            if isinstance(t, VecT):
                raise error(s.value.pos, "outputs are scalars; average a vector with mean(...)")
            if isinstance(t, (Num, WidthT)):
                t = ScalT(self.leaf_expr(self.as_scalar_leaf(t, ctx, s.value)))
            if not isinstance(t, ScalT):
                raise error(s.value.pos, f"an output must be a scalar, got {kind_name(t)}")
            for fv in ctx.fvars:
                if fv.axis is None:
                    raise error(s.target.pos, f"the index '{fv.name}' does not appear on the right-hand side")
            val = self.emit_final(t, ctx, s.value, _display(s.target.name, key))
            self.add_output(s.target, key, val, ctx)

    def output_existing(self, s, ctx):
        if s.target.indices:
            raise error(s.target.pos, "`out name[...]` needs `= expression`; `out name` outputs an existing scalar")
        entry = self.names.get(s.target.name)
        if entry is None:
            if s.target.name in self.poisoned:
                raise _Poisoned()
            raise error(s.target.pos, f"unknown name '{s.target.name}'" + did_you_mean(s.target.name, self.names))
        if entry.kind != Kind.SCALAR:
            raise error(s.target.pos, f"'{s.target.name}' is a {entry.kind.value}; outputs are scalars")
        for key, val in entry.entries.items():
            ob = self.out_builder(s.target.name, s.pos, entry.pattern, entry.axes, existing=True)
            if key in ob.items:     # `out f0` twice: the same error as a repeated `out f0 = ...`
                raise error(s.target.pos, f"output '{s.target.name}' is already defined (line {ob.pos.line})")
            ob.items[key] = val

    def add_output(self, target, key, val, ctx):
        pattern = tuple("f" if isinstance(k, FVar) else "u" for k in key)
        axes = tuple(fv.axis for fv in ctx.fvars)
        ob = self.out_builder(target.name, target.pos, pattern, axes)
        ukey = tuple(k for k in key if not isinstance(k, FVar))
        if ukey in ob.items:
            shown = target.name + "".join(f"[{k}]" for k in ukey)
            raise error(target.pos, f"output '{shown}' is already defined (line {ob.pos.line})")
        ob.items[ukey] = val

    def out_builder(self, name, pos, pattern, axes, existing=False):
        ob = self.outs.get(name)
        if ob is None:
            if name in self.names and not existing:
                raise error(pos, f"'{name}' is already a program variable; outputs need their own names")
            ob = self.outs[name] = _OutBuilder(name, pos, pattern, axes)
        elif ob.pattern != pattern or ob.axes != axes:
            raise error(pos, f"output '{name}' is used with different indices than at line {ob.pos.line}")
        return ob

    def _build_outputs(self):
        outs = []
        for ob in self.outs.values():
            keys = list(ob.items)
            nu = sum(1 for p in ob.pattern if p == "u")
            lo = tuple(min(k[d] for k in keys) for d in range(nu))
            hi = tuple(max(k[d] for k in keys) for d in range(nu))
            shape = tuple(h - l + 1 for l, h in zip(lo, hi))
            if int(np.prod(shape, dtype=np.int64)) != len(keys):
                missing = next(k for k in itertools.product(*(range(l, h + 1) for l, h in zip(lo, hi)))
                               if k not in ob.items)
                self.diags.add(ob.pos, f"output '{ob.name}' is missing the entry {list(missing)} "
                                       "(outputs must fill a rectangular array)")
                continue
            layout, ku, kf = [], 0, 0
            for p in ob.pattern:
                layout.append(("u", ku) if p == "u" else ("f", kf))
                ku, kf = ku + (p == "u"), kf + (p == "f")
            items = tuple((k, ob.items[k]) for k in sorted(keys))
            outs.append(Output(ob.name, ob.pos, tuple(layout), lo, shape, tuple(ob.axes), items))
        return outs
