"""Parse .tp text into the syntax tree of ``ast.py``.

The grammar lives in ``grammar/tp.lark`` (installed as ``tensorprog.grammar``);
it is compiled once per process into an LALR parser.  Syntax errors are
reported with a friendly description of what was expected; after an error the
parser resumes at the next top-level line, so one run reports every broken
statement rather than only the first.
"""
from __future__ import annotations

import functools
import unicodedata
from importlib import resources
from pathlib import Path

from lark import Lark, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.indenter import DedentError, Indenter

from ..errors import Diagnostics, Source, SourcePos, TPError
from . import ast

__all__ = ["parse_source", "grammar_text"]


class TPIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8


def grammar_text() -> str:
    """The text of the grammar file: the installed ``tensorprog.grammar``, or a checkout's ``grammar/``.

    The fallback serves a source tree that shadows the installed package (``python -m pytest``
    run in a checkout puts it first on ``sys.path``); an installed package never uses it, as
    site-packages has no ``grammar/`` next to ``tensorprog/``.
    """
    try:
        grammar = resources.files("tensorprog.grammar")
    except ModuleNotFoundError:
        grammar = Path(__file__).resolve().parents[2] / "grammar"
    return grammar.joinpath("tp.lark").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(grammar_text(), parser="lalr", postlex=TPIndenter(), propagate_positions=True,
                maybe_placeholders=True)


# Terminal names -> how an error message should describe them.
_FRIENDLY = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "_NL": "end of line",
    "_INDENT": "an indented block", "_DEDENT": "end of block", "$END": "end of file",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','", "COLON": "':'",
    "EQUAL": "'='", "TILDE": "'~'", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'",
    "CIRCUMFLEX": "'^'", "AT": "'@'", "TRANSPOSE": "'.T'", "__ANON_0": "'..'",
}


def _describe_token(tok) -> str:
    if tok.type in ("_NL", "_INDENT", "_DEDENT", "$END"):
        return _FRIENDLY[tok.type]
    return f"'{tok.value}'"


_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "CIRCUMFLEX", "AT", "TRANSPOSE", "LSQB"}
_EXPR_START = {"NAME", "NUMBER", "STRING", "LPAR", "LSQB", "MINUS", "PLUS"}


def _describe_expected(expected) -> str:
    expected = set(expected)
    names = []
    if {"NAME", "NUMBER"} <= expected:
        names.append("an expression")
        expected -= _EXPR_START
    if len(expected & _OPERATORS) >= 3:
        names.append("an operator")
        expected -= _OPERATORS
    for t in sorted(expected):
        if t in _FRIENDLY:
            names.append(_FRIENDLY[t])
        elif t.isupper() and not t.startswith("_"):
            names.append(f"'{t.lower()}'")  # keywords such as FOR, IN
    names = list(dict.fromkeys(names))
    if len(names) > 6:
        names = names[:6] + ["..."]
    if len(names) > 1:
        return ", ".join(names[:-1]) + " or " + names[-1]
    return names[0] if names else "something else"


def _unclosed_bracket(source: Source, line: int, col: int, same_line=False):
    """The innermost bracket still open at (line, col), if it was opened on an earlier line
    (or anywhere, with ``same_line``)."""
    stack = []
    for ln, text in enumerate(source.text.splitlines()[:line], start=1):
        limit = col - 1 if ln == line else len(text)
        in_str = False
        for c, ch in enumerate(text[:limit], start=1):
            if ch == '"':
                in_str = not in_str
            elif in_str:
                continue
            elif ch == "#":
                break
            elif ch in "([":
                stack.append((ln, c, ch))
            elif ch in ")]" and stack:
                stack.pop()
    if stack and (same_line or stack[-1][0] < line):
        return stack[-1]
    return None


def _code(text: str) -> str:
    """A source line without its comment and trailing blanks."""
    return text.split("#", 1)[0].rstrip()


def _end_of_text(source: Source) -> tuple[int, int]:
    """(line, column) just after the last code character of the source."""
    lines = source.text.splitlines() or [""]
    for ln in range(len(lines), 0, -1):
        if _code(lines[ln - 1]).strip():
            return ln, len(_code(lines[ln - 1])) + 1
    return len(lines), len(lines[-1]) + 1


def _after_colon(source: Source, line: int, col: int) -> bool:
    """True when (line, col) starts a line that follows a block header (a line ending in ':')
    without being indented deeper than it: the block is missing."""
    if source.line(line)[:col - 1].strip():
        return False
    for ln in range(line - 1, 0, -1):
        code = _code(source.line(ln))
        if code.strip():
            header_indent = len(code.expandtabs(8)) - len(code.expandtabs(8).lstrip())
            return code.endswith(":") and col - 1 <= header_indent
    return False


def _syntax_message(err: UnexpectedInput, source: Source) -> tuple[SourcePos, str]:
    line = getattr(err, "line", 1) or 1
    col = getattr(err, "column", 1) or 1
    if isinstance(err, UnexpectedCharacters):
        ch = source.line(line)[col - 1:col] or "?"
        msg = f"unexpected character '{ch}'" if ch.isprintable() and not ch.isspace() else \
            f"unexpected character U+{ord(ch):04X} ({unicodedata.name(ch, 'a control character').lower()})"
        if ch == "." and source.line(line)[col:col + 1].isdigit():
            msg += "; write numbers with a leading digit, e.g. 0.5"
        return SourcePos(source, line, col, col + 1), msg
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            line, col = _end_of_text(source)
            open_br = _unclosed_bracket(source, line, col, same_line=True)
            if open_br:
                ln, c, ch = open_br
                return SourcePos(source, ln, c, c + 1), f"'{ch}' is never closed"
            return SourcePos(source, line, col), f"unexpected end of file; expected {_describe_expected(err.expected)}"
        open_br = _unclosed_bracket(source, line, col)
        if open_br:
            ln, c, ch = open_br
            return SourcePos(source, ln, c, c + 1), f"'{ch}' is never closed"
        end = (tok.end_column if tok.end_line == tok.line else None) if tok.end_column else None
        if tok.type == "_INDENT":
            # The Indenter borrows the newline's position; the indentation itself starts the
            # token's last line.
            line = tok.end_line or line
            return SourcePos(source, line, 1, tok.end_column), "unexpected indentation"
        if tok.type not in ("_NL", "_DEDENT") and _after_colon(source, line, col):
            return (SourcePos(source, line, col, end),
                    "expected an indented block after ':' (or the statement on the same line as the ':')")
        if tok.type in ("_NL", "_DEDENT"):
            # Point at the end of the offending line rather than at the next line.
            line = tok.line if tok.type == "_NL" else line
            col = len(_code(source.line(line))) + 1
            end = None
        msg = f"unexpected {_describe_token(tok)}; expected {_describe_expected(err.expected)}"
        if tok.type == "STAR" and source.line(line)[col - 2:col - 1] == "*":
            msg += "; powers are written x^2"
        return SourcePos(source, line, col, end), msg + _hint(tok, err.expected)
    if isinstance(err, UnexpectedEOF):
        line, col = _end_of_text(source)
        return SourcePos(source, line, col), "unexpected end of file"
    return SourcePos(source, line, col), str(err).splitlines()[0]


def _hint(tok, expected) -> str:
    if tok.type == "EQUAL" and "EQUAL" not in expected:
        return " (use '=' only to define a name: `h = ...`)"
    if tok.type == "_NL" and "RPAR" in expected:
        return " (is a ')' missing?)"
    if tok.type == "_NL" and "RSQB" in expected:
        return " (is a ']' missing?)"
    return ""


def _pos(source, meta_or_tok) -> SourcePos:
    m = meta_or_tok
    line, col = m.line, m.column
    end_line = getattr(m, "end_line", line)
    end_col = getattr(m, "end_column", None)
    return SourcePos(source, line, col, end_col if end_line == line else None)


class _ToAST(Transformer):
    """Lark tree -> ast dataclasses (every node gets a SourcePos)."""

    def __init__(self, source: Source):
        super().__init__()
        self.source = source

    def _p(self, meta):
        return _pos(self.source, meta)

    # --- expressions
    @v_args(meta=True)
    def number(self, meta, c):
        return ast.Number(self._p(meta), str(c[0]))

    @v_args(meta=True)
    def name(self, meta, c):
        return ast.Name(self._p(meta), str(c[0]))

    @v_args(meta=True)
    def string(self, meta, c):
        return ast.String(self._p(meta), str(c[0])[1:-1])

    @v_args(meta=True)
    def add(self, meta, c):
        return ast.BinOp(self._p(meta), "+", c[0], c[1])

    @v_args(meta=True)
    def sub(self, meta, c):
        return ast.BinOp(self._p(meta), "-", c[0], c[1])

    @v_args(meta=True)
    def mul(self, meta, c):
        return ast.BinOp(self._p(meta), "*", c[0], c[1])

    @v_args(meta=True)
    def div(self, meta, c):
        return ast.BinOp(self._p(meta), "/", c[0], c[1])

    @v_args(meta=True)
    def matmul(self, meta, c):
        return ast.BinOp(self._p(meta), "@", c[0], c[1])

    @v_args(meta=True)
    def pow(self, meta, c):
        return ast.BinOp(self._p(meta), "^", c[0], c[1])

    @v_args(meta=True)
    def neg(self, meta, c):
        return ast.Neg(self._p(meta), c[0])

    @v_args(meta=True)
    def call(self, meta, c):
        fname = c[0]
        args = tuple(a for a in c[1:] if a is not None)
        return ast.Call(self._p(meta), str(fname), args, _pos(self.source, fname))

    @v_args(meta=True)
    def gencall(self, meta, c):
        return ast.GenCall(self._p(meta), str(c[0]), c[1], c[2])

    @v_args(meta=True)
    def list(self, meta, c):
        return ast.ListLit(self._p(meta), tuple(a for a in c if a is not None))

    @v_args(meta=True)
    def listcomp(self, meta, c):
        return ast.ListComp(self._p(meta), c[0], c[1])

    def subscript(self, c):
        return tuple(c)

    @v_args(meta=True)
    def indexed(self, meta, c):
        return ast.Subscript(self._p(meta), c[0], c[1])

    @v_args(meta=True)
    def transpose(self, meta, c):
        return ast.Transpose(self._p(meta), c[0])

    # --- loops
    @v_args(meta=True)
    def range_loop(self, meta, c):
        return ast.RangeLoop(self._p(meta), str(c[0]), c[1], c[2])

    @v_args(meta=True)
    def reversed_loop(self, meta, c):
        return ast.RangeLoop(self._p(meta), str(c[0]), c[1], c[2], True)

    @v_args(meta=True)
    def set_loop(self, meta, c):
        return ast.SetLoop(self._p(meta), str(c[0]), c[1])

    def loop_specs(self, c):
        return tuple(c)

    def suffix(self, c):
        return c[0]

    # --- statements
    @v_args(meta=True)
    def target(self, meta, c):
        idx = tuple(i for group in c[1:] for i in group)
        return ast.Target(self._p(meta), str(c[0]), idx)

    @v_args(meta=True)
    def binding(self, meta, c):
        return (str(c[0]), c[1], _pos(self.source, c[0]))

    def binding_t(self, c):
        return (c[0], c[1])

    @v_args(meta=True)
    def const_decl(self, meta, c):
        return ast.ConstDecl(self._p(meta), tuple(c))

    @v_args(meta=True)
    def data_decl(self, meta, c):
        return ast.DataDecl(self._p(meta), str(c[0]), c[1])

    @v_args(meta=True)
    def width_decl(self, meta, c):
        return ast.WidthDecl(self._p(meta), str(c[0]), c[1])

    @v_args(meta=True)
    def fn_decl(self, meta, c):
        return ast.FnDecl(self._p(meta), str(c[0]), tuple(str(x) for x in c[1:-1]), c[-1])

    @v_args(meta=True)
    def matrix_shape(self, meta, c):
        return ("matrix", self._p(meta), c[0], c[1])

    @v_args(meta=True)
    def vector_shape(self, meta, c):
        return ("vector", self._p(meta), c[0])

    @v_args(meta=True)
    def matrix_decl(self, meta, c):
        target, shape, dist, loops = c
        if shape is not None and shape[0] != "matrix":
            raise _ShapeError(shape[1], "a matrix shape is written `: (rows, cols)`")
        return ast.MatrixDecl(self._p(meta), target, shape[2:] if shape else None, dist, loops or ())

    @v_args(meta=True)
    def vector_decl(self, meta, c):
        loops, dist, shape = c[-1], c[-2], c[-3]
        targets = tuple(c[:-3])
        if shape is not None and shape[0] != "vector":
            raise _ShapeError(shape[1], "a vector's width is written `: m` (a width name, or n)")
        return ast.VectorDecl(self._p(meta), targets, shape[2] if shape else None, dist, loops or ())

    @v_args(meta=True)
    def scalar_decl(self, meta, c):
        return ast.ScalarDecl(self._p(meta), tuple(c[:-1]), c[-1] or ())

    @v_args(meta=True)
    def out_decl(self, meta, c):
        return ast.OutDecl(self._p(meta), c[0], c[1], c[2] or ())

    @v_args(meta=True)
    def assign(self, meta, c):
        return ast.Assign(self._p(meta), c[0], c[1], c[2] or ())

    @v_args(meta=True)
    def for_block(self, meta, c):
        return ast.ForBlock(self._p(meta), c[0], tuple(c[1:]))

    @v_args(meta=True)
    def for_inline(self, meta, c):
        return ast.ForBlock(self._p(meta), c[0], (c[1],))

    @v_args(meta=True)
    def start(self, meta, c):
        return ast.Module(SourcePos(self.source, 1, 1), tuple(x for x in c if x is not None))


class _ShapeError(Exception):
    def __init__(self, pos, msg):
        self.pos, self.msg = pos, msg


def _parse_once(text: str, source: Source):
    tree = _lark().parse(text)
    try:
        return _ToAST(source).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, _ShapeError):
            raise _as_tperror(e.orig_exc) from None
        raise


def _as_tperror(e: _ShapeError) -> TPError:
    from ..errors import Diagnostic
    return TPError(Diagnostic(e.pos, e.msg))


def _next_toplevel_line(lines, after: int) -> int | None:
    """1-based number of the first non-blank, unindented line after ``after``."""
    for i in range(after, len(lines)):
        s = lines[i]
        if s.strip() and not s.lstrip().startswith("#") and not s[0].isspace():
            return i + 1
    return None


def parse_source(source: Source) -> ast.Module:
    """Parse a whole program; raise TPError listing every syntax error found."""
    text = source.text if source.text.endswith("\n") else source.text + "\n"
    lines = text.splitlines()
    diags = Diagnostics()
    start_line, module = 1, None
    while True:
        chunk = "\n" * (start_line - 1) + "\n".join(lines[start_line - 1:]) + "\n"
        try:
            tree = _parse_once(chunk, source)
            if start_line == 1:
                module = tree
            break
        except TPError as e:
            diags.extend(e)
            err_line = e.diagnostics[0].pos.line if e.diagnostics and e.diagnostics[0].pos else start_line
        except DedentError:
            # The Indenter does not say where; find the first line whose indentation is not
            # one of the enclosing levels.
            err_line = _find_bad_dedent(lines, start_line)
            diags.add(SourcePos(source, err_line, 1), "unindent does not match any outer indentation level")
        except UnexpectedInput as e:
            pos, msg = _syntax_message(e, source)
            if not any(d.pos == pos and d.message == msg for d in diags.items):
                diags.add(pos, msg)
            err_line = max(pos.line, getattr(e, "line", 0) or 0)
        nxt = _next_toplevel_line(lines, max(err_line, start_line))
        if nxt is None:
            break
        start_line = nxt
    diags.raise_if_errors()
    return module


def _find_bad_dedent(lines, start_line) -> int:
    stack = [0]
    for i in range(start_line - 1, len(lines)):
        s = lines[i]
        if not s.strip() or s.lstrip().startswith("#"):
            continue
        ind = len(s.expandtabs(8)) - len(s.expandtabs(8).lstrip())
        if ind > stack[-1]:
            stack.append(ind)
        else:
            while ind < stack[-1]:
                stack.pop()
            if ind != stack[-1]:
                return i + 1
    return start_line
