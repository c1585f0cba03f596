"""docs/language.md is checked against the grammar and the compiler so that it cannot go stale.

- every literal of grammar/tp.lark (keywords, operators) and every terminal's pattern is in the text;
- the precedence table lists the grammar's expression rules, loosest first, with their operators;
- every builtin and special function and every reserved name is documented;
- every ```tp block compiles; every ```tp-error block fails with exactly the report shown after it;
- the sample listing lines are what ``tpc check --list`` prints for the first example.
"""
import re

import pytest

import tensorprog
from tensorprog import functions as F
from tensorprog.errors import TPError
from tensorprog.frontend import expressions, lowering
from tensorprog.frontend.parser import grammar_text


@pytest.fixture(scope="module")
def doc(repo_root):
    return (repo_root / "docs" / "language.md").read_text()


def code_blocks(doc, lang):
    return re.findall(rf"^```{re.escape(lang)}\n(.*?)^```$", doc, flags=re.S | re.M)


def inline_code(doc):
    """All text inside backticks or fenced blocks."""
    fenced = re.findall(r"^```\S*\n(.*?)^```$", doc, flags=re.S | re.M)
    rest = re.sub(r"^```\S*\n.*?^```$", "", doc, flags=re.S | re.M)
    return fenced + re.findall(r"`([^`\n]+)`", rest)


def grammar_rules():
    """rule name -> list of alternatives (text), from grammar/tp.lark."""
    rules, current = {}, None
    for line in grammar_text().splitlines():
        line = line.split("//")[0].rstrip()
        m = re.match(r"^\??([a-z_]+):\s*(.*)$", line)
        if m:
            current = m.group(1)
            rules[current] = [m.group(2)]
        elif current and line.strip().startswith("|"):
            rules[current].append(line.strip()[1:].strip())
        elif not line.strip():
            current = None
    return rules


def grammar_literals():
    """The quoted strings of the grammar's rules (keywords and operators), plus TRANSPOSE's."""
    alts = [a for alternatives in grammar_rules().values() for a in alternatives]
    return set(re.findall(r'"([^"]+)"', " ".join(alts))) | {".T"}


def test_every_grammar_literal_is_documented(doc):
    literals = grammar_literals()
    assert {"const", "for", "reversed", "@", "^", "..", "~"} <= literals
    code = " ".join(inline_code(doc))
    missing = [lit for lit in sorted(literals) if lit not in code]
    assert not missing, f"grammar literals not in docs/language.md: {missing}"
    keywords = sorted(lit for lit in literals if lit.isalpha())
    assert all(f"`{k}`" in doc for k in keywords), keywords


def test_every_terminal_pattern_is_documented(doc):
    terminals = dict(re.findall(r"^([A-Z]+):\s*(\S.*)$", grammar_text(), flags=re.M))
    assert {"NAME", "NUMBER", "STRING", "TRANSPOSE", "COMMENT"} <= set(terminals)
    for name, pattern in terminals.items():
        assert f"| `{name}` | `{pattern}` |" in doc, name


def test_precedence_table_matches_grammar(doc):
    rules = grammar_rules()
    chain, rule = [], rules["expr"][0]
    while rule in rules and rule != "atom":  # each level's first alternative is the next level
        chain.append(rule)
        rule = rules[rule][0]
    assert chain == ["sum", "product", "unary", "power", "postfix"]
    rows = re.findall(r"^\|[^|]*\|([^|]*)\| `([a-z]+)` \|[^|]*\|$", doc, flags=re.M)
    assert [r[1] for r in rows] == chain
    for (ops, name) in rows:
        shown = set(re.findall(r"`([^`]+)`", ops))
        for alt in rules[name][1:]:
            for lit in re.findall(r'"([^"]+)"', alt):
                assert lit in shown, (name, lit)
            if "TRANSPOSE" in alt:
                assert any(s.endswith(".T") for s in shown)
            if "subscript" in alt:
                assert any("[" in s for s in shown)


def test_statement_rules_have_sections(doc):
    rules = grammar_rules()
    decls = [r[:-len("_decl")] for r in rules if r.endswith("_decl")]
    assert sorted(decls) == ["const", "data", "fn", "matrix", "out", "param", "scalar", "vector", "width"]
    for kw in decls + ["for"]:
        assert re.search(rf"^### `{kw}`", doc, flags=re.M), kw
    assert "### Assignments" in doc


def test_functions_and_reserved_names_are_documented(doc):
    for name in F.BUILTIN_NAMES:
        assert f"`{name}" in doc, name
    for name in expressions._SPECIAL:
        assert f"`{name}(" in doc, name
    for name in lowering.RESERVED:
        assert f"`{name}`" in doc or f"`{name}(" in doc, name


def test_tp_blocks_compile(doc, data_dir):
    blocks = code_blocks(doc, "tp")
    assert len(blocks) >= 12
    for block in blocks:
        prog = tensorprog.parse(block)
        assert prog.outputs


def test_error_blocks_report_exactly_what_is_shown(doc):
    pairs = re.findall(r"^```tp-error\n(.*?)^```\n\n```text\n(.*?)^```$", doc, flags=re.S | re.M)
    assert len(pairs) == len(code_blocks(doc, "tp-error")) >= 3
    for program, report in pairs:
        with pytest.raises(TPError) as info:
            tensorprog.parse(program, name="prog.tp")
        assert str(info.value).startswith(report.rstrip("\n")), str(info.value)


def test_listing_sample_is_current(doc):
    first = code_blocks(doc, "tp")[0]
    listing = str(tensorprog.parse(first)).splitlines()
    sample = [line for line in code_blocks(doc, "text") if "nonlin x0 + x1" in line][0]
    for line in sample.splitlines():
        assert line in listing, line
