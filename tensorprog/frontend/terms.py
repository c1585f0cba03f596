"""Typed results of elaborating an expression, and arithmetic on compile-time data.

Elaboration turns each expression of the syntax tree into one of:

=========  ====================================================================
``Num``    a compile-time number (sympy, exact where the source was exact)
``WidthT`` a number that depends on the width n, e.g. ``n^(-1/2)`` or ``2/n``
``DataT``  a numpy array of data, whose leading axes are tagged by family indices
``ScalT``  a program scalar: a sympy expression over scalar leaves
``VecT``   a coordinatewise vector expression over vector and scalar leaves
``MatT``   a matrix (possibly transposed, possibly times a scalar)
``ListT``  a compile-time list of terms (for softmax, sums, covariance tables)
=========  ====================================================================

Leaves are sympy symbols standing for values defined by earlier instructions.
"""
from __future__ import annotations

import contextvars
import functools
import string
import weakref
from dataclasses import dataclass

import numpy as np
import sympy

from .. import functions as F
from ..ir import psd
from ..ir.core import WIDTH


@dataclass
class Num:
    v: sympy.Expr


@dataclass
class WidthT:
    e: sympy.Expr


@dataclass
class DataT:
    """``arr.shape == (sizes of tags) + data dims``; tags are family index names (maybe primed)."""

    arr: np.ndarray
    tags: tuple = ()

    @property
    def data_shape(self):
        return self.arr.shape[len(self.tags):]


class LazyDataT(DataT):
    """A large data table whose array is computed on first use of ``arr`` (then kept).

    A formula of data, e.g. sw2 * dot(X[i], X[i']) / dim(X) + sb2, is elaborated into a chain of
    these; the chain is computed when the table is used, into one array: the dot product into a
    fresh array, then each scalar operation in place on it (``_materialize``), instead of a fresh
    N x N array per operation (each costing a pass of page faults). Its shape is known without
    computing it; shape errors and the memory check happen when the node is made."""

    def __init__(self, compute, tags, shape, formula=None, shared=False):   # noqa: D107 (not the dataclass's)
        self._compute, self._arr, self.tags, self._shape = compute, None, tuple(tags), tuple(shape)
        self.formula, self.shared, self.entry, self.tables = formula, shared, None, None

    @property
    def arr(self):
        if self._arr is None:
            self._arr = self._compute(None)
            self._compute = None
            if self.entry is not None:      # the formula's memo entry now finds the array's buffer
                self.entry[3] = weakref.ref(_owner(self._arr))
                self.tables[("formula", id(self._arr))] = (weakref.ref(self._arr), self.formula)
                if len(self.tags) == 2 and self._arr.ndim == 2 and psd.psd_by_construction(self.formula):
                    psd.certify(self._arr)      # the covariance check need not factorise it
        return self._arr

    @property
    def shape(self):
        return self._shape

    @property
    def data_shape(self):
        return self._shape[len(self.tags):]

    def take(self):
        """The array computed into a buffer the caller may write (not kept here), or None once
        ``arr`` was computed (shared: not to be written)."""
        return None if self._compute is None or self.shared else self._compute(None)

    def __reduce__(self):       # pickles as the plain table
        return DataT, (self.arr, self.tags)


def _owner(arr):
    """The array that owns ``arr``'s memory (``arr`` itself if it owns it): what a view keeps alive."""
    while isinstance(arr.base, np.ndarray):
        arr = arr.base
    return arr


def _shape(x: DataT):
    return x.shape if isinstance(x, LazyDataT) else x.arr.shape


@dataclass
class ScalT:
    e: sympy.Expr


@dataclass
class VecT:
    e: sympy.Expr
    dim: sympy.Expr


@dataclass
class MatT:
    value: object
    transposed: bool = False
    scale: sympy.Expr = sympy.S.One


@dataclass
class ListT:
    items: list


KIND_NAMES = {Num: "a number", WidthT: "a width-dependent number", DataT: "data", ScalT: "a scalar",
              VecT: "a vector", MatT: "a matrix", ListT: "a list"}


def kind_name(t) -> str:
    return KIND_NAMES.get(type(t), type(t).__name__)


# ------------------------------------------------------------------ data arithmetic

def align(a: DataT, b: DataT):
    """Broadcast two tagged arrays against each other: (A, B, union of tags)."""
    tags = tuple(a.tags) + tuple(t for t in b.tags if t not in a.tags)
    return _expand(a, tags, b), _expand(b, tags, a), tags


def _expand(x: DataT, tags, other: DataT):
    sizes = {}
    for t, s in zip(x.tags, x.arr.shape):
        sizes[t] = s
    # Move x's tagged axes into the union order, inserting length-1 axes for missing tags.
    order = [x.tags.index(t) for t in tags if t in x.tags]
    rest = list(range(len(x.tags), x.arr.ndim))
    arr = np.transpose(x.arr, order + rest)
    shape = []
    for t in tags:
        shape.append(sizes[t] if t in sizes else 1)
    data_shape = x.arr.shape[len(x.tags):]
    pad = max(0, len(other.data_shape) - len(data_shape))
    return arr.reshape(tuple(shape) + (1,) * pad + tuple(data_shape))


def _expanded_shape(x: DataT, tags, other: DataT):
    """The shape of ``_expand(x, tags, other)``, without x's array."""
    shape = _shape(x)
    sizes = dict(zip(x.tags, shape))
    data_shape = shape[len(x.tags):]
    pad = max(0, len(other.data_shape) - len(data_shape))
    return tuple(sizes.get(t, 1) for t in tags) + (1,) * pad + tuple(data_shape)


def _room_for(shape, what):
    """Refuse (ValueError, which the caller reports at the expression) before allocating a data
    array of ``shape`` (float64) when it and the work that follows (at least one more array like
    it) would not fit in the memory available now."""
    from ..memory import available_memory, gib

    nbytes = 8 * int(np.prod(shape, dtype=np.float64))
    if nbytes < 1 << 26:     # only large arrays are worth a look at /proc/meminfo
        return
    free = available_memory()
    if free is not None and 2 * nbytes > free:
        raise ValueError(f"{what} of shape {' x '.join(map(str, shape))} needs about {gib(2 * nbytes)} of memory "
                         f"(it and one more like it), but only {gib(free)} is available")


# Data tables computed during one parse, by formula (load.py sets a fresh dict per parse): a program
# that writes the same formula of its data twice, e.g. a covariance sw2 * dot(X[i], X[i']) / dim(X)
# + sb2 and the same term of an NTK output over (i, j), computes the N x N table once and holds it
# once. A table's key is its formula: the operation, its operands' keys (a table made here: its own
# key; a small array: its value; any other: its identity) and their tags by position only (i, i'
# and i, j give the same array). Entries hold weak references only, so intermediate tables are
# freed as before; a hit is used only while its array, and every operand keyed by identity, is the
# same live object. Data arrays are never written in place.
TABLES: contextvars.ContextVar = contextvars.ContextVar("tensorprog_data_tables", default=None)
_MEMO_MIN_SIZE = 1 << 12
_STRONG_BYTES = 1 << 24


def _operand_key(x: DataT, alive: list, tables):
    if isinstance(x, LazyDataT) and x.formula is not None:
        return x.formula
    arr = x.arr
    if arr.size < 64:
        return "v", arr.dtype.str, arr.shape, arr.tobytes()
    made = tables.get(("formula", id(arr)))     # a table made here: (weak reference, its formula)
    if made is not None and made[0]() is arr:
        return made[1]
    # Any other operand by its memory and layout (X[i] and X[j] are two views of X's buffer), valid
    # while the entry holds the operand: strongly when small (data points), weakly when large.
    alive.append((lambda a=arr: a) if arr.nbytes <= _STRONG_BYTES else weakref.ref(arr))
    return "id", arr.__array_interface__["data"][0], arr.strides, arr.shape, arr.dtype.str


def _memoized(op, a, b, compute):
    """``compute()`` (a DataT, maybe lazy), or the table the same formula already gave in this parse
    (with this call's tag names). An entry is [weak reference to the node, tag layout, operands
    held, weak reference to the array once computed]."""
    tables = TABLES.get()
    if tables is None:
        return compute()
    names, alive = {}, []
    for t in tuple(a.tags) + tuple(b.tags):
        names.setdefault(t, len(names))
    key = (op, _operand_key(a, alive, tables), tuple(names[t] for t in a.tags),
           _operand_key(b, alive, tables), tuple(names[t] for t in b.tags))
    both = tuple(a.tags) + tuple(b.tags)
    hit = tables.get(key)
    if hit is not None and all(r() is not None for r in hit[2]):
        node = hit[0]() if hit[0] is not None else None
        arr = hit[3]() if hit[3] is not None else None
        tags = tuple(both[k] for k in hit[1])
        if arr is not None and arr.size == int(np.prod(hit[4], dtype=np.int64)) and arr.flags.c_contiguous:
            return DataT(arr.reshape(hit[4]), tags)
        if node is not None:     # not computed yet: computed once, on first use by either, and shared
            return LazyDataT(lambda out: node.arr, tags, node.shape, key, shared=True)
    r = compute()
    pos = {t: k for k, t in enumerate(both)}
    layout = tuple(pos[t] for t in r.tags)
    if isinstance(r, LazyDataT):
        r.formula = key
        r.entry = tables[key] = [weakref.ref(r), layout, alive, None, r.shape]
        r.tables = tables
    elif r.arr.size >= _MEMO_MIN_SIZE and not isinstance(r.arr, np.generic):
        tables[key] = [None, layout, alive, weakref.ref(_owner(r.arr)), r.arr.shape]
        tables[("formula", id(r.arr))] = (weakref.ref(r.arr), key)
    return r


#: Tables of at least this many entries are computed lazily (LazyDataT).
LAZY_MIN_SIZE = 1 << 18

_UFUNCS = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power}


def data_binop(op: str, a: DataT, b: DataT) -> DataT:
    tags = tuple(a.tags) + tuple(t for t in b.tags if t not in a.tags)
    shape = np.broadcast_shapes(_expanded_shape(a, tags, b), _expanded_shape(b, tags, a))  # ValueError: now
    if TABLES.get() is None or int(np.prod(shape, dtype=np.float64)) < LAZY_MIN_SIZE:
        return _memoized(op, a, b, lambda: _data_binop(op, a, b))
    _room_for(shape, "a data array")
    return _memoized(op, a, b, lambda: LazyDataT(lambda out: _materialize(op, a, b, tags, shape), tags, shape))


def _materialize(op, a, b, tags, shape):
    """op(a, b) over ``shape``: in place on the buffer of a lazy operand that already has the
    result's layout (it is not shared: ``take``), else into a fresh array."""
    with np.errstate(all="ignore"):
        for k, x in enumerate((a, b)):
            if isinstance(x, LazyDataT) and tuple(x.tags) == tags and x.shape == shape:
                buf = x.take()
                if buf is None or buf.dtype != np.float64 or not buf.flags.c_contiguous or buf.shape != shape:
                    continue
                other = _expand(b if k == 0 else a, tags, x)
                args = (buf, other) if k == 0 else (other, buf)
                return _UFUNCS[op](*args, out=buf)
        return _data_binop(op, a, b).arr


def _data_binop(op: str, a: DataT, b: DataT) -> DataT:
    A, B, tags = align(a, b)
    _room_for(np.broadcast_shapes(A.shape, B.shape), "a data array")
    with np.errstate(all="ignore"):
        if op == "+":
            r = A + B
        elif op == "-":
            r = A - B
        elif op == "*":
            r = A * B
        elif op == "/":
            r = A / B
        elif op == "^":
            r = np.power(A, B)
        else:  # pragma: no cover - callers only pass the ops above
            raise ValueError(op)
    return DataT(np.asarray(r, dtype=np.float64), tags)


def data_dot(a: DataT, b: DataT) -> DataT:
    """<a, b> over the last data axis; an outer product over disjoint family tags uses BLAS."""
    if (TABLES.get() is None or set(a.tags) & set(b.tags) or len(a.data_shape) != 1
            or a.data_shape != b.data_shape):
        return _memoized("dot", a, b, lambda: _data_dot(a, b))
    shape = tuple(_shape(a)[:-1]) + tuple(_shape(b)[:-1])
    if int(np.prod(shape, dtype=np.float64)) < LAZY_MIN_SIZE:
        return _memoized("dot", a, b, lambda: _data_dot(a, b))
    _room_for(shape, "the table of dot products")
    return _memoized("dot", a, b, lambda: LazyDataT(lambda out: _data_dot(a, b).arr, tuple(a.tags) + tuple(b.tags),
                                                    shape))


def _data_dot(a: DataT, b: DataT) -> DataT:
    if a.data_shape[-1:] != b.data_shape[-1:] or len(a.data_shape) != 1 or len(b.data_shape) != 1:
        raise ValueError(f"dot needs two data vectors of the same length, got shapes "
                         f"{a.data_shape} and {b.data_shape}")
    if not set(a.tags) & set(b.tags):
        d = a.data_shape[0]
        _room_for(a.arr.shape[:-1] + b.arr.shape[:-1], "the table of dot products")
        A = a.arr.reshape(-1, d)
        B = b.arr.reshape(-1, d)
        r = (A @ B.T).reshape(a.arr.shape[:-1] + b.arr.shape[:-1])
        return DataT(r, tuple(a.tags) + tuple(b.tags))
    A, B, tags = align(a, b)
    _room_for(np.broadcast_shapes(A.shape, B.shape)[:-1], "the table of dot products")
    letters = string.ascii_letters[: len(tags)]
    r = np.einsum(f"{letters}z,{letters}z->{letters}", *np.broadcast_arrays(A, B))
    return DataT(r, tags)


# user name -> numpy implementation on data arguments (a view of tensorprog.nonlinearities).
_NUMPY_FUNCS = F.DATA_NUMPY_IMPL


def numpy_function(name):
    """The numpy implementation of a builtin for data arguments, or None."""
    return _NUMPY_FUNCS.get(name) or F.NUMPY_IMPL.get(name)


def eval_sympy_numpy(expr: sympy.Expr, env: dict):
    """Evaluate a sympy expression tree with numpy, symbols looked up in ``env``.

    A small interpreter (no code generation): used for user functions applied
    to data, where expressions are tiny.
    """
    if expr in env:
        return env[expr]
    if expr.is_Number or expr.is_NumberSymbol:
        return float(expr)
    args = [eval_sympy_numpy(a, env) for a in expr.args]
    if expr.is_Add:
        return sum(args[1:], args[0])
    if expr.is_Mul:
        out = args[0]
        for a in args[1:]:
            out = out * a
        return out
    if expr.is_Pow:
        return np.power(args[0], args[1])
    name = type(expr).__name__
    fn = {"Abs": np.abs}.get(name) or numpy_function(name)
    if fn is None:
        raise ValueError(f"cannot evaluate {name} on data")
    return fn(*args)


@functools.lru_cache(maxsize=256)
def width_limit(e: sympy.Expr):
    """lim_{n -> oo} e(n) of a width-dependent number, or None when it does not exist or sympy cannot tell.

    A monomial c n^k (the common case: 2/n, n^(-1/2)) is decided directly; anything else
    goes to ``sympy.limit``.
    """
    if not e.has(WIDTH):
        return e
    c, k = e.as_coeff_exponent(WIDTH)
    if not c.has(WIDTH) and k.is_number and c.is_number:
        if c == 0 or k < 0:
            return sympy.S.Zero
        return c if k == 0 else sympy.oo * sympy.sign(c)
    try:
        lim = sympy.limit(e, WIDTH, sympy.oo)
    except (NotImplementedError, ValueError, TypeError, ZeroDivisionError):
        return None
    return lim if lim.is_extended_real and not isinstance(lim, sympy.AccumBounds) else None
