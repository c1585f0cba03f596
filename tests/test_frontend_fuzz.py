"""Fuzzing the front end: any text must give a Program or a TPError, never another exception.

Inputs are the examples mutated at the character and token level, and random
sequences of the grammar's own vocabulary.  Hypothesis runs derandomized (a
fixed sequence of inputs) with a bounded number of examples; set
``TP_FUZZ_EXAMPLES`` to run many more while hunting for crashes.
"""
import os
import re
import signal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tensorprog
from tensorprog.errors import TPError
from tensorprog.frontend.parser import grammar_text

EXAMPLES = [p.read_text() for p in sorted((Path(__file__).parents[1] / "examples").glob("*.tp"))]

# Every literal of the grammar (keywords and operators), plus names, numbers and layout.
RULE_LINES = [line for line in grammar_text().splitlines() if re.match(r"\s*(\??[a-z_]+:|\|)", line)]
VOCAB = sorted(set(re.findall(r'"([^"]+)"', "\n".join(RULE_LINES)))) + [
    ".T", "x", "y", "W", "X", "S", "i", "j", "i'", "l", "t", "L", "T", "n", "N", "pi", "mean", "relu", "relu'",
    "tanh", "dot", "dim", "len", "norm", "delta", "softmax", "sum", "load", "leaky_relu", "h[l]", "X[i]",
    "0", "1", "2", "0.5", "1e3", '"x.npy"', "'", "#", " ", "\n", "\n    ", "\t", "\\\n",
]
TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*'*|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|\.\.|\.T|\s+|.", re.S)

N_EXAMPLES = int(os.environ.get("TP_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=N_EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
# A mutation can legitimately make a program huge (e.g. T = 4 -> T = 444 tokens of attention);
# such a program is slow, not wrong, and is abandoned after this many seconds.
TIME_LIMIT = 5


class _TooSlow(Exception):
    pass


def _alarm(signum, frame):
    raise _TooSlow()


def parse_or_error(text):
    """tensorprog.parse(text): a Program or a TPError are fine; anything else fails the test."""
    if "\n" not in text:
        text += "\n"  # one line without a newline could name a file; this is always program text
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT)
    try:
        return tensorprog.parse(text)
    except TPError as e:
        assert e.diagnostics and all(d.message for d in e.diagnostics)
        assert str(e)  # the report can be formatted
        return None
    except _TooSlow:
        return None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@st.composite
def char_mutation(draw, text):
    i = draw(st.integers(0, max(len(text) - 1, 0)))
    j = min(len(text), i + draw(st.integers(1, 4)))
    kind = draw(st.sampled_from(["delete", "duplicate", "swap", "insert"]))
    if kind == "delete":
        return text[:i] + text[j:]
    if kind == "duplicate":
        return text[:j] + text[i:j] + text[j:]
    if kind == "swap" and j < len(text):
        return text[:i] + text[j] + text[i + 1:j] + text[i] + text[j + 1:]
    return text[:i] + draw(st.sampled_from(VOCAB)) + text[i:]


@st.composite
def token_mutation(draw, text):
    toks = TOKEN.findall(text)
    if not toks:
        return text
    i = draw(st.integers(0, len(toks) - 1))
    j = draw(st.integers(0, len(toks) - 1))
    kind = draw(st.sampled_from(["delete", "duplicate", "swap", "replace"]))
    if kind == "delete":
        del toks[i]
    elif kind == "duplicate":
        toks.insert(i, toks[j])
    elif kind == "swap":
        toks[i], toks[j] = toks[j], toks[i]
    else:
        toks[i] = draw(st.sampled_from(VOCAB))
    return "".join(toks)


@st.composite
def mutated_example(draw):
    text = draw(st.sampled_from(EXAMPLES))
    for _ in range(draw(st.integers(1, 4))):
        text = draw(st.one_of(char_mutation(text), token_mutation(text)))
    return text


@given(mutated_example())
@FUZZ
def test_mutated_examples(text):
    parse_or_error(text)


@given(st.lists(st.sampled_from(VOCAB), min_size=1, max_size=40).map(" ".join))
@FUZZ
def test_random_token_sequences(text):
    parse_or_error(text)


@given(st.lists(st.sampled_from([line for t in EXAMPLES for line in t.splitlines()]), min_size=1, max_size=12)
       .map("\n".join))
@FUZZ
def test_shuffled_example_lines(text):
    parse_or_error(text)


@given(st.text(max_size=200))
@FUZZ
def test_arbitrary_text(text):
    parse_or_error(text)


@pytest.mark.parametrize("text", [
    "", "\n", "#", "\\", "out", "for", "for l in 1..2:", "(", "]", "'", '"', "\t\n\t", "\x00", "x\r\ny",
    "out o = 1", "out o = n", "const L = 1e999999999", "const a = 1e-999999999",
])
def test_degenerate_inputs(text):
    parse_or_error(text)
