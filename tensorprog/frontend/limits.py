"""The front end's resource limits: one record, overridable per call (``parse(..., limits=...)``)
and from the command line (``tpc eval prog.tp --limit unroll=500000``).

Each limit turns a hostile or accidentally huge input (a loop of 10^7 iterations, a 100,000-line
program, a 1 GB data file, tanh with 20 primes) into a clear error naming the number and the limit,
instead of a hang, an exhausted memory or an internal error.  The defaults keep every such input
under about 10 s and 1 GiB; a researcher who needs more raises the one that stops them.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from dataclasses import dataclass

from ..errors import error


@dataclass(frozen=True)
class Limits:
    """Front-end limits (all positive integers)."""

    #: unrolled loop iterations in total over the program (nested loops count as the product)
    unroll: int = 100_000
    #: recursion budget of the parser/elaborator (a sum of k terms nests k deep)
    nesting: int = 60_000
    #: primes after a function name
    derivative_order: int = 12
    #: bits of an exact power base^exponent computed while folding constants
    power_bits: int = 100_000
    #: bytes of one data file read by ``load``
    data_bytes: int = 64 * 2**20
    #: bytes of the program text
    source_bytes: int = 4 * 2**20
    #: lines of the program text
    source_lines: int = 20_000
    #: characters of a ``-D`` value
    define_chars: int = 1000
    #: magnitude of a ``-D`` value's decimal exponent
    define_exponent: int = 1000

    def replace(self, **changes) -> "Limits":
        """A copy with some limits changed; unknown names and non-positive values are a TPError."""
        names = {f.name for f in dataclasses.fields(self)}
        for k, v in changes.items():
            if k not in names:
                raise error(None, f"unknown limit '{k}' (limits: {', '.join(sorted(names))})")
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise error(None, f"limit {k} must be a positive integer, got {v!r}")
        return dataclasses.replace(self, **changes)


DEFAULT = Limits()
_CURRENT: contextvars.ContextVar[Limits] = contextvars.ContextVar("tensorprog_limits", default=DEFAULT)


def current() -> Limits:
    """The limits in force for the parse running in this context."""
    return _CURRENT.get()


@contextlib.contextmanager
def using(limits):
    """Run a block under ``limits``: a Limits, a dict of overrides of the defaults, or None."""
    if limits is None:
        limits = current()
    elif isinstance(limits, dict):
        limits = DEFAULT.replace(**limits)
    elif not isinstance(limits, Limits):
        raise TypeError("limits must be a tensorprog Limits or a dict of overrides")
    token = _CURRENT.set(limits)
    try:
        yield limits
    finally:
        _CURRENT.reset(token)


def parse_limit(text: str) -> tuple[str, int]:
    """``name=value`` from the command line (``--limit unroll=500000``; ``1e6`` and ``2_000`` accepted)."""
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip().replace("_", "")
    try:
        number = float(value) if sep else None
    except ValueError:
        number = None
    if number is None or not (1 <= number <= 2**62) or number != int(number):
        raise error(None, f"--limit expects name=positive integer, got '{text[:60]}'")
    DEFAULT.replace(**{name: int(number)})     # validates the name
    return name, int(number)


def read_bounded(path, max_bytes: int, limit_name: str, pos=None, what="load") -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them, else a TPError at ``pos``.

    Opened non-blocking and checked on the open descriptor: a FIFO would block in open() and a device
    such as /dev/zero never ends, so only regular files are read, and never more than the limit.
    """
    import os
    import stat

    shown = path.name or str(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))     # OSError to the caller
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(pos, f"cannot {what} {shown}: not a regular file (FIFOs, devices and directories "
                             f"are refused)")
        hint = f"(raise with --limit {limit_name}=N)"
        if st.st_size > max_bytes:
            raise error(pos, f"cannot {what} {shown}: {st.st_size} bytes is more than the limit of "
                             f"{max_bytes} bytes {hint}")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:     # grew while being read
            raise error(pos, f"cannot {what} {shown}: more than the limit of {max_bytes} bytes {hint}")
        return data
    finally:
        os.close(fd)
