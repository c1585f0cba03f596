"""Readable names for values: a user's name, or the expression that defines a temporary.

Temporaries (``%7``) are named by the instruction that defines them, e.g.
``W[2]@relu(g[1])``, so that listings and derivations can be read without the IR.
"""
from __future__ import annotations

from ..ops.registry import DESCRIBE
from .core import Arg

MAX_LEN = 48


def describe(value, defining: dict, max_len: int = MAX_LEN) -> str:
    """The display name of ``value`` (``defining`` maps value id -> instruction)."""
    if not value.name.startswith("%"):
        return value.name
    text = _expr_text(value, defining, depth=3)
    return text if len(text) <= max_len else value.name


_LETTERS = "ijklmpqrstuvw"


def _arg_text(arg: Arg, defining, depth, show_index):
    """``h[2](j)``: the argument's name with its member index (a letter per family axis, or a number)."""
    base = _expr_text(arg.value, defining, depth - 1) if arg.value.name.startswith("%") else arg.value.name
    if arg.index and (show_index or any(isinstance(t, int) or t.p != k for k, t in enumerate(arg.index))):
        base += "(" + ",".join(str(t) if isinstance(t, int) else _LETTERS[t.p] for t in arg.index) + ")"
    return base


def _expr_text(value, defining, depth):
    ins = defining.get(value.id)
    if ins is None or depth <= 0:
        return value.name
    show = len(value.axes) > 1  # with several axes, say which argument runs over which
    text = DESCRIBE.rule(ins)(ins, lambda arg, show_index: _arg_text(arg, defining, depth, show_index), show)
    return value.name if text is None else text


def _is_simple(text):
    depth = 0
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0 and ch in "+-*/ ":
            return False
    return True
