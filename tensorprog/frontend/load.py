"""From a path or program text to a checked :class:`~tensorprog.ir.program.Program`."""
from __future__ import annotations

import contextvars
import os
import sys
import threading
import re
from fractions import Fraction
from pathlib import Path

import sympy

from ..errors import Source, SourcePos, error, whole_file
from ..ir.checker import check_program
from ..ir.program import Program
from . import limits as _limits
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
            data = _limits.read_bounded(path, _limits.current().source_bytes, "source_bytes", what="read")
            text = data.decode("utf-8-sig")     # a byte-order mark some editors write is not program text
        except FileNotFoundError:
            raise error(None, f"no such file: {path}") from None
        except UnicodeDecodeError as e:
            raise error(None, f"cannot read {path}: not UTF-8 text (byte {e.start})") from None
        except OSError as e:
            raise error(None, f"cannot read {path}: {e}") from None
        return _check_size(Source(name or str(path), text)), path.parent
    return _check_size(Source(name or "<string>", str(path_or_text))), Path.cwd()


def _check_size(source: Source) -> Source:
    """Refuse program text beyond the source_bytes / source_lines limits (parse time grows with it)."""
    lim = _limits.current()
    if len(source.text) > lim.source_bytes:
        raise error(None, f"{source.name}: the program text has {len(source.text)} characters, more than the "
                          f"limit of {lim.source_bytes} (raise with --limit source_bytes=N)")
    lines = source.text.count("\n") + (not source.text.endswith("\n"))
    if lines > lim.source_lines:
        raise error(None, f"{source.name}: the program has {lines} lines, more than the limit of "
                          f"{lim.source_lines} (raise with --limit source_lines=N)")
    return source


def parse_define(text: str):
    """``name=value`` from the command line -> (name, sympy number); value a plain number."""
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name.isidentifier():
        raise error(None, f"-D expects name=value, got '{text}'")
    return name, define_value(name, value)


MAX_DEFINE_CHARS = _limits.DEFAULT.define_chars          # defaults; see _limits.Limits
MAX_DEFINE_EXPONENT = _limits.DEFAULT.define_exponent


def _exponent_too_large(text):
    m = re.search(r"[eE]\s*([+-]?\d+)\s*$", text)
    return bool(m) and (len(m.group(1).lstrip("+-")) > 6
                        or abs(int(m.group(1))) > _limits.current().define_exponent)


def define_value(name, value):
    if isinstance(value, (int, float, Fraction)) and not isinstance(value, bool):
        f = Fraction(value)
    else:
        text = str(value).strip()
        # range-check before exact arithmetic: Fraction('1e100000000') builds a 100-million-digit integer
        lim = _limits.current()
        if len(text) > lim.define_chars or _exponent_too_large(text):
            raise error(None, f"-D {name}: '{text[:40]}' is out of range (at most {lim.define_chars} characters "
                              f"and an exponent of magnitude at most {lim.define_exponent})")
        try:
            f = Fraction(text)
        except (ValueError, ZeroDivisionError):
            raise error(None, f"-D {name}: '{value}' is not a number") from None
    return sympy.Integer(f.numerator) if f.denominator == 1 else sympy.Rational(f.numerator, f.denominator)


def parse(path_or_text, defines=None, name=None, limits=None, width_dependent=False, coord_check=False) -> Program:
    """Parse, elaborate and check a .tp program (a path, or the program text).

    ``defines`` overrides consts: ``{"L": 5, "sw2": 1.5}``.  ``limits`` raises front-end limits:
    ``{"unroll": 500_000}`` (see :class:`tensorprog.frontend.limits.Limits`).  ``width_dependent``:
    scalars may grow with the width n (``sqrt(n) * mean(...)``, gd's ``scale = n^a``, rates c n^a):
    the program is for finite widths and ``tpc scaling``, it has no limit.  ``coord_check`` (implies
    width_dependent) adds the outputs of the empirical coordinate check (train.coord_check_outputs).
    Raises TPError on any problem with the program.
    """
    with _limits.using(limits):
        return _parse(path_or_text, defines, name, width_dependent or coord_check, coord_check)


def _parse(path_or_text, defines, name, width_dependent=False, coord_check=False):
    source, base = read_source(path_or_text, name)
    defs = {k: define_value(k, v) for k, v in (defines or {}).items()}

    def work():
        # One BLAS thread for the front end's data tables and covariance checks: their products are
        # thin (N x d, N x r), and BLAS threads spinning against a busy machine's other processes
        # made a 2000-point check take seconds instead of milliseconds.
        from threadpoolctl import threadpool_limits

        from .terms import TABLES

        with threadpool_limits(1, user_api="blas"):
            token = TABLES.set({})
            try:
                return elaborate_and_check()
            finally:
                TABLES.reset(token)

    def elaborate_and_check():
        module = parse_source(source)
        el = Elaborator(source, defs, base, width_dependent=width_dependent)
        outputs = el.run(module)
        if coord_check:
            from .train import coord_check_outputs
            outputs = list(outputs) + coord_check_outputs(el)
        prog = Program(source, el.instrs, outputs, consts=el.consts, data=el.data, axes=el.axes, widths=el.widths,
                       training_steps=max((len(t.envs) - 1 for t in el.trainings.values()), default=0),
                       trainings=[t.spec() for t in el.trainings.values()], width_dependent=width_dependent)
        check_program(prog)
        return prog
    return _with_deep_stack(work, source)


# The parse tree, its transformer and the elaborator's expression walk recurse once per nesting level
# (a sum of k terms nests k deep).  Rather than refuse legitimately long sums at Python's default
# budget of 1000 frames, the front end runs in a thread with a large stack and a raised, bounded budget;
# past it the program is refused with a clear error instead of an internal RecursionError.
MAX_NESTING_FRAMES = _limits.DEFAULT.nesting     # the default; raised with --limit nesting=N
_STACK_BYTES_PER_FRAME = 9 * 2**10              # 512 MiB for the default 60,000 frames, measured with margin


def _with_deep_stack(work, source):
    result, failure = [], []
    frames = _limits.current().nesting

    def run():
        try:
            result.append(work())
        except RecursionError:
            failure.append(error(_deepest_point(source), f"the program is nested too deeply for the front end "
                                 f"(expressions, brackets or calls nested beyond its budget of "
                                 f"{frames} levels of recursion; the deepest point is here); split long "
                                 f"expressions into named steps, or raise with --limit nesting=N"))
        except BaseException as e:      # re-raised in the caller's thread, unchanged
            failure.append(e)

    context = contextvars.copy_context()     # the limits in force travel with the thread
    with _DEEP_LOCK:
        old_limit = sys.getrecursionlimit()
        try:
            sys.setrecursionlimit(max(old_limit, frames))
            _frontend_thread(max(512 * 2**20, frames * _STACK_BYTES_PER_FRAME)).call(context.run, run)
        finally:
            sys.setrecursionlimit(old_limit)
    if failure:
        raise failure[0]
    return result[0]


class _DeepThread:
    """One long-lived thread with a large stack that runs the front end's work, one call at a time.

    Kept for the process rather than started per parse: the memory a thread's first calls set up
    for it (its malloc arena, the BLAS library's per-thread buffers of the covariance checks, tens
    of MiB) is then paid once, not again by every parse (the memory model, tensorprog/memory.py,
    counts it in the interpreter's baseline)."""

    def __init__(self, stack_bytes):
        import queue

        self.stack_bytes = stack_bytes
        self.jobs = queue.SimpleQueue()
        old = threading.stack_size()
        try:
            threading.stack_size(stack_bytes)
            self.thread = threading.Thread(target=self._serve, name="tensorprog-frontend", daemon=True)
            self.thread.start()
        finally:
            threading.stack_size(old)

    def _serve(self):
        while True:
            fn, args, done = self.jobs.get()
            try:
                fn(*args)
            finally:
                done.set()

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the thread and wait (``fn`` catches its own exceptions)."""
        done = threading.Event()
        self.jobs.put((fn, args, done))
        done.wait()


_THREADS = {}


def _frontend_thread(stack_bytes):
    """The front-end thread for a stack of ``stack_bytes`` (a raised nesting limit gets its own)."""
    t = _THREADS.get(stack_bytes)
    if t is None or not t.thread.is_alive():
        t = _THREADS[stack_bytes] = _DeepThread(stack_bytes)
    return t


_DEEP_LOCK = threading.Lock()


def _deepest_point(source: Source):
    """Where a program nests deepest: the innermost bracket if brackets nest 100 deep or more, else the
    first operator of the line with the most operators (a sum of k terms nests k deep)."""
    depth, best, best_pos = 0, 0, None
    ops_best, ops_pos = 0, None
    for lineno, line in enumerate(source.text.split("\n"), 1):
        code = line.split("#", 1)[0]
        ops, first_op = 0, None
        for col, ch in enumerate(code, 1):
            if ch in "([":
                depth += 1
                if depth > best:
                    best, best_pos = depth, (lineno, col)
            elif ch in ")]":
                depth = max(depth - 1, 0)
            elif ch in "+-*/^":
                ops += 1
                first_op = first_op or col
        if ops > ops_best:
            ops_best, ops_pos = ops, (lineno, first_op)
    where = best_pos if best >= 100 or ops_pos is None else ops_pos
    if where is None:
        return whole_file(source)
    return SourcePos(source, where[0], where[1])
