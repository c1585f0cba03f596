"""The hostile-input suite (issue 17): over 200 inputs through ``tpc`` as an adversarial user would type
them.  Each must end with the stated exit status (2: a clear error; 0 where the input is odd but valid),
within 10 s, with a message naming the problem, and never an internal error or a traceback.

Cases run in-process through ``tensorprog.cli.main`` (fast); the heaviest ones run again in a
subprocess that reports its peak memory, which must stay under 1 GiB.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tensorprog import cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.tp"))
V = "vector x ~ N(0, 1)\n"
OUT = "out s = mean(x*x)\n"
LOAD = 'data X = load("{f}")\nvector g[i] ~ N(0, dot(X[i], X[i])/dim(X) + 0.1)\nout K[i, j] = mean(relu(g[i]) * relu(g[j]))\n'


class Fifo:
    """A named pipe: reading it would block forever."""


class Directory:
    pass


class Link:
    def __init__(self, target):
        self.target = target


def npy(arr):
    """The bytes of ``arr`` saved as .npy."""
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


GOOD_NPY = npy(np.ones((3, 2)))

# (id, files {name: text | bytes | Fifo | Directory | Link}, argv, exit status, part of the message)
# argv[1] is the program file for program commands; "p.tp" when the case writes one.
HAND = [
    # ---------------------------------------------------------------- the program text itself
    ("empty-program", {"p.tp": ""}, ["check", "p.tp"], 2, "the program has no outputs"),
    ("comments-only", {"p.tp": "# nothing\n# here\n"}, ["check", "p.tp"], 2, "no outputs"),
    ("nul-byte", {"p.tp": V + "out s = mean(x\0)\n"}, ["check", "p.tp"], 2, "unexpected character U+0000"),
    ("escape-char", {"p.tp": V + "out s = mean(x\x1b)\n"}, ["check", "p.tp"], 2, "unexpected character U+001B"),
    ("binary-program", {"p.tp": bytes(range(256))}, ["check", "p.tp"], 2, "not UTF-8 text (byte 128)"),
    ("latin1-comment", {"p.tp": V.encode() + b"out s = mean(x) # caf\xe9\n"}, ["check", "p.tp"], 2,
     "not UTF-8 text"),
    ("byte-order-mark", {"p.tp": "\ufeff" + V + OUT}, ["check", "p.tp"], 0, "ok:"),
    ("crlf-lines", {"p.tp": (V + OUT).replace("\n", "\r\n")}, ["check", "p.tp"], 0, "ok:"),
    ("cr-only-lines", {"p.tp": (V + OUT).replace("\n", "\r")}, ["check", "p.tp"], 0, "ok:"),
    ("no-final-newline", {"p.tp": V + OUT.rstrip()}, ["check", "p.tp"], 0, "ok:"),
    ("long-identifier", {"p.tp": V + "y" * 100_000 + " = relu(x)\n" + OUT}, ["check", "p.tp"], 0, "ok:"),
    ("unicode-identifier", {"p.tp": V + "é = relu(x)\nout s = mean(é)\n"}, ["check", "p.tp"], 2,
     "unexpected character 'é'"),
    ("zero-width-space", {"p.tp": V + "out s = mean(x\u200b)\n"}, ["check", "p.tp"], 2, "U+200B"),
    ("huge-literal", {"p.tp": V + "out s = mean(1e999999 * x)\n"}, ["check", "p.tp"], 2, "outside the range of float64"),
    ("tiny-literal", {"p.tp": V + "out s = mean(1e-999999 * x)\n"}, ["check", "p.tp"], 2, "outside the range"),
    ("hundred-thousand-digits", {"p.tp": V + "out s = mean(" + "9" * 100_000 + " * x)\n"}, ["check", "p.tp"], 2,
     "outside the range of float64"),
    ("power-tower", {"p.tp": V + "out s = mean(9^9^9 * x)\n"}, ["check", "p.tp"], 2, "this power is too large"),
    ("negative-power-tower", {"p.tp": V + "out s = mean(2^-99999999 * x)\n"}, ["check", "p.tp"], 2, "too large"),
    ("power-chain-1000", {"p.tp": V + "out s = mean(" + "^".join(["1.0001"] * 1000) + " * x)\n"},
     ["check", "p.tp"], 0, "ok:"),
    ("division-by-zero", {"p.tp": V + "out s = mean(x / 0)\n"}, ["check", "p.tp"], 2, "no finite real value"),
    ("zero-to-negative", {"p.tp": V + "const c = 0^-1\nout s = mean(c*x)\n"}, ["check", "p.tp"], 2,
     "no finite real value"),
    ("sqrt-negative-const", {"p.tp": V + "const c = (-1)^(1/2)\nout s = mean(c*x)\n"}, ["check", "p.tp"], 2,
     "no finite real value"),
    ("unknown-function", {"p.tp": V + "out s = mean(relux(x))\n"}, ["check", "p.tp"], 2, "did you mean 'relu'"),
    ("wrong-arity", {"p.tp": V + "out s = mean(relu(x, x))\n"}, ["check", "p.tp"], 2, "relu takes 1 argument"),
    ("mean-of-matrix", {"p.tp": V + "matrix W ~ N(0, 1/n)\nout s = mean(W)\n"}, ["check", "p.tp"], 2,
     "got a matrix"),
    ("vector-at-vector", {"p.tp": V + "y = x @ x\nout s = mean(y)\n"}, ["check", "p.tp"], 2,
     "left operand of @ must be a matrix"),
    ("negative-variance", {"p.tp": "vector x ~ N(0, -1)\nout s = mean(x)\n"}, ["check", "p.tp"], 2,
     "negative variance"),
    ("nan-variance", {"p.tp": "vector x ~ N(0, 0/0)\nout s = mean(x)\n"}, ["check", "p.tp"], 2, "no finite real value"),
    ("zero-width", {"p.tp": "vector x : 0 ~ N(0, 1)\nout s = mean(x)\n"}, ["check", "p.tp"], 2, "expected a width"),
    ("astronomical-width", {"p.tp": "vector x : 100000000000000000000 ~ N(0, 1)\nout s = mean(x)\n"},
     ["check", "p.tp"], 2, "expected a width"),
    ("self-reference", {"p.tp": V + "y = relu(y)\nout s = mean(y)\n"}, ["check", "p.tp"], 2, "unknown name 'y'"),
    ("recursive-function", {"p.tp": V + "fn f(a) = f(a)\nout s = mean(f(x))\n"}, ["check", "p.tp"], 2,
     "unknown function 'f'"),
    ("loop-bounds-reversed", {"p.tp": V + "for l in 5..1:\n  y = x\n" + OUT}, ["check", "p.tp"], 2,
     "upper bound is below the lower"),
    ("loop-bound-fraction", {"p.tp": V + "for l in 1..2.5:\n  y = x\n" + OUT}, ["check", "p.tp"], 2,
     "must be an integer"),
    ("loop-bound-googol", {"p.tp": V + "const L = 10^100\nfor l in 1..L:\n  y = x\n" + OUT}, ["check", "p.tp"], 2,
     "about 1e+100 iterations"),
    ("loop-ten-million", {"p.tp": V + "for l in 1..10000000:\n  x = tanh(x)\n" + OUT}, ["check", "p.tp"], 2,
     "10000000 iterations"),
    ("loop-raised-limit", {"p.tp": V + "vector y[0] ~ N(0, 1)\nfor l in 1..3:\n  y[l] = tanh(y[l-1])\n" + OUT},
     ["check", "p.tp", "--limit", "unroll=3"], 0, "ok:"),
    ("loop-limit-too-low", {"p.tp": V + "vector y[0] ~ N(0, 1)\nfor l in 1..3:\n  y[l] = tanh(y[l-1])\n" + OUT},
     ["check", "p.tp", "--limit", "unroll=2"], 2, "at most 2 are allowed"),
    ("index-out-of-range", {"p.tp": "vector x[l] ~ N(0, 1) for l in 1..2\nout s = mean(x[5])\n"}, ["check", "p.tp"],
     2, "x[5] is not defined"),
    ("derivative-order-14", {"p.tp": V + "out s = mean(relu" + "'" * 14 + "(x))\n"}, ["check", "p.tp"], 2,
     "order 14"),
    ("derivative-order-40", {"p.tp": V + "out s = mean(tanh" + "'" * 40 + "(x))\n"}, ["check", "p.tp"], 2,
     "at most 12 primes"),
    ("derivative-order-12", {"p.tp": V + "out s = mean(sin" + "'" * 12 + "(x))\n"}, ["check", "p.tp"], 0, "ok:"),
    ("twenty-thousand-outputs", {"p.tp": V + "".join(f"out s{i} = mean(x)\n" for i in range(20_000))},
     ["check", "p.tp"], 2, "more than the limit of 20000"),
    ("hundred-thousand-lines", {"p.tp": V + "".join(f"x{i} = tanh(x)\n" for i in range(100_000)) + OUT},
     ["check", "p.tp"], 2, "100002 lines"),
    ("five-megabyte-line", {"p.tp": V + "out s = mean(x" + " " * (5 * 2**20) + ")\n"}, ["check", "p.tp"], 2,
     "source_bytes"),
    ("nested-brackets-10000", {"p.tp": V + "out s = mean(" + "(" * 10_000 + "x" + ")" * 10_000 + ")\n"},
     ["check", "p.tp"], 0, "ok:"),
    ("unary-minus-10000", {"p.tp": V + "out s = mean(" + "-" * 10_000 + "x * x)\n"}, ["check", "p.tp"], 0, "ok:"),
    ("unary-minus-100000", {"p.tp": V + "out s = mean(" + "-" * 100_000 + "x)\n"}, ["check", "p.tp"], 2,
     "p.tp:2:14: error: the program is nested too deeply"),
    ("sum-chain-100000", {"p.tp": V + "out s = mean(" + "+".join(["x"] * 100_000) + ")\n"}, ["check", "p.tp"], 2,
     "p.tp:2:15: error: the program is nested too deeply"),
    ("vector-sum-10000", {"p.tp": V + "y = " + "+".join(["x"] * 10_000) + "\nout s = mean(y*y)\n"}, ["check", "p.tp"],
     0, "ok:"),
    ("unclosed-bracket-eof", {"p.tp": V + "out s = mean(" + "relu(" * 50}, ["check", "p.tp"], 2, "is never closed"),
    ("only-operators", {"p.tp": "+-*/^@\n"}, ["check", "p.tp"], 2, "p.tp:1:1: error: unexpected"),
    ("output-without-name", {"p.tp": V + "out = mean(x)\n"}, ["check", "p.tp"], 2, "p.tp:2:5: error: unexpected"),
    ("output-of-matrix", {"p.tp": "matrix W ~ N(0, 1/n)\nout s = W\n"}, ["check", "p.tp"], 2, "p.tp:2:"),
    # ---------------------------------------------------------------- the program file
    ("program-is-directory", {}, ["check", "."], 2, "not a regular file"),
    ("program-missing", {}, ["check", "nope.tp"], 2, "no such file: nope.tp"),
    ("program-dev-null", {}, ["check", "/dev/null"], 2, "not a regular file"),
    ("program-dev-zero", {}, ["check", "/dev/zero"], 2, "not a regular file"),
    ("program-fifo", {"p.tp": Fifo()}, ["check", "p.tp"], 2, "not a regular file"),
    ("program-link-to-dev-zero", {"p.tp": Link("/dev/zero")}, ["check", "p.tp"], 2, "not a regular file"),
    ("program-unreadable-dir", {"sub": Directory()}, ["check", "sub/p.tp"], 2, "no such file"),
    # ---------------------------------------------------------------- -D and --limit
    ("define-nan", {"p.tp": V + "const a = 1\n" + OUT}, ["check", "p.tp", "-D", "a=nan"], 2, "'nan' is not a number"),
    ("define-inf", {"p.tp": V + "const a = 1\n" + OUT}, ["check", "p.tp", "-D", "a=inf"], 2, "is not a number"),
    ("define-code", {"p.tp": V + "const a = 1\n" + OUT}, ["check", "p.tp", "-D", "a=__import__('os')"], 2,
     "is not a number"),
    ("define-no-equals", {"p.tp": V + "const a = 1\n" + OUT}, ["check", "p.tp", "-D", "a"], 2, "-D expects name=value"),
    ("define-bad-name", {"p.tp": V + "const a = 1\n" + OUT}, ["check", "p.tp", "-D", "1a=3"], 2, "-D expects"),
    ("define-unknown", {"p.tp": V + "const a = 1\n" + OUT}, ["check", "p.tp", "-D", "b=3"], 2, "no const named 'b'"),
    ("define-huge-exponent", {"p.tp": V + "const a = 1\n" + OUT}, ["check", "p.tp", "-D", "a=1e100000000"], 2,
     "out of range"),
    ("define-million-digits", {"p.tp": V + "const a = 1\n" + OUT}, ["check", "p.tp", "-D", "a=" + "7" * 10**6], 2,
     "out of range"),
    ("define-fraction", {"p.tp": V + "const a = 1\n" + OUT}, ["check", "p.tp", "-D", "a=1/3"], 0, "ok:"),
    ("define-zero-denominator", {"p.tp": V + "const a = 1\n" + OUT}, ["check", "p.tp", "-D", "a=1/0"], 2,
     "is not a number"),
    ("limit-unknown", {"p.tp": V + OUT}, ["check", "p.tp", "--limit", "bogus=3"], 2, "unknown limit 'bogus'"),
    ("limit-zero", {"p.tp": V + OUT}, ["check", "p.tp", "--limit", "unroll=0"], 2, "positive integer"),
    ("limit-negative", {"p.tp": V + OUT}, ["check", "p.tp", "--limit", "nesting=-5"], 2, "positive integer"),
    ("limit-text", {"p.tp": V + OUT}, ["check", "p.tp", "--limit", "unroll=lots"], 2, "positive integer"),
    ("limit-no-equals", {"p.tp": V + OUT}, ["check", "p.tp", "--limit", "unroll"], 2, "name=positive integer"),
    ("limit-huge", {"p.tp": V + OUT}, ["check", "p.tp", "--limit", "unroll=1e300"], 2, "positive integer"),
    ("limit-source-lines", {"p.tp": V + OUT}, ["check", "p.tp", "--limit", "source_lines=1"], 2,
     "the program has 2 lines"),
    ("limit-scientific", {"p.tp": V + OUT}, ["check", "p.tp", "--limit", "unroll=1e6"], 0, "ok:"),
    # ---------------------------------------------------------------- options of eval and simulate
    ("samples-zero", {"p.tp": V + OUT}, ["eval", "p.tp", "--samples", "0"], 2, "--samples must be positive"),
    ("samples-one", {"p.tp": V + OUT}, ["eval", "p.tp", "--samples", "1"], 2, "a standard error needs two"),
    ("samples-negative", {"p.tp": V + OUT}, ["eval", "p.tp", "--samples", "-5"], 2, "--samples must be positive"),
    ("samples-huge", {"p.tp": V + OUT}, ["eval", "p.tp", "--samples", "100000000000000000000"], 2,
     "--samples must be between 2 and 10000000000"),
    ("samples-text", {"p.tp": V + OUT}, ["eval", "p.tp", "--samples", "many"], 2, "invalid int value"),
    # 200,000 points (6 MB): their table of dot products alone is 298 GiB, refused at the dot, before allocating
    ("data-family-too-large", {"X.npy": npy(np.ones((200000, 4))),
                               "p.tp": "data X = load(\"X.npy\")\nvector g[i] ~ N(0, dot(X[i], X[i']) / dim(X))\n"
                                       "out K[i, j] = mean(relu(g[i]) * relu(g[j]))\n"},
     ["eval", "p.tp"], 2, "p.tp:2:20: error: the table of dot products of shape 200000 x 200000 needs about"),
    ("seed-negative", {"p.tp": V + OUT}, ["eval", "p.tp", "--seed", "-1"], 2, "--seed must be between 0"),
    ("seed-huge", {"p.tp": V + OUT}, ["eval", "p.tp", "--seed", str(2**70)], 2, "--seed must be between 0"),
    ("threads-zero", {"p.tp": V + OUT}, ["eval", "p.tp", "--threads", "0"], 2, "--threads must be between 1"),
    ("threads-negative", {"p.tp": V + OUT}, ["eval", "p.tp", "--threads", "-3"], 2, "--threads must be between 1"),
    ("threads-huge", {"p.tp": V + OUT}, ["eval", "p.tp", "--threads", str(10**30)], 2, "--threads must be between"),
    ("method-unknown", {"p.tp": V + OUT}, ["eval", "p.tp", "--method", "simpson"], 2, "invalid choice"),
    ("out-wrong-extension", {"p.tp": V + OUT}, ["eval", "p.tp", "--out", "r.txt"], 2, ".npz or .json"),
    ("out-missing-dir", {"p.tp": V + OUT}, ["eval", "p.tp", "--out", "nowhere/r.npz"], 2, "does not exist"),
    ("out-is-directory", {"p.tp": V + OUT, "r.npz": Directory()}, ["eval", "p.tp", "--out", "r.npz"], 2,
     "is a directory"),
    ("out-through-a-file", {"p.tp": V + OUT, "f": "x"}, ["eval", "p.tp", "--out", "f/r.json"], 2, "does not exist"),
    ("out-dev-null-dir", {"p.tp": V + OUT}, ["eval", "p.tp", "--out", "/proc/r.json"], 2, "not writable"),
    ("simulate-plot-extension", {"p.tp": V + OUT}, ["simulate", "p.tp", "--plot", "x.foo"], 2,
     "the file name must end in"),
    ("simulate-plot-missing-dir", {"p.tp": V + OUT}, ["simulate", "p.tp", "--plot", "no/x.png"], 2, "does not exist"),
    ("simulate-plot-directory", {"p.tp": V + OUT, "x.png": Directory()}, ["simulate", "p.tp", "--plot", "x.png"], 2,
     "is a directory"),
    ("widths-zero", {"p.tp": V + OUT}, ["simulate", "p.tp", "--widths", "0,3"], 2, "widths must be positive"),
    ("widths-text", {"p.tp": V + OUT}, ["simulate", "p.tp", "--widths", "a,b"], 2, "comma-separated integers"),
    ("widths-empty-item", {"p.tp": V + OUT}, ["simulate", "p.tp", "--widths", "4,,8"], 2, "comma-separated integers"),
    ("widths-huge", {"p.tp": V + OUT}, ["simulate", "p.tp", "--widths", "100000000"], 2,
     "each width must be between 1 and 10000000"),
    ("widths-astronomical", {"p.tp": V + OUT}, ["simulate", "p.tp", "--widths", "1" + "0" * 40], 2,
     "each width must be between"),
    ("seeds-one", {"p.tp": V + OUT}, ["simulate", "p.tp", "--seeds", "1"], 2, "--seeds at least 2"),
    ("seeds-huge", {"p.tp": V + OUT}, ["simulate", "p.tp", "--seeds", "10000000"], 2, "--seeds must be between"),
    ("simulate-seed-negative", {"p.tp": V + OUT}, ["simulate", "p.tp", "--seed", "-2"], 2, "--seed must be between"),
    ("unknown-command", {}, ["compile", "p.tp"], 2, "invalid choice"),
    ("unknown-option", {"p.tp": V + OUT}, ["check", "p.tp", "--fast"], 2, "unrecognized arguments"),
    ("graph-format", {"p.tp": V + OUT}, ["graph", "p.tp", "--format", "png"], 2, "invalid choice"),
]

# ------------------------------------------------------------------------- data files read by `load`
DATA = [
    ("fifo-csv", {"d.csv": Fifo()}, "d.csv", 2, "not a regular file"),
    ("fifo-npy", {"d.npy": Fifo()}, "d.npy", 2, "not a regular file"),
    ("dev-zero-csv", {"d.csv": Link("/dev/zero")}, "d.csv", 2, "not a regular file"),
    ("dev-zero-npy", {"d.npy": Link("/dev/zero")}, "d.npy", 2, "not a regular file"),
    ("directory-csv", {"d.csv": Directory()}, "d.csv", 2, "not a regular file"),
    ("dangling-link", {"d.csv": Link("/nonexistent/file.csv")}, "d.csv", 2, "no such file"),
    ("object-npy", {"d.npy": npy(np.array([{"a": 1}, 2], dtype=object))}, "d.npy", 2, "must hold an array of real"),
    ("complex-npy", {"d.npy": npy(np.ones((3, 2), complex))}, "d.npy", 2, "must hold an array of real numbers"),
    ("string-npy", {"d.npy": npy(np.array([["a", "b"]]))}, "d.npy", 2, "must hold an array of real numbers"),
    ("zero-rows-npy", {"d.npy": npy(np.ones((0, 2)))}, "d.npy", 2, "at least one point"),
    ("scalar-npy", {"d.npy": npy(np.array(3.0))}, "d.npy", 2, "at least one point"),
    ("nan-npy", {"d.npy": npy(np.array([[1.0, np.nan], [0, 1]]))}, "d.npy", 2, "NaN or infinite"),
    ("inf-npy", {"d.npy": npy(np.array([[1.0, np.inf], [0, 1]]))}, "d.npy", 2, "NaN or infinite"),
    ("bool-npy", {"d.npy": npy(np.array([[True, False], [False, True]]))}, "d.npy", 0, "ok:"),
    ("int8-npy", {"d.npy": npy(np.array([[1, 2], [3, 4]], np.int8))}, "d.npy", 0, "ok:"),
    ("float16-npy", {"d.npy": npy(np.array([[1, 2], [3, 4]], np.float16))}, "d.npy", 0, "ok:"),
    ("big-endian-npy", {"d.npy": npy(np.array([[1, 2], [3, 4]], ">f8"))}, "d.npy", 0, "ok:"),
    ("truncated-npy", {"d.npy": GOOD_NPY[:-5]}, "d.npy", 2, "the file holds 43 bytes of data"),
    ("padded-npy", {"d.npy": GOOD_NPY + b"\0" * 8}, "d.npy", 2, "the file holds 56 bytes of data"),
    ("bad-magic-npy", {"d.npy": b"\x93NUMPX" + GOOD_NPY[6:]}, "d.npy", 2, "not a .npy array file"),
    ("header-only-npy", {"d.npy": GOOD_NPY[:10]}, "d.npy", 2, "cannot read d.npy"),
    ("empty-npy", {"d.npy": b""}, "d.npy", 2, "cannot read d.npy"),
    ("huge-shape-npy", {"d.npy": GOOD_NPY.replace(b"(3, 2)", b"(99999999999, 2)")}, "d.npy", 2,
     "its header announces shape (99999999999, 2)"),
    ("negative-shape-npy", {"d.npy": GOOD_NPY.replace(b"(3, 2)", b"(-3, 2)")}, "d.npy", 2, "cannot read d.npy"),
    ("garbage-header-npy", {"d.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': ??? }\n" + b"\0" * 16}, "d.npy", 2,
     "cannot read d.npy"),
    ("csv-as-npy", {"d.npy": b"1,2\n3,4\n"}, "d.npy", 2, "not a .npy array file"),
    ("npy-as-csv", {"d.csv": GOOD_NPY}, "d.csv", 2, "cannot read d.csv"),
    ("empty-csv", {"d.csv": ""}, "d.csv", 2, "at least one point"),
    ("ragged-csv", {"d.csv": "1,2\n3\n"}, "d.csv", 2, "d.csv, line 2: 1 value, but the first row has 2"),
    ("text-csv", {"d.csv": "1,a\n3,4\n"}, "d.csv", 2, "d.csv, line 1: 'a' is not a number"),
    ("header-row-csv", {"d.csv": "a,b\n1,2\n"}, "d.csv", 2, "'a' is not a number"),
    ("semicolon-csv", {"d.csv": "1;2\n3;4\n"}, "d.csv", 2, "'1;2' is not a number"),
    ("nan-csv", {"d.csv": "1,nan\n3,4\n"}, "d.csv", 2, "NaN or infinite"),
    ("inf-csv", {"d.csv": "1,inf\n3,4\n"}, "d.csv", 2, "NaN or infinite"),
    ("overflow-csv", {"d.csv": "1e999,2\n3,4\n"}, "d.csv", 2, "NaN or infinite"),
    ("latin1-csv", {"d.csv": b"1,2\n3,\xe9\n"}, "d.csv", 2, "not UTF-8 text (byte 6)"),
    ("nul-csv", {"d.csv": "1,2\n3,\x004\n"}, "d.csv", 2, "'\\x004' is not a number"),
    ("bom-csv", {"d.csv": "\ufeff1,2\n3,4\n"}, "d.csv", 0, "ok:"),
    ("crlf-csv", {"d.csv": "1,2\r\n3,4\r\n"}, "d.csv", 0, "ok:"),
    ("blank-lines-csv", {"d.csv": "1,2\n\n3,4\n\n"}, "d.csv", 0, "ok:"),
    ("comment-csv", {"d.csv": "# x, y\n1,2\n3,4\n"}, "d.csv", 0, "ok:"),
    ("quoted-csv", {"d.csv": '"1","2"\n"3","4"\n'}, "d.csv", 0, "ok:"),
    ("unterminated-quote-csv", {"d.csv": '"1,2\n3,4\n'}, "d.csv", 2, "d.csv, line 1:"),
    ("huge-field-csv", {"d.csv": "1" * 300_000 + "\n"}, "d.csv", 2, "cannot read d.csv"),
    ("ten-megabyte-line-csv", {"d.csv": ",".join(["1.5"] * 2_600_000) + "\n"}, "d.csv", 0, "ok:"),
    ("seventy-megabytes-csv", {"d.csv": b"1.0,2.0\n" * (70 * 2**17)}, "d.csv", 2, "is more than the limit of"),
    ("json-extension", {"d.json": "[1,2]"}, "d.json", 2, "use a .npy or .csv file"),
    ("no-extension", {"d": "1,2\n"}, "d", 2, "use a .npy or .csv file"),
    ("missing-file", {}, "missing.csv", 2, "no such file"),
    ("system-file", {}, "/etc/passwd", 2, "use a .npy or .csv file"),
    ("proc-file", {}, "/proc/self/status.csv", 2, "no such file"),
    ("space-separated-txt", {"d.txt": "1 2\n3 4\n"}, "d.txt", 2, "'1 2' is not a number"),
]
HAND += [(f"load-{name}", {**files, "p.tp": LOAD.format(f=f)}, ["check", "p.tp"], code, part)
         for name, files, f, code, part in DATA]


def _mutations(text):
    """Deterministic breaking edits of a valid example: (suffix, new text, extra argv, message part)."""
    # the first line declaring an output (at top level, or a one-line loop `for ...: out K[..] = ...`)
    first_out = next((line for line in text.splitlines() if re.match(r"(for .*:\s*)?out\s", line)
                      and line.count("(") == line.count(")") and line.count("[") == line.count("]")), None)
    if first_out is None:       # every output spans several lines: duplicate a new one instead
        first_out = "out zz_twice = 1\nout zz_twice = 2"
    name = re.search(r"\bout\s+([A-Za-z_]\w*)", first_out.splitlines()[-1]).group(1)
    return [
        ("stray-paren", text.rstrip("\n") + ")\n", [], "unexpected ')'"),
        ("unclosed", text + "out zz_unclosed = mean(relu(\n", [], "is never closed"),
        ("dollar", text + "zz = $\n", [], "unexpected character '$'"),
        ("undefined-name", text + "out zz_undef = mean(zz_nowhere * zz_nowhere)\n", [], "unknown name 'zz_nowhere'"),
        ("duplicate-output", text + first_out + "\n", [], f"output '{name}"),
        ("tab-indent", text + "\tzz = 1\n", [], "unexpected indentation"),
        ("unknown-define", text, ["-D", "zz_not_a_const=1"], "no const named 'zz_not_a_const'"),
    ]


GENERATED = [(f"{p.stem}-{suffix}", {"p.tp": new}, ["check", "p.tp", *extra], 2, part)
             for p in EXAMPLES for suffix, new, extra, part in _mutations(p.read_text())]
CASES = HAND + GENERATED


def _materialise(tmp_path, files):
    for name, content in files.items():
        path = tmp_path / name
        if isinstance(content, Fifo):
            os.mkfifo(path)
        elif isinstance(content, Directory):
            path.mkdir()
        elif isinstance(content, Link):
            path.symlink_to(content.target)
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())


def test_the_suite_has_over_200_cases():
    assert len(CASES) >= 200 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input(case, tmp_path, monkeypatch, capsys):
    name, files, argv, code, part = case
    _materialise(tmp_path, files)
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    try:
        rc = cli.main(argv)
    except SystemExit as e:     # argparse's own errors
        rc = e.code
    elapsed = time.perf_counter() - t0
    out, err = capsys.readouterr()
    assert rc == code, f"exit {rc}, expected {code}: {err[:500]}"
    assert "internal error" not in err and "Traceback" not in err
    assert part in (err if code else out), (err or out)[:500]
    if code == 2 and "p.tp:" in err:      # a located error shows the line and a caret under the column
        m = re.search(r"p\.tp:(\d+):(\d+): error", err)
        if m:
            assert re.search(r"\n {4}.*\n\s*\^", err), err[:500]
    assert elapsed < 10, f"{elapsed:.1f} s"


# The heaviest inputs again, each in a fresh interpreter that reports its own peak resident memory.
HEAVY = ["hundred-thousand-lines", "sum-chain-100000", "unary-minus-100000", "loop-ten-million",
         "load-ten-megabyte-line-csv", "load-seventy-megabytes-csv", "power-tower", "derivative-order-40",
         "nested-brackets-10000", "load-huge-shape-npy", "samples-huge", "widths-astronomical",
         "data-family-too-large"]
# Peak memory from VmHWM, the high-water mark of this process image: getrusage's ru_maxrss survives
# fork and exec on Linux, so it would report the (large) pytest parent instead of the child.
_CHILD = """
import json, re, sys, time
from tensorprog import cli
t0 = time.perf_counter()
try:
    rc = cli.main(json.loads(sys.argv[1]))
except SystemExit as e:
    rc = e.code
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t0,
                  "peak_mib": int(re.search(r"VmHWM:\\s*(\\d+)", open("/proc/self/status").read())[1]) / 1024}))
"""


@pytest.mark.parametrize("name", HEAVY)
def test_heavy_inputs_stay_under_a_gibibyte(name, tmp_path):
    (case,) = [c for c in CASES if c[0] == name]
    _, files, argv, code, part = case
    _materialise(tmp_path, files)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(argv)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env=env)
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["rc"] == code and part in r.stderr + r.stdout
    assert report["seconds"] < 10
    assert report["peak_mib"] < 1024, report


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, monkeypatch, capsys):
    # matplotlib is an optional extra ("tensorprog[plot]"): without it --plot is refused before any work
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    (tmp_path / "p.tp").write_text(V + OUT)
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    assert cli.main(["simulate", "p.tp", "--widths", "4096,8192", "--seeds", "50", "--plot", "c.png"]) == 2
    assert time.perf_counter() - t0 < 5          # refused before the (long) simulation
    assert 'pip install "tensorprog[plot]"' in capsys.readouterr().err


def test_out_of_memory_is_a_clear_error_not_an_internal_one(tmp_path, monkeypatch, capsys):
    # An allocation the estimates did not foresee: exit 2 with a plain message, no "internal error".
    import tensorprog.numeric.evaluate as ev

    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 26.8 GiB for an array with shape (60000, 60000)")

    monkeypatch.setattr(ev.Evaluator, "run", exhausted)
    (tmp_path / "p.tp").write_text(V + OUT)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["eval", "p.tp"]) == 2
    err = capsys.readouterr().err
    assert "out of memory" in err and "26.8 GiB" in err and "internal error" not in err
