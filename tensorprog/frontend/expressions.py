"""Typing and lowering of expressions (one rule per syntax-node type and operand kinds).

``elaborate(elab, node, ctx)`` returns a term (see ``terms.py``) and emits the
instructions the expression needs (MatMul, Moment, intermediate Nonlin) through
the :class:`~tensorprog.frontend.lowering.Elaborator`.
"""
from __future__ import annotations

import numpy as np
import sympy

from .. import functions as F
from ..errors import did_you_mean, error
from ..ir.core import WIDTH, Kind, Moment
from . import ast, limits
from .grad import grad_term, ntk_term
from .train import gd_term
from .terms import (DataT, ListT, MatT, Num, ScalT, VecT, WidthT, data_binop, data_dot, eval_sympy_numpy,
                    kind_name)


def elaborate(el, node, ctx):
    rule = _RULES.get(type(node))
    if rule is None:  # pragma: no cover - every node type has a rule
        raise error(node.pos, f"unexpected {type(node).__name__}")
    return rule(el, node, ctx)


# ------------------------------------------------------------------ leaves

def _number(el, node, ctx):
    from .scope import _number as num
    value = float(node.text)
    # Checked on the float first: an exact 1e999999999 would take minutes to build.
    if value == float("inf") or (value == 0 and node.text.split("e")[0].split("E")[0].strip("0.")):
        raise error(node.pos, f"the number {node.text} is outside the range of float64")
    return Num(num(node.text))


def _string(el, node, ctx):
    raise error(node.pos, 'a string can only be a file name in load("...")')


def _name(el, node, ctx):
    name = node.id
    if name in ctx.fn_formals:
        return ScalT(ctx.fn_formals[name])
    b = ctx.scope.lookup(name)
    if isinstance(b, int):
        return Num(sympy.Integer(b))
    if b is not None or ctx.fvar(name) is not None or name in ctx.partner_tags:
        raise error(node.pos, f"'{name}' is a family index; it can only index data or variables, e.g. X[{name}]")
    if name in el.consts:
        return Num(el.consts[name])
    if name == "n":
        return WidthT(WIDTH)
    if name in el.widths:
        return WidthT(el.widths[name] * WIDTH)
    if name == "pi":
        return Num(sympy.pi)
    if name in el.data:
        return DataT(el.data[name], ())
    if name in el.names or name in el.poisoned:
        return _program_name(el, node, (), ctx)
    if name in el.fns or F.builtin(name.rstrip("'")):
        raise error(node.pos, f"'{name}' is a function; call it with arguments: {name}(...)")
    candidates = list(el.consts) + list(el.names) + list(el.data) + list(el.widths)
    raise error(node.pos, f"unknown name '{name}'" + did_you_mean(name, candidates))


def _program_name(el, node, indices, ctx):
    """``h[l][i]``: the leaf for one member (or a family member) of a program variable."""
    name = node.id
    if name in el.poisoned and name not in el.names:
        from .scope import _Poisoned
        raise _Poisoned()
    entry = el.names[name]
    if ctx.data_only:
        raise error(node.pos, f"'{name}' is a program variable; only constants and data can be used here")
    if ctx.fn_formals:
        raise error(node.pos, f"a function body can only use its parameters, constants and functions, not '{name}'")
    if len(indices) != len(entry.pattern):
        raise error(node.pos, f"'{name}' takes {len(entry.pattern)} ind{'ex' if len(entry.pattern) == 1 else 'ices'}"
                              f", got {len(indices)}")
    ukey, index, fa = [], [], 0
    for ix, p in zip(indices, entry.pattern):
        if p == "u":
            ukey.append(el.int_value(ix, ctx, "an index"))
            continue
        axis = entry.axes[fa]
        fa += 1
        if isinstance(ix, ast.Name) and (ctx.fvar(ix.id) is not None or
                                         (ix.id not in el.consts and not isinstance(ctx.scope.lookup(ix.id), int))):
            fv = ctx.fvar(ix.id)
            if fv is None:
                raise error(ix.pos, f"the index '{ix.id}' is not bound here (an index used on the right must "
                                    "appear on the left, or come from a loop)")
            if fv.axis is None:
                fv.axis = axis
            elif fv.axis != axis:
                raise error(ix.pos, f"index '{ix.id}' runs over {fv.axis.name}, but {name} is a family over {axis.name}")
            index.append(fv.name)
        else:
            k = el.int_value(ix, ctx, "an index")
            if not 0 <= k < axis.size:
                raise error(ix.pos, f"index {k} is out of range for {name} (a family over {axis.name}: 0..{axis.size - 1})")
            index.append(k)
    ukey = tuple(ukey)
    val = entry.entries.get(ukey)
    if val is None:
        have = sorted(entry.entries)
        shown = ", ".join(str(list(k)) for k in have[:6]) + (" ..." if len(have) > 6 else "")
        raise error(node.pos, f"{name}{list(ukey)} is not defined" + (f" (defined: {shown})" if have else ""))
    if entry.kind == Kind.MATRIX:
        return MatT(val)
    sym = el.leaf(val, index)
    if entry.kind == Kind.VECTOR:
        return VecT(sym, val.dim)
    return ScalT(sym)


def _subscript(el, node, ctx):
    base, indices = node, []
    while isinstance(base, ast.Subscript):
        indices = list(base.indices) + indices
        base = base.base
    if isinstance(base, ast.Name) and (base.id in el.names or base.id in el.poisoned) \
            and base.id not in ctx.fn_formals and ctx.scope.lookup(base.id) is None:
        return _program_name(el, base, indices, ctx)
    t = elaborate(el, base, ctx)
    for ix in indices:
        t = _index_term(el, t, ix, ctx, node)
    return t


def _index_term(el, t, ix, ctx, node):
    if isinstance(t, ListT):
        k = el.int_value(ix, ctx, "a list index")
        if not 0 <= k < len(t.items):
            raise error(ix.pos, f"list index {k} is out of range (length {len(t.items)})")
        return t.items[k]
    if isinstance(t, DataT):
        if not t.data_shape:
            raise error(ix.pos, "too many indices for this data")
        size = t.data_shape[0]
        nt = len(t.tags)
        if isinstance(ix, ast.Name) and (ctx.fvar(ix.id) is not None or ix.id in ctx.partner_tags):
            tag = ix.id
            fv = ctx.fvar(ix.id.rstrip("'"))
            if nt:
                raise error(ix.pos, "a family index can only select points of a data set (its first index)")
            if fv is not None and fv.axis is not None and fv.axis.size != size:
                raise error(ix.pos, f"index '{fv.name}' runs over {fv.axis.name} ({fv.axis.size} points), "
                                    f"but this data has {size}")
            if fv is not None and fv.axis is None and isinstance(node, ast.Subscript):
                base = node
                while isinstance(base, ast.Subscript):
                    base = base.base
                if isinstance(base, ast.Name) and base.id in el.axes:
                    fv.axis = el.axes[base.id]
            return DataT(np.moveaxis(t.arr, nt, 0) if nt else t.arr, (tag,) + tuple(t.tags))
        k = el.int_value(ix, ctx, "a data index")
        if not 0 <= k < size:
            raise error(ix.pos, f"index {k} is out of range (this data axis has {size} entries)")
        return DataT(np.take(t.arr, k, axis=nt), t.tags)
    raise error(ix.pos, f"cannot index {kind_name(t)}")


def _transpose(el, node, ctx):
    t = elaborate(el, node.base, ctx)
    if not isinstance(t, MatT):
        raise error(node.pos, f".T transposes a matrix, not {kind_name(t)}")
    return MatT(t.value, not t.transposed, t.scale)


# ------------------------------------------------------------------ arithmetic

def _neg(el, node, ctx):
    return binop(el, "*", Num(sympy.S.NegativeOne), elaborate(el, node.operand, ctx), node, ctx)


def _binop_node(el, node, ctx):
    a = elaborate(el, node.left, ctx)
    b = elaborate(el, node.right, ctx)
    return binop(el, node.op, a, b, node, ctx)


_SYMPY_OPS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "^": lambda a, b: a ** b,
}


def _finite(v, node):
    constant = v.is_number or v.free_symbols <= {WIDTH}
    if v.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo) or (constant and v.is_real is False):
        raise error(node.pos, "this arithmetic has no finite real value (division by zero, or the root of a "
                              "negative number?)")
    return v


# Exact arithmetic would spend unbounded time and memory on a power such as 9^9^9; symbolic derivatives
# grow exponentially with the order.  Defaults of limits.Limits (power_bits, derivative_order).
MAX_POWER_BITS = limits.DEFAULT.power_bits
MAX_DERIVATIVE_ORDER = limits.DEFAULT.derivative_order


def _check_power(a, b, node):
    """Refuse an exact power base^exponent whose result would have more than ``limits.power_bits`` bits."""
    if not (a.is_Rational and b.is_Number) or a in (0, 1, -1):
        return
    bits = max(abs(a.p).bit_length(), abs(a.q).bit_length())
    if abs(float(b)) * bits > limits.current().power_bits:
        raise error(node.pos, f"this power is too large to compute (more than {limits.current().power_bits} "
                              f"bits; raise with --limit power_bits=N)")


# An exact irrational constant is kept as an expression (2^(1/2) prints as sqrt(2)), but sympy rebuilds
# and re-inspects the whole tree at each operation: a chain such as 1.0001^1.0001^...^1.0001 (1000
# levels) costs quadratic time.  Past this many nodes the constant is rounded to a float64-exact Float.
MAX_EXACT_NODES = 64


def _bounded_exact(v):
    """``v``, or its value as a Float when it is an irrational constant of more than MAX_EXACT_NODES nodes."""
    if v.is_Atom or v.is_Rational or not v.is_number:
        return v
    stack, seen = [v], 0
    while stack:
        seen += 1
        if seen > MAX_EXACT_NODES:
            return sympy.Float(v.evalf(20), 17)
        stack.extend(stack.pop().args)
    return v


def binop(el, op, a, b, node, ctx):
    if op == "@":
        return _matmul(el, a, b, node, ctx)
    a, b = _list_to_data(a, node), _list_to_data(b, node)
    if isinstance(a, MatT) or isinstance(b, MatT):
        return _matrix_scale(op, a, b, node)
    if isinstance(a, (Num, WidthT)) and isinstance(b, (Num, WidthT)):
        x, y = _bounded_exact(_sym(a)), _bounded_exact(_sym(b))
        if op == "^":
            _check_power(x, y, node)
        v = _finite(_SYMPY_OPS[op](x, y), node)
        return WidthT(v) if v.has(WIDTH) else Num(v)
    if isinstance(a, DataT) or isinstance(b, DataT):
        if all(isinstance(x, (Num, DataT)) for x in (a, b)) or ctx.data_only:
            if not all(isinstance(x, (Num, DataT)) for x in (a, b)):
                raise error(node.pos, f"cannot combine data with {kind_name(a if not isinstance(a, DataT) else b)} here")
            try:
                return data_binop(op, _as_data(a), _as_data(b))
            except ValueError as e:
                raise error(node.pos, str(e)) from None
    if ctx.data_only and not ctx.fn_formals:
        raise error(node.pos, f"only constants and data can be used here, not {kind_name(a)} {op} {kind_name(b)}")
    ea, eb = _program_expr(el, a, node, ctx), _program_expr(el, b, node, ctx)
    if isinstance(a, VecT) and isinstance(b, VecT) and a.dim != b.dim:
        raise error(node.pos, "cannot combine vectors of different widths coordinatewise")
    v = _SYMPY_OPS[op](ea, eb)
    if op in "/^":  # only these can create an infinity from finite operands
        v = _finite(v, node)
    dim = a.dim if isinstance(a, VecT) else b.dim if isinstance(b, VecT) else None
    return VecT(v, dim) if dim is not None else ScalT(v)


def _sym(t):
    return t.v if isinstance(t, Num) else t.e


def _as_data(t):
    return t if isinstance(t, DataT) else DataT(np.array(float(t.v)), ())


def _list_to_data(t, node):
    if isinstance(t, ListT):
        return DataT(list_to_array(t, node), ())
    return t


def list_to_array(t: ListT, node):
    """A (nested) list literal of numbers as a float array."""
    def conv(x):
        if isinstance(x, ListT):
            return [conv(y) for y in x.items]
        if isinstance(x, Num) and x.v.is_real:
            return float(x.v)
        if isinstance(x, DataT) and not x.tags:
            return x.arr.tolist()
        raise error(node.pos, f"a data list may only contain numbers, not {kind_name(x)}")
    try:
        arr = np.array(conv(t), dtype=np.float64)
    except ValueError:
        raise error(node.pos, "the rows of this list have different lengths") from None
    return arr


def _program_expr(el, t, node, ctx):
    if isinstance(t, (VecT, ScalT)):
        return t.e
    if isinstance(t, Num):
        return t.v
    if isinstance(t, (WidthT, DataT)):
        if ctx.fn_formals:
            raise error(node.pos, f"a function body cannot use {kind_name(t)}")
        return el.as_scalar_leaf(t, ctx, node)
    raise error(node.pos, f"cannot use {kind_name(t)} in arithmetic")


def _matrix_scale(op, a, b, node):
    if op == "*" and isinstance(a, MatT) and isinstance(b, (Num, ScalT)):
        a, b = b, a
    if op == "*" and isinstance(b, MatT) and isinstance(a, (Num, ScalT)):
        return MatT(b.value, b.transposed, b.scale * _sym(a))
    if op == "/" and isinstance(a, MatT) and isinstance(b, (Num, ScalT)):
        return MatT(a.value, a.transposed, a.scale / _sym(b))
    raise error(node.pos, "a matrix can only multiply a vector (W @ v), or be scaled by a scalar")


def _matmul(el, a, b, node, ctx):
    if not isinstance(a, MatT):
        hint = "; for an inner product of vectors use mean(x * y)" if isinstance(a, VecT) else ""
        raise error(node.pos, f"the left operand of @ must be a matrix, got {kind_name(a)}{hint}")
    if isinstance(b, MatT):
        raise error(node.pos, "a product of two matrices is not a Tensor Program operation; multiply vectors")
    if not isinstance(b, VecT):
        raise error(node.pos, f"the right operand of @ must be a vector, got {kind_name(b)}")
    if ctx.data_only:
        raise error(node.pos, "@ is not allowed here")
    return el.emit_matmul(a, b, ctx, node.pos)


# ------------------------------------------------------------------ calls

def _call(el, node, ctx):
    special = _SPECIAL.get(node.func)
    if node.func not in _KEYWORDS:
        for a in node.args:
            if isinstance(a, ast.Keyword):
                raise error(a.pos, f"{node.func} takes no keyword arguments ('{a.name} = ...')")
    if special is not None:
        return special(el, node, ctx)
    fn, arity = _resolve_function(el, node)
    if len(node.args) != arity:
        raise error(node.pos, f"{node.func} takes {arity} argument{'s' if arity != 1 else ''}, got {len(node.args)}")
    args = [elaborate(el, a, ctx) for a in node.args]
    return apply_function(el, fn, args, node, ctx)


def _resolve_function(el, node):
    """(callable on sympy args, arity) for a builtin, a user function, or a derivative (primes)."""
    name = node.func
    base = name.rstrip("'")
    order = len(name) - len(base)
    max_order = limits.current().derivative_order
    if order > max_order:
        # symbolic derivatives grow exponentially with the order (tanh with 20 primes took minutes)
        raise error(node.func_pos or node.pos, f"derivative of order {order} of '{base}': at most "
                                               f"{max_order} primes are allowed (raise with --limit "
                                               f"derivative_order=N)")
    if base in el.fns:
        uf = el.fns[base]
        body = uf.body
        if order:
            body = sympy.diff(body, uf.formals[0], order)
        formals = uf.formals
        return (lambda *args: body.xreplace(dict(zip(formals, args)))), len(formals)
    spec = F.builtin(base)
    if spec is None and base in el.poisoned:
        from .scope import _Poisoned
        raise _Poisoned()
    if spec is None:
        if base in el.names or base in el.consts or base in el.data:
            raise error(node.func_pos or node.pos, f"'{base}' is not a function")
        candidates = list(F.BUILTIN_NAMES) + list(el.fns) + list(_SPECIAL)
        raise error(node.func_pos or node.pos, f"unknown function '{name}'" + did_you_mean(base, candidates))
    ctor, arity = spec
    if order:
        return F.derivative(ctor, arity, order), arity
    return ctor, arity


def apply_function(el, fn, args, node, ctx):
    if all(isinstance(a, Num) for a in args):
        return Num(_finite(sympy.sympify(fn(*[a.v for a in args])), node))
    if isinstance(args[0], DataT) and all(isinstance(a, (Num, DataT)) for a in args):
        syms = sympy.symbols(f"d0:{len(args)}", real=True)
        expr = fn(*syms)
        env = {s: (a.arr if isinstance(a, DataT) else float(a.v)) for s, a in zip(syms, args)}
        tagged = [a for a in args if isinstance(a, DataT)]
        if len(tagged) > 1:
            raise error(node.pos, "functions of data take one data argument")
        try:
            with np.errstate(all="ignore"):
                arr = np.asarray(eval_sympy_numpy(expr, env), dtype=np.float64)
        except ValueError as e:
            raise error(node.pos, str(e)) from None
        return DataT(np.broadcast_to(arr, args[0].arr.shape).copy(), args[0].tags)
    if all(isinstance(a, (Num, WidthT)) for a in args):
        return WidthT(_finite(fn(*[_sym(a) for a in args]), node))
    for a in args:
        if isinstance(a, (MatT, ListT)):
            raise error(node.pos, f"{node.func} applies coordinatewise to vectors and scalars, not {kind_name(a)}")
    dims = {a.dim for a in args if isinstance(a, VecT)}
    if len(dims) > 1:
        raise error(node.pos, f"{node.func}: its vector arguments have different widths")
    exprs = [_program_expr(el, a, node, ctx) if not (ctx.fn_formals and isinstance(a, ScalT)) else a.e
             for a in args]
    v = _finite(fn(*exprs), node)
    return VecT(v, dims.pop()) if dims else ScalT(v)


def _mean(el, node, ctx):
    if len(node.args) != 1:
        raise error(node.pos, "mean takes one vector expression")
    if ctx.data_only:
        raise error(node.pos, "mean(...) is not allowed here")
    if ctx.fn_formals:
        raise error(node.pos, "mean(...) cannot be used inside a function definition")
    t = elaborate(el, node.args[0], ctx)
    if not isinstance(t, VecT):
        raise error(node.args[0].pos, f"mean averages a vector over its coordinates; got {kind_name(t)}")
    return ScalT(el.emit_cw(Moment, t.e, ctx, node.pos))


def _data_arg(el, node, ctx, fname):
    t = elaborate(el, node, ctx)
    t = _list_to_data(t, node)
    if isinstance(t, VecT):
        raise error(node.pos, f"{fname} works on data; for vectors use mean(x * y), the inner product / n")
    if not isinstance(t, DataT):
        raise error(node.pos, f"{fname} expects data, got {kind_name(t)}")
    return t


def _dot(el, node, ctx):
    if len(node.args) != 2:
        raise error(node.pos, "dot takes two data vectors: dot(X[i], X[j])")
    a, b = (_data_arg(el, x, ctx, "dot") for x in node.args)
    try:
        return data_dot(a, b)
    except ValueError as e:
        raise error(node.pos, str(e)) from None


def _norm(el, node, ctx):
    if len(node.args) != 1:
        raise error(node.pos, "norm takes one data vector")
    a = _data_arg(el, node.args[0], ctx, "norm")
    try:
        d = data_dot(a, a)
    except ValueError as e:
        raise error(node.pos, str(e)) from None
    return DataT(np.sqrt(d.arr), d.tags)


def _dataset(el, node, ctx, fname):
    if len(node.args) != 1 or not isinstance(node.args[0], ast.Name) or node.args[0].id not in el.data:
        raise error(node.pos, f"{fname} takes the name of a data set: {fname}(X)")
    return el.data[node.args[0].id]


def _len(el, node, ctx):
    return Num(sympy.Integer(_dataset(el, node, ctx, "len").shape[0]))


def _dim(el, node, ctx):
    """The length of the last axis of a point (1 when the points are numbers)."""
    arr = _dataset(el, node, ctx, "dim")
    return Num(sympy.Integer(arr.shape[-1] if arr.ndim > 1 else 1))


def _delta(el, node, ctx):
    """Kronecker delta of two indices (family indices give an identity matrix over the data set)."""
    if len(node.args) != 2:
        raise error(node.pos, "delta takes two indices: delta(i, i')")
    names = []
    for a in node.args:
        if isinstance(a, ast.Name) and (ctx.fvar(a.id.rstrip("'")) is not None):
            names.append(a.id)
        else:
            names.append(el.int_value(a, ctx, "an index of delta"))
    if all(isinstance(x, int) for x in names):
        return Num(sympy.Integer(int(names[0] == names[1])))
    if not all(isinstance(x, str) for x in names):
        raise error(node.pos, "delta compares two family indices or two integers")
    fa, fb = (ctx.fvar(x.rstrip("'")) for x in names)
    if fa.axis is None or fa.axis != fb.axis:
        raise error(node.pos, "delta needs two indices over the same data set")
    if names[0] == names[1]:
        return Num(sympy.S.One)
    return DataT(np.eye(fa.axis.size), tuple(names))


def _items(el, node, ctx, fname):
    if isinstance(node, ast.GenCall):
        return _comprehension(el, node.body, node.loops, ctx)
    if len(node.args) == 1:
        t = elaborate(el, node.args[0], ctx)
        if isinstance(t, ListT):
            return t.items
    return [elaborate(el, a, ctx) for a in node.args]


def _sum(el, node, ctx):
    items = _items(el, node, ctx, "sum")
    if not items:
        return Num(sympy.S.Zero)
    if all(isinstance(t, (ScalT, VecT)) for t in items):
        # One n-ary Add: folding pairwise would re-flatten the sum at every step (quadratic).
        dims = {t.dim for t in items if isinstance(t, VecT)}
        if len(dims) > 1:
            raise error(node.pos, "cannot add vectors of different widths")
        total = sympy.Add(*[t.e for t in items])
        return VecT(total, dims.pop()) if dims else ScalT(total)
    acc = items[0]
    for t in items[1:]:
        acc = binop(el, "+", acc, t, node, ctx)
    return acc


def _softmax(el, node, ctx):
    """softmax of a list of scalars: [exp(s_k) / sum_j exp(s_j)]_k (a list)."""
    items = _items(el, node, ctx, "softmax")
    if not items:
        raise error(node.pos, "softmax of an empty list")
    exps = [apply_function(el, sympy.exp, [t], node, ctx) for t in items]
    if any(isinstance(t, VecT) for t in exps):
        raise error(node.pos, "softmax takes a list of scalars")
    total = exps[0]
    for t in exps[1:]:
        total = binop(el, "+", total, t, node, ctx)
    return ListT([binop(el, "/", t, total, node, ctx) for t in exps])


def _minmax(pick):
    def rule(el, node, ctx):
        items = _items(el, node, ctx, pick.__name__)
        if not items or not all(isinstance(t, Num) for t in items):
            raise error(node.pos, f"{pick.__name__} takes numbers (constants)")
        return Num(pick(*[t.v for t in items]))
    return rule


def _program_transform(name, term):
    """A call the compiler answers by writing instructions (``ntk``, ``grad``, ``gd``): its positional
    arguments are elaborated and handed to ``term(el, node, args, ctx)``; keyword arguments (``gd`` only,
    see _KEYWORDS) as ``keywords = {name: Keyword node}``, elaborated by the term as it needs them."""
    def rule(el, node, ctx):
        if ctx.data_only or ctx.fn_formals:
            raise error(node.pos, f"{name}(...) is not allowed here")
        args = [elaborate(el, a, ctx) for a in node.args if not isinstance(a, ast.Keyword)]
        if name not in _KEYWORDS:
            return term(el, node, args, ctx)
        keywords = {}
        for a in node.args:
            if isinstance(a, ast.Keyword):
                if a.name not in _KEYWORDS[name]:
                    raise error(a.pos, f"{name} has no keyword argument '{a.name}'"
                                       + did_you_mean(a.name, _KEYWORDS[name]))
                if a.name in keywords:
                    raise error(a.pos, f"keyword argument '{a.name}' given twice")
                keywords[a.name] = a
        return term(el, node, args, ctx, keywords)
    return rule


#: The calls that take keyword arguments, and their keywords.
_KEYWORDS = {"gd": ("loss", "batches", "value", "scale")}


def _no_call(msg):
    def rule(el, node, ctx):
        raise error(node.pos, msg)
    return rule


_SPECIAL = {
    "mean": _mean, "dot": _dot, "norm": _norm, "len": _len, "dim": _dim, "delta": _delta, "sum": _sum,
    "softmax": _softmax, "min": _minmax(sympy.Min), "max": _minmax(sympy.Max),
    "ntk": _program_transform("ntk", ntk_term), "grad": _program_transform("grad", grad_term),
    "gd": _program_transform("gd", gd_term),
    "N": _no_call("N(mean, covariance) can only follow '~' in a matrix or vector declaration"),
    "load": _no_call('load("file") is only allowed in a data declaration: data X = load("x.npy")'),
}


def _misplaced_keyword(el, node, ctx):
    raise error(node.pos, f"a keyword argument ('{node.name} = ...') is only allowed in "
                          + ", ".join(f"{k}(...)" for k in _KEYWORDS))


def _gencall(el, node, ctx):
    special = _SPECIAL.get(node.func)
    if node.func not in ("sum", "softmax", "min", "max"):
        raise error(node.pos, f"'{node.func}(... for ...)' is not supported; use sum, softmax, min or max")
    return special(el, node, ctx)


def _comprehension(el, body, loops, ctx):
    bindings = el.loop_bindings(loops, ctx.scope, ctx, family_ok=False)
    items = []
    saved = ctx.scope
    try:
        for b in bindings:
            ctx.scope = saved.child(b)
            items.append(elaborate(el, body, ctx))
    finally:
        ctx.scope = saved
    return items


def _list(el, node, ctx):
    return ListT([elaborate(el, a, ctx) for a in node.items])


def _listcomp(el, node, ctx):
    return ListT(_comprehension(el, node.body, node.loops, ctx))


_RULES = {
    ast.Number: _number, ast.Name: _name, ast.String: _string, ast.BinOp: _binop_node, ast.Neg: _neg,
    ast.Call: _call, ast.GenCall: _gencall, ast.Keyword: _misplaced_keyword, ast.ListLit: _list, ast.ListComp: _listcomp,
    ast.Subscript: _subscript, ast.Transpose: _transpose,
}
