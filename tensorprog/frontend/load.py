"""From a path or program text to a checked :class:`~tensorprog.ir.program.Program`."""
from __future__ import annotations

import os
import sys
import threading
import re
from fractions import Fraction
from pathlib import Path

import sympy

from ..errors import Source, error, whole_file
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
    defs = {k: define_value(k, v) for k, v in (defines or {}).items()}

    def work():
        module = parse_source(source)
        el = Elaborator(source, defs, base)
        outputs = el.run(module)
        prog = Program(source, el.instrs, outputs, consts=el.consts, data=el.data, axes=el.axes, widths=el.widths)
        check_program(prog)
        return prog
    return _with_deep_stack(work, source)


# The parse tree, its transformer and the elaborator's expression walk recurse once per nesting level
# (a sum of k terms nests k deep).  Rather than refuse legitimately long sums at Python's default
# budget of 1000 frames, the front end runs in a thread with a large stack and a raised, bounded budget;
# past it the program is refused with a clear error instead of an internal RecursionError.
MAX_NESTING_FRAMES = 60_000
_STACK_BYTES = 512 * 2**20


def _with_deep_stack(work, source):
    result, failure = [], []

    def run():
        try:
            result.append(work())
        except RecursionError:
            failure.append(error(whole_file(source), f"the program is nested too deeply for the front end "
                                 f"(expressions, brackets or calls nested beyond its budget of "
                                 f"{MAX_NESTING_FRAMES} levels of recursion); split long expressions "
                                 f"into named steps"))
        except BaseException as e:      # re-raised in the caller's thread, unchanged
            failure.append(e)

    with _DEEP_LOCK:
        old_limit, old_stack = sys.getrecursionlimit(), threading.stack_size()
        try:
            threading.stack_size(_STACK_BYTES)
            sys.setrecursionlimit(max(old_limit, MAX_NESTING_FRAMES))
            t = threading.Thread(target=run, name="tensorprog-frontend")
            t.start()
            t.join()
        finally:
            threading.stack_size(old_stack)
            sys.setrecursionlimit(old_limit)
    if failure:
        raise failure[0]
    return result[0]


_DEEP_LOCK = threading.Lock()
