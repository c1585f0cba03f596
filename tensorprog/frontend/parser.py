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

from lark import Lark, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
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


def _matrix_decl(pos, c):
    target, shape, dist, loops = c
    if shape is not None and shape[0] != "matrix":
        raise _ShapeError(shape[1], "a matrix shape is written `: (rows, cols)`")
    return ast.MatrixDecl(pos, target, shape[2:] if shape else None, dist, loops or ())


def _vector_decl(pos, c):
    loops, dist, shape = c[-1], c[-2], c[-3]
    if shape is not None and shape[0] != "vector":
        raise _ShapeError(shape[1], "a vector's width is written `: m` (a width name, or n)")
    return ast.VectorDecl(pos, tuple(c[:-3]), shape[2] if shape else None, dist, loops or ())


def _binary(op):
    return lambda pos, c: ast.BinOp(pos, op, c[0], c[1])


def _present(c):
    """The children lark filled in (optional parts it left out are None: maybe_placeholders)."""
    return tuple(a for a in c if a is not None)


# One row per grammar rule (grammar/tp.lark): rule name -> build(position of the rule's text, children).
# Terminals (tokens) become str where the AST wants a name; the positions of sub-parts that errors
# point at (a called function's name, a binding's name) come from the token itself.
_RULES = {
    # expressions
    "number": lambda pos, c: ast.Number(pos, str(c[0])),
    "name": lambda pos, c: ast.Name(pos, str(c[0])),
    "string": lambda pos, c: ast.String(pos, str(c[0])[1:-1]),
    **{rule: _binary(op) for rule, op in
       {"add": "+", "sub": "-", "mul": "*", "div": "/", "matmul": "@", "pow": "^"}.items()},
    "neg": lambda pos, c: ast.Neg(pos, c[0]),
    "call": lambda pos, c: ast.Call(pos, str(c[0]), _present(c[1:]), _pos(pos.source, c[0])),
    "keyword": lambda pos, c: ast.Keyword(pos, str(c[0]), c[1]),
    "gencall": lambda pos, c: ast.GenCall(pos, str(c[0]), c[1], c[2]),
    "list": lambda pos, c: ast.ListLit(pos, _present(c)),
    "listcomp": lambda pos, c: ast.ListComp(pos, c[0], c[1]),
    "subscript": lambda pos, c: tuple(c),
    "indexed": lambda pos, c: ast.Subscript(pos, c[0], c[1]),
    "transpose": lambda pos, c: ast.Transpose(pos, c[0]),
    # loops
    "range_loop": lambda pos, c: ast.RangeLoop(pos, str(c[0]), c[1], c[2]),
    "reversed_loop": lambda pos, c: ast.RangeLoop(pos, str(c[0]), c[1], c[2], True),
    "set_loop": lambda pos, c: ast.SetLoop(pos, str(c[0]), c[1]),
    "loop_specs": lambda pos, c: tuple(c),
    "suffix": lambda pos, c: c[0],
    # statements
    "target": lambda pos, c: ast.Target(pos, str(c[0]), tuple(i for group in c[1:] for i in group)),
    "binding": lambda pos, c: (str(c[0]), c[1], _pos(pos.source, c[0])),
    "binding_t": lambda pos, c: (c[0], c[1]),
    "const_decl": lambda pos, c: ast.ConstDecl(pos, tuple(c)),
    "data_decl": lambda pos, c: ast.DataDecl(pos, str(c[0]), c[1]),
    "width_decl": lambda pos, c: ast.WidthDecl(pos, str(c[0]), c[1]),
    "fn_decl": lambda pos, c: ast.FnDecl(pos, str(c[0]), tuple(str(x) for x in c[1:-1]), c[-1]),
    "matrix_shape": lambda pos, c: ("matrix", pos, c[0], c[1]),
    "vector_shape": lambda pos, c: ("vector", pos, c[0]),
    "matrix_decl": _matrix_decl,
    "vector_decl": _vector_decl,
    "param_decl": lambda pos, c: ast.ParamDecl(pos, c[1], tuple(c[0] or ())),
    "param_opts": lambda pos, c: tuple(c),
    "scalar_decl": lambda pos, c: ast.ScalarDecl(pos, tuple(c[:-1]), c[-1] or ()),
    "out_decl": lambda pos, c: ast.OutDecl(pos, c[0], c[1], c[2] or ()),
    "assign": lambda pos, c: ast.Assign(pos, c[0], c[1], c[2] or ()),
    "for_block": lambda pos, c: ast.ForBlock(pos, c[0], tuple(c[1:])),
    "for_inline": lambda pos, c: ast.ForBlock(pos, c[0], (c[1],)),
    "start": lambda pos, c: ast.Module(SourcePos(pos.source, 1, 1), _present(c)),
}


class _ToAST(Transformer):
    """Lark tree -> ast dataclasses through the rule table ``_RULES`` (every node gets a SourcePos)."""

    def __init__(self, source: Source):
        super().__init__()
        self.source = source

    def __default__(self, data, children, meta):
        build = _RULES.get(data)
        if build is None:       # a rule the table does not know is a grammar/table mismatch: a bug
            raise KeyError(f"no AST rule for the grammar rule '{data}'")
        if getattr(meta, "empty", True) or not hasattr(meta, "line"):
            pos = SourcePos(self.source, 1, 1)
        else:
            pos = _pos(self.source, meta)
        return build(pos, children)


class _ShapeError(Exception):
    def __init__(self, pos, msg):
        self.pos, self.msg = pos, msg


def _parse_once(text: str, source: Source):
    tree = _lark().parse(text)
    try:
        return _ToAST(source).transform(tree)
    except _ShapeError as e:       # raised by a rule of _RULES (lark calls __default__ unwrapped)
        raise _as_tperror(e) from None


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
