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
"""
from __future__ import annotations

import csv
import functools
import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import sympy

from .. import functions as F
from ..errors import Diagnostics, TPError, did_you_mean, error, whole_file
from ..ir.core import (PARAMS, VEC_ARGS, WIDTH, Arg, Axis, AxisRef, GaussianBlock, InitMatrix, InitScalar,
                       InitVector, Kind, MatMul, Nonlin, Output, ScalarFn, Value)
from . import ast
from .terms import DataT, ListT, MatT, Num, ScalT, VecT, WidthT, kind_name, width_limit

RESERVED = {"n", "pi", "mean", "dot", "norm", "dim", "len", "sum", "softmax", "N", "load", "delta",
            "min", "max"}


# Loops are unrolled at compile time; a bound this large is a mistake, not a network.
MAX_UNROLL = 100_000


class _Poisoned(Exception):
    """A statement used a name whose definition already failed: skip it silently."""


@dataclass(eq=False)
class FVar:
    """A family index of the statement being elaborated."""

    name: str
    axis: Axis | None = None
    pos: object = None


@dataclass
class NameEntry:
    kind: Kind
    pattern: tuple          # per index position: "u" (unrolled) or "f" (family)
    axes: tuple             # Axis of each family position
    pos: object
    entries: dict = field(default_factory=dict)  # unrolled index tuple -> Value
    lines: dict = field(default_factory=dict)    # unrolled index tuple -> line of its definition


@dataclass
class Leaf:
    value: Value
    index: tuple  # family index names (str) or fixed members (int)


@dataclass
class UserFn:
    name: str
    formals: tuple
    body: sympy.Expr
    pos: object


@dataclass
class _OutBuilder:
    name: str
    pos: object
    pattern: tuple
    axes: tuple
    items: dict = field(default_factory=dict)


class Scope:
    """Loop bindings: name -> int (unrolled) or FVar (family index)."""

    def __init__(self, parent=None, bindings=None):
        self.parent = parent
        self.bindings = dict(bindings or {})

    def lookup(self, name):
        s = self
        while s is not None:
            if name in s.bindings:
                return s.bindings[name]
            s = s.parent
        return None

    def child(self, bindings):
        return Scope(self, bindings)


class Ctx:
    """Per-statement state: scope, the ordered family indices, partner (primed) indices allowed."""

    def __init__(self, scope: Scope, pos, data_only=False, fn_formals=None):
        self.scope = scope
        self.pos = pos
        self.fvars: list[FVar] = []
        self.data_only = data_only        # covariance / mean / variance specs: no program variables
        self.fn_formals = fn_formals or {}  # inside `fn` bodies: parameter name -> symbol
        self.partner_tags = {}            # "i'" -> tag name for data arrays

    def fvar(self, name):
        b = self.scope.lookup(name)
        if isinstance(b, FVar):
            return b
        for v in self.fvars:
            if v.name == name:
                return v
        return None


@functools.lru_cache(maxsize=4096)
def _number(text: str) -> sympy.Expr:
    f = Fraction(text)
    return sympy.Integer(f.numerator) if f.denominator == 1 else sympy.Rational(f.numerator, f.denominator)


class Elaborator:
    def __init__(self, source, defines=None, base_dir=None):
        self.source = source
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

    # ------------------------------------------------------------------ driver

    def run(self, module: ast.Module):
        self.stmts(module.statements, Scope())
        for name in sorted(set(self.defines) - self.used_defines):
            self.diags.add(whole_file(self.source), f"-D {name}=...: the program has no const named '{name}'"
                           + did_you_mean(name, self.consts))
        outputs = self._build_outputs()
        if not outputs and not self.diags.errors:
            self.diags.add(whole_file(self.source), "the program has no outputs (declare at least one with `out ...`)")
        self.diags.raise_if_errors()
        return outputs

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
        total = int(np.prod([len(r) for _, r in ranges], dtype=np.float64))
        if total > MAX_UNROLL:
            raise error(loops[0].pos, f"this loop unrolls to {total} iterations; at most {MAX_UNROLL} are allowed")
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

    # ------------------------------------------------------------------ simple declarations

    def stmt_ConstDecl(self, s, scope):
        for name, expr, pos in s.bindings:
            self.check_new_name(name, pos)
            if name in self.defines:
                self.used_defines.add(name)
                self.consts[name] = self.defines[name]
                continue
            t = self.expr(expr, Ctx(scope, pos, data_only=True))
            if isinstance(t, DataT) and not t.tags and t.arr.ndim == 0:
                if not np.isfinite(t.arr):
                    raise error(expr.pos, "this const is not a finite number")
                t = Num(_data_number(float(t.arr)))
            if not isinstance(t, Num):
                raise error(expr.pos, f"a const must be a number, got {kind_name(t)}")
            self.consts[name] = t.v

    def stmt_WidthDecl(self, s, scope):
        self.check_new_name(s.name, s.pos)
        t = self.expr(s.value, Ctx(scope, s.pos, data_only=True))
        if not isinstance(t, WidthT):
            raise error(s.value.pos, "a width must be a positive multiple of n, e.g. `width m = 2*n`")
        ratio = sympy.simplify(t.e / WIDTH)
        if ratio.free_symbols or not ratio.is_positive:
            raise error(s.value.pos, "a width must be a positive multiple of n, e.g. `width m = 2*n`")
        self.widths[s.name] = ratio

    def stmt_DataDecl(self, s, scope):
        self.check_new_name(s.name, s.pos)
        v = s.value
        if isinstance(v, ast.Call) and v.func == "load":
            arr = self.load_data(v)
        else:
            t = self.expr(v, Ctx(scope, s.pos, data_only=True))
            if isinstance(t, ListT):
                from .expressions import list_to_array
                t = DataT(list_to_array(t, v), ())
            if isinstance(t, Num):
                raise error(v.pos, "data must be a list of points (at least one dimension)")
            if not isinstance(t, DataT) or t.tags:
                raise error(v.pos, "data must be a list of numbers or a load(\"file\")")
            arr = t.arr
        if arr.ndim == 0 or arr.shape[0] == 0:
            raise error(v.pos, "data must contain at least one point")
        if not np.all(np.isfinite(arr)):
            raise error(v.pos, "data contains NaN or infinite values")
        self.data[s.name] = arr
        self.axes[s.name] = Axis(s.name, int(arr.shape[0]))

    def load_data(self, call):
        """The array in a .npy file, or the numbers of a .csv file (one point per row, '#' comments)."""
        if len(call.args) != 1 or not isinstance(call.args[0], ast.String):
            raise error(call.pos, 'load takes one file name in quotes: load("points.npy")')
        pos = call.args[0].pos
        path = self.base_dir / call.args[0].value
        if path.suffix not in (".npy", ".csv", ".txt"):
            raise error(pos, f"cannot load '{call.args[0].value}': use a .npy or .csv file")
        try:
            if path.suffix == ".npy":
                arr = np.load(path, allow_pickle=False)
                if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
                    raise error(pos, f"{path.name} must hold an array of real numbers")
                return np.asarray(arr, dtype=np.float64)
            with open(path, newline="", encoding="utf-8") as fh:
                return _csv_array(fh, path.name, pos)
        except FileNotFoundError:
            raise error(pos, f"no such file: {path}") from None
        except (ValueError, OSError) as e:
            what = "not a .npy array file" if path.suffix == ".npy" else str(e).split(". ")[0]
            raise error(pos, f"cannot read {path.name}: {what}") from None

    def stmt_FnDecl(self, s, scope):
        self.check_new_name(s.name, s.pos)
        if len(set(s.params)) != len(s.params):
            dup = next(p for p in s.params if s.params.count(p) > 1)
            raise error(s.pos, f"fn {s.name}: the parameter '{dup}' is repeated")
        formals = tuple(sympy.Symbol(f"_{s.name}_{p}", real=True) for p in s.params)
        ctx = Ctx(scope, s.pos, fn_formals=dict(zip(s.params, formals)))
        t = self.expr(s.body, ctx)
        if isinstance(t, (MatT, ListT, DataT)):
            raise error(s.body.pos, f"a function body must be an arithmetic expression, got {kind_name(t)}")
        body = t.v if isinstance(t, Num) else t.e
        self.fns[s.name] = UserFn(s.name, formals, body, s.pos)

    def check_new_name(self, name, pos):
        if name in RESERVED:
            raise error(pos, f"'{name}' is reserved")
        if name in self.consts or name in self.data or name in self.widths or name in self.fns:
            raise error(pos, f"'{name}' is already defined")
        if name in self.names:
            raise error(pos, f"'{name}' is already defined (line {self.names[name].pos.line})")
        if F.builtin(name):
            raise error(pos, f"'{name}' is a builtin function")

    # ------------------------------------------------------------------ program declarations

    def stmt_MatrixDecl(self, s, scope):
        ctx0 = Ctx(scope, s.pos)
        for b in self.loop_bindings(s.loops, scope, ctx0, family_ok=False):
            ctx = Ctx(scope.child(b), s.pos, data_only=True)
            key = self.target_key(s.target, ctx, allow_family=False)
            mean_node, var_node = self.dist_nodes(s.dist)
            mean, var = self.dist_args(s.dist, ctx)
            if not (isinstance(mean, Num) and mean.v == 0):
                raise error(mean_node.pos, "initial matrices have mean 0: N(0, variance)")
            if not isinstance(var, (Num, WidthT)):
                raise error(var_node.pos, f"a matrix variance must be a number or depend on n, got {kind_name(var)}")
            rows, cols = (self.width_of(s.shape[0], ctx), self.width_of(s.shape[1], ctx)) if s.shape else (1, 1)
            v = var.v if isinstance(var, Num) else var.e
            # sigma^2 = lim variance * fan_in must exist: entries scale as 1/n.
            sigma2 = width_limit(v * cols * WIDTH)
            if sigma2 is None or not sigma2.is_finite:
                raise error(var_node.pos, f"the entry variance {sympy.sstr(v)} does not scale as 1/n: "
                                          f"sigma^2 = lim fan_in * variance is infinite (write e.g. 2/n)")
            if sigma2 < 0 or not _nonnegative(v.subs(WIDTH, 1000)):
                raise error(var_node.pos, "a variance must be real and non-negative")
            val = self.new_value(_display(s.target.name, key), Kind.MATRIX, (), (rows, cols))
            self.define(s.target, key, val, (), Kind.MATRIX)
            self.instrs.append(InitMatrix(val, s.pos, variance=sympy.sympify(v)))

    def width_of(self, node, ctx):
        t = self.expr(node, ctx)
        if isinstance(t, WidthT):
            r = sympy.simplify(t.e / WIDTH)
            if not r.free_symbols and r.is_positive:
                return r
        raise error(node.pos, "expected a width (n, a width name, or a multiple of n)")

    def stmt_VectorDecl(self, s, scope):
        """Declare a jointly Gaussian block: every target x every value of the statement's loops."""
        ctx0 = Ctx(scope, s.pos)
        bindings = self.loop_bindings(s.loops, scope, ctx0)
        unrolled = [lp.var for lp in s.loops if isinstance(lp, ast.RangeLoop)]
        dim = self.width_of(s.dim, Ctx(scope, s.pos, data_only=True)) if s.dim is not None else sympy.S.One
        members = []  # (target index, bindings, ctx with fvars, value)
        for b in bindings:
            for ti, target in enumerate(s.targets):
                ctx = Ctx(scope.child(b), s.pos)
                key = self.target_key(target, ctx, allow_family=True)
                for fv in ctx.fvars:
                    if fv.axis is None:
                        fv.axis = self.infer_axis_from_spec(fv, s.dist, ctx)
                axes = tuple(fv.axis for fv in ctx.fvars)
                val = self.new_value(_display(target.name, key), Kind.VECTOR, axes, dim)
                members.append((ti, b, ctx, val, key))
        if not members:
            return
        # Members that differ in an unrolled index whose primed partner the covariance does not
        # mention are independent: they go to separate Gaussian blocks.
        mentioned = {nm for nm in _names_in(self.dist_nodes(s.dist)[1]) if nm.endswith("'")}
        free = [u for u in unrolled if u + "'" not in mentioned]
        groups = {}
        for m in members:
            groups.setdefault(tuple(m[1][u] for u in free), []).append(m)
        for group in groups.values():
            self.declare_block(s, group, [u for u in unrolled if u not in free])

    def declare_block(self, s, members, unrolled):
        block_means, block_covs = self.gaussian_spec(s, members, unrolled)
        block = GaussianBlock(tuple(m[3] for m in members), block_means.__getitem__,
                              lambda k, l: block_covs[(k, l)], text=_span_text(s), pos=s.pos)
        for k in range(len(members)):
            block.mean(k)
        for (k, l) in block_covs:
            block.cov(k, l)
        self.blocks.append(block)
        for k, (ti, b, ctx, val, key) in enumerate(members):
            self.define(s.targets[ti], key, val, tuple(fv.axis for fv in ctx.fvars), Kind.VECTOR)
            self.instrs.append(InitVector(val, s.pos, block=block, member=k))

    def infer_axis_from_spec(self, fv, dist, ctx):
        """A family index of an initial vector gets its data set from ``X[i]`` in the specification."""
        found = set()

        def walk(node):
            if isinstance(node, ast.Name) and node.id in self.poisoned:
                raise _Poisoned()
            if isinstance(node, ast.Subscript) and isinstance(node.base, ast.Name) and node.base.id in self.axes:
                for ix in node.indices:
                    if isinstance(ix, ast.Name) and ix.id.rstrip("'") == fv.name:
                        found.add(node.base.id)
            for child in _children(node):
                walk(child)

        walk(dist)
        if len(found) == 1:
            return self.axes[found.pop()]
        if not found:
            raise error(fv.pos or ctx.pos, f"cannot tell which data set the index '{fv.name}' runs over; "
                                           f"add `for {fv.name} in X`")
        raise error(fv.pos or ctx.pos, f"index '{fv.name}' is used with several data sets: {sorted(found)}")

    def gaussian_spec(self, s, members, unrolled):
        """Evaluate the mean of each member and the covariance of each pair of members.

        The covariance expression gives Cov(x[t][i], x[t'][i']).  An index whose primed
        partner does not appear in it is *independent*: members that differ in it have
        covariance 0 (so ``vector b[l] ~ N(0, 1) for l in 1..L`` declares L independent
        vectors, and ``vector v[i] ~ N(0, 1) for i in X`` one independent vector per point).
        """
        mean_node, cov_node = self.dist_nodes(s.dist)
        mentioned = {nm for nm in _names_in(cov_node) if nm.endswith("'")}
        ntarget = len(s.targets)
        means = []
        for ti, b, ctx, val, _ in members:
            m = self.spec_value(mean_node, b, ctx, None, ntarget, ti, None, "mean")
            means.append(self.spec_array(m, ctx.fvars, (), mean_node, "mean"))
        covs = {}
        for k, (tk, bk, ck, vk, _) in enumerate(members):
            for l, (tl, bl, cl, vl, _) in enumerate(members):
                primed = {u + "'": bl[u] for u in unrolled}
                c = self.spec_value(cov_node, bk, ck, primed, ntarget, tk, tl, "covariance")
                arr = self.spec_array(c, ck.fvars, cl.fvars, cov_node, "covariance")
                for a, fv in enumerate(ck.fvars):
                    if fv.name + "'" not in mentioned and len(cl.fvars) == len(ck.fvars):
                        arr = arr * _kronecker(arr.shape, a, len(ck.fvars) + a)
                covs[(k, l)] = arr
                if l < k:
                    _check_symmetric(covs[(l, k)], arr, members[l][3], vk, cov_node)
        return means, covs

    def dist_nodes(self, dist):
        if not (isinstance(dist, ast.Call) and dist.func == "N" and len(dist.args) == 2):
            raise error(dist.pos, "expected a Gaussian N(mean, covariance)")
        return dist.args

    def dist_args(self, dist, ctx):
        m, c = self.dist_nodes(dist)
        return self.expr(m, ctx), self.expr(c, ctx)

    def spec_value(self, node, b, ctx, primed, ntarget, tk, tl, what):
        scope = ctx.scope.child(primed or {})
        c = Ctx(scope, ctx.pos, data_only=True)
        c.fvars = list(ctx.fvars)
        if primed is not None:
            c.partner_tags = {fv.name + "'": fv.name + "'" for fv in ctx.fvars}
        t = self.expr(node, c)
        if ntarget > 1:
            if isinstance(t, ListT):
                if len(t.items) != ntarget:
                    raise error(node.pos, f"the {what} lists {len(t.items)} entries for {ntarget} vectors")
                t = t.items[tk]
                if tl is not None:
                    if not isinstance(t, ListT) or len(t.items) != ntarget:
                        raise error(node.pos, f"the covariance of {ntarget} vectors is a {ntarget} x {ntarget} table")
                    t = t.items[tl]
            elif what == "covariance":
                raise error(node.pos, f"the covariance of {ntarget} vectors is a {ntarget} x {ntarget} table "
                                      f"[[...], ...]")
        return t

    def spec_array(self, t, fvars_k, fvars_l, node, what):
        """A mean/covariance term as an array over (axes of k) + (axes of l), tags checked."""
        if isinstance(t, Num):
            if not t.v.is_real:
                raise error(node.pos, f"the {what} must be real")
            arr, tags = np.array(float(t.v)), ()
        elif isinstance(t, DataT):
            if t.data_shape:
                raise error(node.pos, f"the {what} must be a number per member; got data of shape {t.data_shape}")
            arr, tags = t.arr, t.tags
        else:
            raise error(node.pos, f"the {what} must be a number or an expression of data, got {kind_name(t)}")
        want = [fv.name for fv in fvars_k] + [fv.name + "'" for fv in fvars_l]
        sizes = [fv.axis.size for fv in fvars_k] + [fv.axis.size for fv in fvars_l]
        extra = [tg for tg in tags if tg not in want]
        if extra:
            raise error(node.pos, f"the {what} uses index '{extra[0]}', which is not an index of these vectors")
        arr = _expand_to(DataT(arr, tuple(tags)), want, sizes)
        return np.broadcast_to(arr, sizes).astype(np.float64)

    def stmt_ScalarDecl(self, s, scope):
        ctx0 = Ctx(scope, s.pos)
        for b in self.loop_bindings(s.loops, scope, ctx0):
            for target, expr in s.bindings:
                ctx = Ctx(scope.child(b), s.pos)
                key = self.target_key(target, ctx, allow_family=True)
                t = self.expr(expr, Ctx(ctx.scope, s.pos, data_only=True), fvars=ctx.fvars)
                self.define_initial_scalar(target, key, t, ctx, expr)

    def define_initial_scalar(self, target, key, t, ctx, node):
        for fv in ctx.fvars:
            if fv.axis is None:
                raise error(fv.pos or node.pos, f"cannot tell which data set '{fv.name}' runs over")
        axes = tuple(fv.axis for fv in ctx.fvars)
        if isinstance(t, (Num, WidthT)):
            if axes:
                raise error(node.pos, "a family of scalars needs a value per member (an expression of data)")
            value = t.v if isinstance(t, Num) else t.e
            self.check_converges(value, node)
        elif isinstance(t, DataT):
            value = self.spec_array(t, ctx.fvars, (), node, "value")
        else:
            raise error(node.pos, f"an initial scalar must be a number, depend on n, or be data; got "
                                  f"{kind_name(t)} (use `name = ...` for a computed scalar)")
        val = self.new_value(_display(target.name, key), Kind.SCALAR, axes)
        self.define(target, key, val, axes, Kind.SCALAR)
        self.instrs.append(InitScalar(val, node.pos, value=value if isinstance(value, np.ndarray)
                                      else sympy.sympify(value)))

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
        key = (cls.op, fn, tuple((a.value.id, a.index) for a in vec_args + params), axes)
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
        key = ("matmul", m.value.id, m.transposed, arg.value.id, arg.index, axes)
        out = self.cse.get(key)
        if out is None:
            out = self.new_value(f"%{len(self.values)}", Kind.VECTOR, axes, out_dim)
            self.instrs.append(MatMul(out, pos, matrix=m.value, arg=arg, transposed=m.transposed))
            self.cse[key] = out
        return VecT(self.leaf(out, names) * m.scale, out_dim)

    def check_converges(self, e, node):
        """A width-dependent scalar must have a finite limit as n -> oo (the limit program uses it)."""
        lim = width_limit(e)
        if lim is None or not lim.is_finite:
            raise error(node.pos, f"the scalar {sympy.sstr(e)} has no finite limit as n -> oo "
                                  f"({'it diverges' if lim is not None else 'it does not converge'}); "
                                  "the scalars of a Tensor Program must converge")

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
            arr = np.ascontiguousarray(t.arr, dtype=np.float64)
            key = ("data", arr.tobytes(), arr.shape)
            if key not in self.width_scalars:
                val = self.new_value(f"%{len(self.values)}", Kind.SCALAR, tuple(fv.axis for fv in fvs))
                self.instrs.append(InitScalar(val, node.pos, value=arr))
                self.width_scalars[key] = val
            return self.leaf(self.width_scalars[key], names)
        raise error(node.pos, f"expected a scalar, got {kind_name(t)}")

    # ------------------------------------------------------------------ expressions

    def expr(self, node, ctx, fvars=None):
        if fvars is not None:
            ctx.fvars = list(fvars)
        from .expressions import elaborate
        return elaborate(self, node, ctx)


def _expand_to(d: DataT, want, sizes):
    arr = d.arr
    order = [d.tags.index(t) for t in want if t in d.tags]
    arr = np.transpose(arr, order) if order else arr
    shape = [sizes[k] if t in d.tags else 1 for k, t in enumerate(want)]
    return arr.reshape(shape)


def _nonnegative(x: sympy.Expr) -> bool:
    try:
        return float(x) >= 0
    except TypeError:  # complex
        return False


def _data_number(v: float) -> sympy.Expr:
    """A number computed from data: an exact Integer when integral, else the float64 value itself."""
    return sympy.Integer(int(v)) if v.is_integer() else sympy.Float(v)


def _csv_array(lines, name, pos):
    """Rows of comma-separated numbers as a 2-D array (a single column stays 2-D: points of dimension 1)."""
    rows = []
    for lineno, row in enumerate(csv.reader(lines), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        try:
            rows.append([float(x) for x in row])
        except ValueError:
            bad = next(x for x in row if not _is_float(x))
            raise error(pos, f"{name}, line {lineno}: '{bad.strip()}' is not a number") from None
        if len(rows[-1]) != len(rows[0]):
            raise error(pos, f"{name}, line {lineno}: {len(rows[-1])} value{'s' if len(rows[-1]) != 1 else ''}, "
                             f"but the first row has {len(rows[0])}")
    return np.array(rows, dtype=np.float64)


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _targets(s):
    if isinstance(s, ast.ForBlock):
        return [t for b in s.body for t in _targets(b)]
    if isinstance(s, (ast.Assign, ast.MatrixDecl, ast.OutDecl)):
        return [s.target.name]
    if isinstance(s, ast.VectorDecl):
        return [t.name for t in s.targets]
    if isinstance(s, ast.ScalarDecl):
        return [t.name for t, _ in s.bindings]
    if isinstance(s, (ast.DataDecl, ast.WidthDecl, ast.FnDecl)):
        return [s.name]
    if isinstance(s, ast.ConstDecl):
        return [b[0] for b in s.bindings]
    return []


def _children(node):
    if isinstance(node, ast.Node):
        for v in vars(node).values():
            if isinstance(v, ast.Node):
                yield v
            elif isinstance(v, tuple):
                for x in v:
                    if isinstance(x, ast.Node):
                        yield x


def _display(name, key):
    """A value's name: the program name and its unrolled indices (family indices are axes)."""
    return name + "".join(f"[{k}]" for k in key if not isinstance(k, FVar))


def _names_in(node):
    if isinstance(node, ast.Name):
        yield node.id
    for child in _children(node):
        yield from _names_in(child)


def _check_symmetric(c_lk, c_kl, v_l, v_k, node):
    """Cov(x_k, x_l) must be the transpose of Cov(x_l, x_k) (up to rounding)."""
    nl = len(v_l.axes)
    back = np.transpose(c_lk, tuple(range(nl, c_lk.ndim)) + tuple(range(nl)))
    diff = np.abs(c_kl - back)
    scale = max(float(np.max(np.abs(c_kl), initial=0.0)), float(np.max(np.abs(back), initial=0.0)), 1e-300)
    if diff.size and float(np.max(diff)) > 1e-12 * scale:
        at = np.unravel_index(np.argmax(diff), diff.shape)
        nk = len(v_k.axes)
        ik, il = "".join(f"[{a}]" for a in at[:nk]), "".join(f"[{a}]" for a in at[nk:])
        raise error(node.pos, f"the covariance is not symmetric: Cov({v_k.name}{ik}, {v_l.name}{il}) = "
                              f"{c_kl[at]:.6g} but Cov({v_l.name}{il}, {v_k.name}{ik}) = {back[at]:.6g}")


def _kronecker(shape, a, b):
    """An array of ``shape`` that is 1 where index a equals index b, else 0 (broadcastable)."""
    n = shape[a]
    eye = np.eye(n)
    view = [1] * len(shape)
    view[a], view[b] = n, n
    return eye.reshape(view)


def _pattern_text(entry):
    return "[" + "][".join("<int>" if p == "u" else "<family>" for p in entry.pattern) + "]" if entry.pattern \
        else "no indices"


def _show(t):
    if isinstance(t, Num):
        return str(t.v)
    return kind_name(t)


def _width_text(r, widths):
    for k, v in widths.items():
        if v == r:
            return k
    return f"{r}*n"


def _span_text(s):
    """The declaration's source line without its comment (used to name a Gaussian block)."""
    return s.pos.source.line(s.pos.line).split("#", 1)[0].strip()
