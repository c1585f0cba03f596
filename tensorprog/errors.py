"""Source positions, diagnostics and the one exception type users see.

Every error about a program is a :class:`Diagnostic` at a :class:`SourcePos`;
they are collected (as many as possible per run) and raised together as a
:class:`TPError`, whose ``str`` is the compiler-style report::

    prog.tp:3:9: error: unknown function 'reul' (did you mean 'relu'?)
        h = reul(x)
            ^~~~
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Source:
    """A program text and the name it is reported under (a path, or ``<string>``)."""

    name: str
    text: str

    @functools.cached_property
    def lines(self) -> list[str]:
        # split once: splitting per lookup made elaboration quadratic in the program's length
        return self.text.splitlines()

    def line(self, lineno: int) -> str:
        lines = self.lines
        return lines[lineno - 1] if 1 <= lineno <= len(lines) else ""


@dataclass(frozen=True)
class SourcePos:
    """A 1-based line and column in a source, with an optional end column on the same line."""

    source: Source = field(compare=False, repr=False)
    line: int
    col: int
    end_col: int | None = None

    def __str__(self) -> str:
        if self.line == 0:
            return self.source.name
        return f"{self.source.name}:{self.line}:{self.col}"


def whole_file(source: Source) -> SourcePos:
    """The position of a diagnostic about the whole program (reported as ``file: error: ...``)."""
    return SourcePos(source, 0, 0)


@dataclass(frozen=True)
class Diagnostic:
    pos: SourcePos | None
    message: str
    severity: str = "error"

    def format(self) -> str:
        if self.pos is None:
            return f"{self.severity}: {self.message}"
        head = f"{self.pos}: {self.severity}: {self.message}"
        text = self.pos.source.line(self.pos.line) if self.pos.line else ""
        if not text:
            return head
        col = max(self.pos.col, 1)
        width = 1
        if self.pos.end_col and self.pos.end_col > col:
            width = self.pos.end_col - col
        width = max(1, min(width, len(text) - col + 1))
        caret = " " * (col - 1) + "^" + "~" * (width - 1)
        return f"{head}\n    {text.expandtabs(1)}\n    {caret}"


class TPError(Exception):
    """Raised for any problem in a user's program; carries one or more diagnostics."""

    def __init__(self, diagnostics):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__(self.report())

    def report(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)

    @property
    def messages(self) -> list[str]:
        return [d.message for d in self.diagnostics]


def error(pos: SourcePos | None, message: str) -> TPError:
    """A one-diagnostic TPError (``raise error(pos, "...")``)."""
    return TPError(Diagnostic(pos, message))


class Diagnostics:
    """Collects diagnostics across a pass so that one run reports as many errors as it can."""

    def __init__(self):
        self.items: list[Diagnostic] = []

    def add(self, pos, message, severity="error"):
        self.items.append(Diagnostic(pos, message, severity))

    def extend(self, err: TPError):
        self.items.extend(err.diagnostics)

    @property
    def errors(self):
        return [d for d in self.items if d.severity == "error"]

    def raise_if_errors(self):
        errs = self.errors
        if errs:
            raise TPError(sorted(errs, key=_position_key))


def _position_key(d: Diagnostic):
    return (0, d.pos.line, d.pos.col) if d.pos and d.pos.line else (1, 0, 0)


def did_you_mean(name: str, candidates) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.7)
    return f" (did you mean '{close[0]}'?)" if close else ""
