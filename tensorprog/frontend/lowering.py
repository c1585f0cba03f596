"""Elaboration: syntax tree -> IR instructions.

Compile-time loops over integer ranges are unrolled; loops over data sets (and
free indices on the left of ``=``) become *family* indices, kept symbolic.  Each
expression is typed (see ``terms.py``) and lowered to the primitive
instructions of NETSOR-transpose-plus: ``W @ v`` becomes a MatMul (its operand
first becomes a Nonlin if it is not already a single vector), ``mean(...)`` a
Moment, and the coordinatewise remainder of a vector expression one fused
Nonlin.  Identical instructions are shared (hash-consing), so a repeated
subexpression is computed once.

Errors are collected per statement, so one run reports as many as possible.
This module holds the driver, assignments, names and instruction emission; declarations
(``declarations.py``) and outputs (``outputs.py``) are mixins of the same Elaborator, and its
bookkeeping records live in ``scope.py``.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import sympy

from .. import functions as F
from ..errors import Diagnostics, TPError, did_you_mean, error, whole_file
from ..ops.registry import CSE_KEY
from ..ir.core import PARAMS, VEC_ARGS, Arg, Axis, AxisRef, InitScalar, Kind, MatMul, Nonlin, ScalarFn, Value
from . import ast
from .declarations import Declarations
from .outputs import Outputs, _OutBuilder
from . import limits
from .scope import (RESERVED, Ctx, FVar, Leaf, NameEntry, Scope, UserFn, _display, _pattern_text,
                    _Poisoned, _show, _targets, _width_text)
from .terms import DataT, ListT, MatT, Num, ScalT, VecT, WidthT, kind_name, width_limit


class _UnrollLimit(Exception):
    """The total unrolled iteration count passed the unroll limit: stop elaborating (carries the TPError)."""

    def __init__(self, err):
        super().__init__(str(err))
        self.error = err


class Elaborator(Declarations, Outputs):
    def __init__(self, source, defines=None, base_dir=None, width_dependent=False):
        self.source = source
        # width_dependent: scalars may grow with n (tpc scaling, tpc simulate): no limit is taken
        self.width_dependent = width_dependent
        self.base_dir = Path(base_dir) if base_dir else Path.cwd()
        self.defines = dict(defines or {})
        self.used_defines = set()
        self.diags = Diagnostics()
        self.consts: dict[str, sympy.Expr] = {}
        self.data: dict[str, np.ndarray] = {}
        self.axes: dict[str, Axis] = {}
        self.widths: dict[str, sympy.Expr] = {"n": sympy.S.One}
        self.fns: dict[str, UserFn] = {}
        self.names: dict[str, NameEntry] = {}
        self.poisoned: set[str] = set()
        self.instrs = []
        self.values = []
        self.cse = {}
        self.leaf_sym: dict = {}
        self.leaf_of: dict = {}
        self.width_scalars = {}
        self.outs: dict[str, _OutBuilder] = {}
        self.blocks = []
        self.params: dict = {}   # value id -> ParamInfo (`param` declarations)
        self.backward_passes = {}  # f's value id -> its grad.Backward (ntk, grad)
        self.trainings = {}        # (f's value id, labels, rate) -> train.Training (gd)
        # iterations unrolled so far, nested loops included: the limit is on the total, not per loop
        self.unrolled = 0

    # ------------------------------------------------------------------ driver

    def run(self, module: ast.Module):
        try:
            self.stmts(module.statements, Scope())
        except _UnrollLimit as stop:
            self.diags.extend(stop.error)
            self.diags.raise_if_errors()
        for name in sorted(set(self.defines) - self.used_defines):
            self.diags.add(whole_file(self.source), f"-D {name}=...: the program has no const named '{name}'"
                           + did_you_mean(name, self.consts))
        self._check_params_trained()
        outputs = self._build_outputs()
        if not outputs and not self.diags.errors:
            self.diags.add(whole_file(self.source), "the program has no outputs (declare at least one with `out ...`)")
        self.diags.raise_if_errors()
        return outputs

    def _check_params_trained(self):
        """A ``param`` that no gd / ntk / grad output depends on is a mistake (it would not be trained):
        refused, when the program trains or differentiates anything.  Several networks in one program
        are fine: each parameter needs one output that depends on it."""
        if not (self.trainings or self.backward_passes) or self.diags.errors:
            return
        from .grad import dependency_cone
        defining = {ins.out.id: ins for ins in self.instrs}
        outputs = [f.id for t in self.trainings.values() for f in t.fs] + list(self.backward_passes)
        cone = dependency_cone(defining, outputs)
        for vid, info in self.params.items():
            if vid not in cone:
                self.diags.add(info.pos, f"'{info.value.name}' is declared `param` but no gd(...), ntk(...) or "
                                         "grad(...) output depends on it: it would not be trained (use it, or drop "
                                         "`param`)")

    def stmts(self, stmts, scope):
        for s in stmts:
            if isinstance(s, ast.ForBlock):
                try:
                    bindings = self.loop_bindings(s.loops, scope, Ctx(scope, s.pos))
                except TPError as e:
                    self.diags.extend(e)
                    self.poison(s)
                    continue
                except _Poisoned:
                    self.poison(s)
                    continue
                self._refuse_projected_unroll(s.body, bindings, scope)
                for b in bindings:
                    self.stmts(s.body, scope.child(b))
                continue
            try:
                getattr(self, "stmt_" + type(s).__name__)(s, scope)
            except TPError as e:
                self.diags.extend(e)
                self.poison(s)
            except _Poisoned:
                self.poison(s)

    def poison(self, s):
        for t in _targets(s):
            self.poisoned.add(t)

    def _refuse_projected_unroll(self, body, bindings, scope):
        """Fail fast on nested loops: before elaborating a loop body, count the iterations of the
        range loops nested in it (their bounds only, evaluated per outer binding, no bodies) and
        stop if the total would pass the unroll limit.  Exact, also for bounds that depend on an
        outer loop variable; counting stops at the limit, so it costs at most `unroll` bound
        evaluations.  A bound that cannot be evaluated here (a data-set loop, a name defined in the
        body) abandons the projection: the running count in loop_bindings still applies."""
        max_unroll = limits.current().unroll
        if not any(isinstance(t, ast.ForBlock) for t in body):
            return
        total = self.unrolled
        stack = [(body, scope.child(b)) for b in reversed(bindings)]
        while stack:
            stmts, sc = stack.pop()
            for t in stmts:
                if not isinstance(t, ast.ForBlock):
                    continue
                ranges = []
                for lp in t.loops:
                    if not isinstance(lp, ast.RangeLoop):
                        return
                    try:
                        ctx = Ctx(sc, t.pos)
                        lo, hi = self.int_value(lp.lo, ctx, "a loop bound"), self.int_value(lp.hi, ctx, "a loop bound")
                    except (TPError, _Poisoned):
                        return
                    ranges.append((lp.var, range(hi, lo - 1, -1) if lp.reverse else range(lo, hi + 1)))
                count = int(np.prod([float(r.stop - r.start) / r.step for _, r in ranges], dtype=np.float64))
                total += count
                if total > max_unroll:
                    raise _UnrollLimit(error(t.loops[0].pos, f"the loops unroll to more than {max_unroll} "
                                                             f"iterations in total (nested loops included): "
                                                             f"{total} by this loop "
                                                             f"(raise with --limit unroll=N)"))
                if any(isinstance(u, ast.ForBlock) for u in t.body):
                    combos = list(itertools.product(*(r for _, r in ranges)))
                    for combo in reversed(combos):
                        stack.append((t.body, sc.child({name: v for (name, _), v in zip(ranges, combo)})))

    def loop_bindings(self, loops, scope, ctx, family_ok=True):
        """All combinations of unrolled loop values (list of dicts); data-set loops bind an FVar."""
        ranges = []
        fam = {}
        seen = set()
        for lp in loops:
            if lp.var in seen:
                raise error(lp.pos, f"the loop variable '{lp.var}' is repeated")
            seen.add(lp.var)
            if lp.var in self.consts or lp.var in self.data or lp.var in self.widths or lp.var in self.names \
                    or lp.var in self.fns or lp.var in RESERVED:
                raise error(lp.pos, f"'{lp.var}' is already defined; choose another name for the loop variable")
            if isinstance(lp, ast.RangeLoop):
                lo = self.int_value(lp.lo, ctx, "a loop bound")
                hi = self.int_value(lp.hi, ctx, "a loop bound")
                # lo..lo-1 is an empty range (e.g. `2..L` with L = 1); anything lower is a mistake.
                if hi < lo - 1:
                    hint = "" if lp.reverse else f"; to count down write reversed({hi}..{lo})"
                    raise error(lp.pos, f"bad loop bounds {lo}..{hi}: the upper bound is below the lower "
                                        f"bound{hint}")
                ranges.append((lp.var, range(hi, lo - 1, -1) if lp.reverse else range(lo, hi + 1)))
            else:
                axis = self.axis_of_domain(lp.domain, ctx)
                if not family_ok:
                    raise error(lp.pos, "a loop over a data set is not allowed here; use a range a..b")
                fam[lp.var] = FVar(lp.var, axis, lp.pos)
        # counted arithmetically: len() of a range past sys.maxsize (1..10^100) raises OverflowError
        total = int(np.prod([float(r.stop - r.start) / r.step for _, r in ranges], dtype=np.float64))
        max_unroll = limits.current().unroll
        if total > max_unroll:
            count = total if total < 10**15 else f"about {total:.2g}"
            raise error(loops[0].pos, f"this loop unrolls to {count} iterations; at most {max_unroll} are allowed "
                                      f"(raise with --limit unroll=N)")
        if loops:
            self.unrolled += total
            if self.unrolled > max_unroll:
                # fatal: the enclosing loops would otherwise repeat the same error once per iteration
                raise _UnrollLimit(error(loops[0].pos, f"the loops unroll to more than {max_unroll} iterations in "
                                                       f"total (nested loops included): {self.unrolled} so far "
                                                       f"(raise with --limit unroll=N)"))
        out = []
        for combo in itertools.product(*(r for _, r in ranges)):
            b = dict(fam)
            b.update({name: v for (name, _), v in zip(ranges, combo)})
            out.append(b)
        return out

    def axis_of_domain(self, node, ctx):
        if isinstance(node, ast.Name) and node.id in self.axes:
            return self.axes[node.id]
        if isinstance(node, ast.Name) and node.id in self.poisoned:
            raise _Poisoned()
        raise error(node.pos, "expected a data set name or a range lo..hi after 'in'")


    # ------------------------------------------------------------------ assignments and outputs

    def stmt_Assign(self, s, scope):
        ctx0 = Ctx(scope, s.pos)
        for b in self.loop_bindings(s.loops, scope, ctx0):
            ctx = Ctx(scope.child(b), s.pos)
            key = self.target_key(s.target, ctx, allow_family=True)
            t = self.expr(s.value, ctx)
            self.bind_result(s.target, key, t, ctx, s.value)

    def bind_result(self, target, key, t, ctx, node):
        if isinstance(t, (Num, WidthT)) or (isinstance(t, DataT) and not t.data_shape):
            if isinstance(t, (Num, WidthT)) and ctx.fvars:
                t = ScalT(self.leaf_expr(self.as_scalar_leaf(t, ctx, node)))
            else:
                return self.define_initial_scalar(target, key, t, ctx, node)
        if isinstance(t, (MatT, ListT, DataT)):
            raise error(node.pos, f"cannot assign {kind_name(t)} to '{target.name}'"
                        + ("; matrices are declared with `matrix`" if isinstance(t, MatT) else ""))
        for fv in ctx.fvars:
            if fv.axis is None:
                raise error(target.pos, f"the index '{fv.name}' of {target.name} does not appear on the right-hand side")
        kind = Kind.VECTOR if isinstance(t, VecT) else Kind.SCALAR
        val = self.emit_final(t, ctx, node, _display(target.name, key))
        self.define(target, key, val, tuple(fv.axis for fv in ctx.fvars), kind)

    def emit_final(self, t, ctx, node, name):
        """Lower a term to one value whose axes are exactly the statement's family indices, in order."""
        want = tuple(fv.name for fv in ctx.fvars)
        if t.e in self.leaf_of:
            leaf = self.leaf_of[t.e]
            if tuple(leaf.index) == want and len(leaf.value.axes) == len(want):
                if leaf.value.name.startswith("%"):
                    leaf.value.name = name
                return leaf.value
        cls = Nonlin if isinstance(t, VecT) else ScalarFn
        used = self.index_names(t.e)
        missing = [w for w in want if w not in used]
        if missing:
            raise error(node.pos, f"the index '{missing[0]}' does not appear on the right-hand side")
        sym = self.emit_cw(cls, t.e, ctx, node.pos, name=name, dim=getattr(t, "dim", None), order=want)
        return self.leaf_of[sym].value

    # ------------------------------------------------------------------ names and targets

    def target_key(self, target, ctx, allow_family, defining=True, fvars=None):
        """The unrolled/family index tuple of a left-hand side; free names become family indices."""
        if fvars is not None:
            ctx.fvars = list(fvars)
        key = []
        for ix in target.indices:
            if isinstance(ix, ast.Name) and ix.id not in self.consts:
                b = ctx.scope.lookup(ix.id)
                if isinstance(b, int):
                    key.append(b)
                    continue
                if not allow_family:
                    raise error(ix.pos, f"a matrix cannot be a family over data; '{ix.id}' must be a loop variable")
                fv = b if isinstance(b, FVar) else ctx.fvar(ix.id)
                if fv is None:
                    if ix.id in RESERVED or ix.id in self.names or ix.id in self.data:
                        raise error(ix.pos, f"'{ix.id}' cannot be used as an index name")
                    fv = FVar(ix.id, None, ix.pos)
                if any(f.name == fv.name for f in ctx.fvars) and fv not in ctx.fvars:
                    raise error(ix.pos, f"index '{ix.id}' is repeated")
                if fv in ctx.fvars:
                    raise error(ix.pos, f"index '{ix.id}' is repeated")
                ctx.fvars.append(fv)
                key.append(fv)
            else:
                key.append(self.int_value(ix, ctx, "an index"))
        return tuple(key)

    def define(self, target, key, val, axes, kind):
        name = target.name
        if name in self.outs and name not in self.names:
            raise error(target.pos, f"'{name}' is already an output name")
        pattern = tuple("f" if isinstance(k, FVar) else "u" for k in key)
        ukey = tuple(k for k in key if not isinstance(k, FVar))
        entry = self.names.get(name)
        if entry is None:
            if name in self.consts or name in self.data or name in self.fns or name in self.widths or name in RESERVED:
                raise error(target.pos, f"'{name}' is already defined as a "
                            + ("const" if name in self.consts else "data set" if name in self.data else
                               "function" if name in self.fns else "width" if name in self.widths else "builtin"))
            if F.builtin(name):
                raise error(target.pos, f"'{name}' is a builtin function")
            entry = self.names[name] = NameEntry(kind, pattern, axes, target.pos)
        else:
            if entry.kind != kind:
                raise error(target.pos, f"'{name}' was defined as a {entry.kind.value} at line {entry.pos.line}")
            if entry.pattern != pattern or entry.axes != axes:
                raise error(target.pos, f"'{name}' is indexed differently than at line {entry.pos.line} "
                                        f"({_pattern_text(entry)})")
        if ukey in entry.entries:
            raise error(target.pos, f"'{_display(name, key)}' is already defined at line {entry.lines[ukey]} "
                                    "(single assignment: a name is given a value once)")
        entry.entries[ukey] = val
        entry.lines[ukey] = target.pos.line

    def int_value(self, node, ctx, what):
        t = self.expr(node, Ctx(ctx.scope, ctx.pos, data_only=True))
        if not isinstance(t, Num) or not t.v.is_integer:
            raise error(node.pos, f"{what} must be an integer, got {_show(t)}")
        return int(t.v)

    # ------------------------------------------------------------------ values and instructions

    def new_value(self, name, kind, axes=(), dim=None):
        v = Value(len(self.values), name, kind, tuple(axes), dim)
        self.values.append(v)
        return v

    def leaf(self, value, index):
        key = (value.id, tuple(index))
        sym = self.leaf_sym.get(key)
        if sym is None:
            sym = sympy.Symbol(f"v{value.id}[{','.join(map(str, index))}]", real=True)
            self.leaf_sym[key] = sym
            self.leaf_of[sym] = Leaf(value, tuple(index))
        return sym

    def leaf_expr(self, sym):
        return sym

    def index_names(self, expr):
        names = set()
        for s in expr.free_symbols:
            lf = self.leaf_of.get(s)
            if lf:
                names.update(i for i in lf.index if isinstance(i, str))
        return names

    def emit_cw(self, cls, expr, ctx, pos, name=None, dim=None, order=None):
        """Emit a Nonlin / Moment / ScalarFn computing ``expr``; return the leaf of its result."""
        leaves = sorted((s for s in expr.free_symbols if s in self.leaf_of),
                        key=lambda s: (self.leaf_of[s].value.id, str(self.leaf_of[s].index)))
        vec = [s for s in leaves if self.leaf_of[s].value.kind == Kind.VECTOR]
        par = [s for s in leaves if self.leaf_of[s].value.kind == Kind.SCALAR]
        if cls is ScalarFn and vec:
            raise error(pos, "internal: vector in a scalar function")
        used = self.index_names(expr)
        order = order if order is not None else [fv.name for fv in ctx.fvars]
        names = [n for n in order if n in used]
        names += sorted(used - set(names))
        axes = tuple(self.fvar_axis(ctx, n, pos) for n in names)
        amap = {n: AxisRef(p) for p, n in enumerate(names)}

        def arg(s):
            lf = self.leaf_of[s]
            return Arg(lf.value, tuple(amap[i] if isinstance(i, str) else i for i in lf.index))

        vec_args = tuple(arg(s) for s in vec)
        params = tuple(arg(s) for s in par)
        fn = expr.xreplace({**{s: VEC_ARGS[k] for k, s in enumerate(vec)},
                            **{s: PARAMS[k] for k, s in enumerate(par)}})
        key = CSE_KEY[cls](cls, axes, fn=fn, vec_args=vec_args, params=params)
        out = self.cse.get(key)
        if out is None:
            kind = Kind.VECTOR if cls is Nonlin else Kind.SCALAR
            out = self.new_value(name or f"%{len(self.values)}", kind, axes, dim if cls is Nonlin else None)
            self.instrs.append(cls(out, pos, fn=fn, vec_args=vec_args, params=params))
            self.cse[key] = out
        elif name and out.name.startswith("%"):
            out.name = name
        return self.leaf(out, names)

    def fvar_axis(self, ctx, name, pos):
        fv = ctx.fvar(name)
        if fv is None or fv.axis is None:
            raise error(pos, f"cannot tell which data set the index '{name}' runs over")
        return fv.axis

    def emit_matmul(self, m: MatT, v: VecT, ctx, pos):
        rows, cols = m.value.dim
        need, out_dim = (rows, cols) if m.transposed else (cols, rows)
        if v.dim != need:
            raise error(pos, f"shape mismatch: {m.value.name}{'.T' if m.transposed else ''} has "
                             f"{_width_text(need, self.widths)} columns but the vector has width "
                             f"{_width_text(v.dim, self.widths)}")
        sym = v.e if v.e in self.leaf_of else self.emit_cw(Nonlin, v.e, ctx, pos, dim=v.dim)
        lf = self.leaf_of[sym]
        names = [i for i in lf.index if isinstance(i, str)]
        names = list(dict.fromkeys(names))
        axes = tuple(self.fvar_axis(ctx, n, pos) for n in names)
        amap = {n: AxisRef(p) for p, n in enumerate(names)}
        arg = Arg(lf.value, tuple(amap[i] if isinstance(i, str) else i for i in lf.index))
        key = CSE_KEY[MatMul](MatMul, axes, matrix=m.value, arg=arg, transposed=m.transposed)
        out = self.cse.get(key)
        if out is None:
            out = self.new_value(f"%{len(self.values)}", Kind.VECTOR, axes, out_dim)
            self.instrs.append(MatMul(out, pos, matrix=m.value, arg=arg, transposed=m.transposed))
            self.cse[key] = out
        return VecT(self.leaf(out, names) * m.scale, out_dim)

    def check_converges(self, e, node):
        """A width-dependent scalar must have a finite limit as n -> oo (the limit program uses it)."""
        if self.width_dependent:
            return
        lim = width_limit(e)
        if lim is None or not lim.is_finite:
            raise error(node.pos, f"the scalar {sympy.sstr(e)} has no finite limit as n -> oo "
                                  f"({'it diverges' if lim is not None else 'it does not converge'}); "
                                  "the scalars of a Tensor Program must converge (a program whose scalars grow "
                                  "with n is analysed by `tpc scaling` and run by `tpc simulate --coord-check`)")

    def as_scalar_leaf(self, t, ctx, node):
        """A width-dependent number or data used inside the program becomes an initial scalar."""
        if isinstance(t, Num):
            return t.v
        if isinstance(t, WidthT):
            key = ("width", t.e)
            self.check_converges(t.e, node)
            if key not in self.width_scalars:
                val = self.new_value(f"%{len(self.values)}", Kind.SCALAR)
                self.instrs.append(InitScalar(val, node.pos, value=t.e))
                self.width_scalars[key] = val
            return self.leaf(self.width_scalars[key], ())
        if isinstance(t, DataT):
            if t.data_shape:
                raise error(node.pos, f"data of shape {t.data_shape} cannot be used as a scalar; index it")
            names = list(t.tags)
            fvs = []
            for nm in names:
                fv = ctx.fvar(nm)
                if fv is None:
                    raise error(node.pos, f"index '{nm}' is not bound here")
                fvs.append(fv)
            arr = np.asarray(t.arr, dtype=np.float64)
            if not arr.flags.c_contiguous:
                arr = np.array(arr, order="C")     # (ascontiguousarray makes 0-d data 1-d)
            key = self._data_key(arr)
            if key not in self.width_scalars:
                val = self.new_value(f"%{len(self.values)}", Kind.SCALAR, tuple(fv.axis for fv in fvs))
                self.instrs.append(InitScalar(val, node.pos, value=arr))
                self.width_scalars[key] = val
            return self.leaf(self.width_scalars[key], names)
        raise error(node.pos, f"expected a scalar, got {kind_name(t)}")

    def _data_key(self, arr):
        """The common-subexpression key of a data table: its bytes for small tables; for large ones
        (a data family's N x N table) the array object itself (kept alive here, so its id is not
        reused): reading and hashing hundreds of MiB costs more than a second initial scalar would."""
        if arr.size <= 1 << 16:
            return "data", arr.tobytes(), arr.shape
        self._kept_tables = getattr(self, "_kept_tables", [])
        self._kept_tables.append(arr)
        return "data-table", id(arr), arr.shape

    # ------------------------------------------------------------------ expressions

    def expr(self, node, ctx, fvars=None):
        if fvars is not None:
            ctx.fvars = list(fvars)
        from .expressions import elaborate
        return elaborate(self, node, ctx)
