"""Syntax tree of a .tp program: small dataclasses, each with its source position.

The parser builds these from the Lark tree; the elaborator (``lowering.py``)
gives them meaning.  Nothing here knows about types or the IR.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import SourcePos


@dataclass(frozen=True)
class Node:
    pos: SourcePos = field(compare=False, repr=False)


# ---------------------------------------------------------------- expressions

@dataclass(frozen=True)
class Number(Node):
    text: str


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class String(Node):
    value: str


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # one of + - * / @ ^
    left: Node
    right: Node


@dataclass(frozen=True)
class Neg(Node):
    operand: Node


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple
    func_pos: SourcePos = field(compare=False, repr=False, default=None)


@dataclass(frozen=True)
class Keyword(Node):
    """``name = value`` among a call's arguments."""

    name: str
    value: Node


@dataclass(frozen=True)
class GenCall(Node):
    """``f(expr for i in domain, ...)``, e.g. ``sum(exp(s[c]) for c in 0..3)``."""

    func: str
    body: Node
    loops: tuple


@dataclass(frozen=True)
class ListLit(Node):
    items: tuple


@dataclass(frozen=True)
class ListComp(Node):
    body: Node
    loops: tuple


@dataclass(frozen=True)
class Subscript(Node):
    base: Node
    indices: tuple


@dataclass(frozen=True)
class Transpose(Node):
    base: Node


# ---------------------------------------------------------------- loops

@dataclass(frozen=True)
class RangeLoop(Node):
    """``var in lo..hi`` (both ends included), or ``reversed(lo..hi)``: unrolled at compile time."""

    var: str
    lo: Node
    hi: Node
    reverse: bool = False


@dataclass(frozen=True)
class SetLoop(Node):
    """``var in X`` for a data set X: a family index, kept symbolic."""

    var: str
    domain: Node


# ---------------------------------------------------------------- statements

@dataclass(frozen=True)
class Target(Node):
    name: str
    indices: tuple  # expressions, flattened over h[a][b] and h[a, b]


@dataclass(frozen=True)
class ConstDecl(Node):
    bindings: tuple  # of (name, expr, pos)


@dataclass(frozen=True)
class DataDecl(Node):
    name: str
    value: Node


@dataclass(frozen=True)
class WidthDecl(Node):
    name: str
    value: Node


@dataclass(frozen=True)
class FnDecl(Node):
    name: str
    params: tuple
    body: Node


@dataclass(frozen=True)
class MatrixDecl(Node):
    target: Target
    shape: tuple | None  # (rows, cols) expressions
    dist: Node
    loops: tuple


@dataclass(frozen=True)
class VectorDecl(Node):
    targets: tuple
    dim: Node | None
    dist: Node
    loops: tuple


@dataclass(frozen=True)
class ParamDecl(Node):
    """``param(rate = r) matrix ...`` / ``param vector ...``: the declared objects are trained."""
    decl: Node       # the MatrixDecl or VectorDecl
    options: tuple   # of (name, expr, position)


@dataclass(frozen=True)
class ScalarDecl(Node):
    bindings: tuple  # of (Target, expr)
    loops: tuple


@dataclass(frozen=True)
class Assign(Node):
    target: Target
    value: Node
    loops: tuple


@dataclass(frozen=True)
class OutDecl(Node):
    target: Target
    value: Node | None
    loops: tuple


@dataclass(frozen=True)
class ForBlock(Node):
    loops: tuple
    body: tuple


@dataclass(frozen=True)
class Module(Node):
    statements: tuple
