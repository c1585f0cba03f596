"""From a path or program text to a checked :class:`~tensorprog.ir.program.Program`."""
from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path

import sympy

from ..errors import Source, error
from ..ir.checker import check_program
from ..ir.program import Program
from .lowering import Elaborator
from .parser import parse_source


def read_source(path_or_text, name=None) -> tuple[Source, Path]:
    """A Source and the directory data files are loaded from.

    A string containing a newline, or one that is not an existing file and does
    not end in ``.tp``, is program text; otherwise it is a path.
    """
    if isinstance(path_or_text, os.PathLike) or (
            isinstance(path_or_text, str) and "\n" not in path_or_text
            and (path_or_text.endswith(".tp") or os.path.isfile(path_or_text))):
        path = Path(path_or_text)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise error(None, f"no such file: {path}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise error(None, f"cannot read {path}: {e}") from None
        return Source(name or str(path), text), path.parent
    return Source(name or "<string>", str(path_or_text)), Path.cwd()


def parse_define(text: str):
    """``name=value`` from the command line -> (name, sympy number); value a plain number."""
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name.isidentifier():
        raise error(None, f"-D expects name=value, got '{text}'")
    return name, define_value(name, value)


MAX_DEFINE_CHARS = 1000
MAX_DEFINE_EXPONENT = 1000


def _exponent_too_large(text):
    m = re.search(r"[eE]\s*([+-]?\d+)\s*$", text)
    return bool(m) and (len(m.group(1).lstrip("+-")) > 6 or abs(int(m.group(1))) > MAX_DEFINE_EXPONENT)


def define_value(name, value):
    if isinstance(value, (int, float, Fraction)) and not isinstance(value, bool):
        f = Fraction(value)
    else:
        text = str(value).strip()
        # range-check before exact arithmetic: Fraction('1e100000000') builds a 100-million-digit integer
        if len(text) > MAX_DEFINE_CHARS or _exponent_too_large(text):
            raise error(None, f"-D {name}: '{text[:40]}' is out of range (at most {MAX_DEFINE_CHARS} characters "
                              f"and an exponent of magnitude at most {MAX_DEFINE_EXPONENT})")
        try:
            f = Fraction(text)
        except (ValueError, ZeroDivisionError):
            raise error(None, f"-D {name}: '{value}' is not a number") from None
    return sympy.Integer(f.numerator) if f.denominator == 1 else sympy.Rational(f.numerator, f.denominator)


def parse(path_or_text, defines=None, name=None) -> Program:
    """Parse, elaborate and check a .tp program (a path, or the program text).

    ``defines`` overrides consts: ``{"L": 5, "sw2": 1.5}``.  Raises TPError on
    any problem with the program.
    """
    source, base = read_source(path_or_text, name)
    module = parse_source(source)
    defs = {k: define_value(k, v) for k, v in (defines or {}).items()}
    el = Elaborator(source, defs, base)
    outputs = el.run(module)
    prog = Program(source, el.instrs, outputs, consts=el.consts, data=el.data, axes=el.axes, widths=el.widths)
    check_program(prog)
    return prog
