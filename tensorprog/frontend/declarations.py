"""Declarations: consts, data, widths, functions, initial matrices, initial scalars, and initial
vectors -- jointly Gaussian blocks, with means and covariances evaluated from the data."""
from __future__ import annotations

import csv
import io

import numpy as np
import sympy

from .. import functions as F
from ..errors import error
from ..ir.core import WIDTH, Axis, GaussianBlock, InitMatrix, InitScalar, InitVector, Kind
from . import ast, limits
from .scope import RESERVED, Ctx, ParamInfo, UserFn, _children, _display, _Poisoned
from .terms import DataT, ListT, MatT, Num, WidthT, kind_name, width_limit


class Declarations:
    """Mixin of :class:`~tensorprog.frontend.lowering.Elaborator`: one ``stmt_*`` per declaration."""

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
            data = _read_bounded(path, pos)
            if path.suffix == ".npy":
                arr = _npy_array(data, path.name, pos)
                if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
                    raise error(pos, f"{path.name} must hold an array of real numbers")
                return np.asarray(arr, dtype=np.float64)
            return _csv_array(io.StringIO(data.decode("utf-8-sig"), newline=""), path.name, pos)
        except FileNotFoundError:
            raise error(pos, f"no such file: {path}") from None
        except UnicodeDecodeError as e:
            raise error(pos, f"cannot read {path.name}: not UTF-8 text (byte {e.start})") from None
        except (ValueError, OSError, EOFError, SyntaxError, csv.Error) as e:
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

    def stmt_ParamDecl(self, s, scope):
        """``param(rate = r) <matrix or vector declaration>``: declare, then mark every declared object trained."""
        rate = sympy.S.One
        for name, node, pos in s.options:
            if name != "rate":
                raise error(pos, f"unknown parameter option '{name}'; expected rate = <number or expression in n>")
            t = self.expr(node, Ctx(scope, s.pos, data_only=True))
            if not isinstance(t, (Num, WidthT)):
                raise error(node.pos, f"a learning rate must be a number or depend on n, got {kind_name(t)}")
            rate = sympy.sympify(t.v if isinstance(t, Num) else t.e)
            if not _nonnegative(rate.subs(WIDTH, 1000)) or rate.subs(WIDTH, 1000) == 0:
                raise error(node.pos, f"a learning rate must be positive, got {sympy.sstr(rate)}")
        first = len(self.values)
        getattr(self, "stmt_" + type(s.decl).__name__)(s.decl, scope)
        for v in self.values[first:]:
            if v.kind in (Kind.MATRIX, Kind.VECTOR):
                self.params[v.id] = ParamInfo(v, rate, s.pos)

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
        block = GaussianBlock(tuple(m[3] for m in members), tuple(block_means), block_covs,
                              text=_span_text(s), pos=s.pos)
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
        if arr.dtype == np.float64 and arr.shape == tuple(sizes) and arr.flags.c_contiguous:
            return arr      # a data table of the right layout is shared, not copied (data is never written)
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


MAX_DATA_BYTES = limits.DEFAULT.data_bytes     # the default; raised with --limit data_bytes=N


def _read_bounded(path, pos):
    """The bytes of a regular data file of at most ``limits.data_bytes``."""
    return limits.read_bounded(path, limits.current().data_bytes, "data_bytes", pos)


def _npy_array(data: bytes, name, pos):
    """The array of a .npy file's bytes, its header validated first: the shape must match the data present
    (a forged header with a huge shape would otherwise allocate terabytes before noticing)."""
    fmt = np.lib.format
    fp = io.BytesIO(data)
    version = fmt.read_magic(fp)
    reader = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
    if reader is None:
        raise ValueError(f"unsupported .npy version {version}")
    shape, fortran, dtype = reader(fp)
    if dtype.hasobject or dtype.itemsize == 0:
        raise error(pos, f"{name} must hold an array of real numbers")
    want = int(np.prod(shape, dtype=object)) * dtype.itemsize
    have = len(data) - fp.tell()
    if want != have:
        raise error(pos, f"cannot read {name}: its header announces shape {shape} ({want} bytes of data) "
                         f"but the file holds {have} bytes of data")
    return np.load(io.BytesIO(data), allow_pickle=False)


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
            shown = f"'{bad.strip()}'" if bad.strip().isprintable() else ascii(bad.strip())
            raise error(pos, f"{name}, line {lineno}: {shown} is not a number") from None
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


def _span_text(s):
    """The declaration's source line without its comment (used to name a Gaussian block)."""
    return s.pos.source.line(s.pos.line).split("#", 1)[0].strip()
