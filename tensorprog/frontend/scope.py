"""The elaborator's bookkeeping: loop scopes, family indices, name tables, and small helpers."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from fractions import Fraction

import sympy

from ..ir.core import Axis, Kind, Value
from . import ast
from .limits import DEFAULT as DEFAULT_LIMITS
from .terms import Num, kind_name

RESERVED = {"n", "pi", "mean", "dot", "norm", "dim", "len", "sum", "softmax", "N", "load", "delta",
            "min", "max", "ntk", "grad", "gd"}


# Loops are unrolled at compile time; a bound this large is a mistake, not a network (the default of
# limits.Limits.unroll, raised per call with parse(..., limits={'unroll': ...}) or tpc --limit).
MAX_UNROLL = DEFAULT_LIMITS.unroll


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
class ParamInfo:
    """A trained parameter: an initial matrix or a member of a Gaussian block declared with ``param``;
    ``rate``: its learning rate per standard coordinate (a number or an expression in n)."""

    value: Value
    rate: sympy.Expr
    pos: object


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
