"""Malformed programs: each must give exactly the listed diagnostics (line, column, message).

Every case is also run through the ``tpc check`` command line, which must print
``file:line:col: error: message``, the offending source line and a caret under
the column, exit with status 2, and never show a Python traceback.
"""
import subprocess
import sys

import numpy as np
import pytest

import tensorprog
from tensorprog import cli
from tensorprog.errors import TPError

X2 = "data X = [[1, 2], [3, 4]]\n"
V = "vector x ~ N(0, 1)\n"

# (id, program text, [(line, col, a stable part of the message), ...] in report order)
CASES = [
    # ---- syntax (several errors in one file are all reported)
    ("missing-operand", V + "out s = mean(x * )\n", [(2, 18, "unexpected ')'; expected an expression")]),
    ("three-syntax-errors", V + "y = x +\nout s = mean(y)\nz = = 3\nw = (x\n",
     [(2, 8, "unexpected end of line; expected an expression"), (4, 5, "unexpected '='"),
      (5, 5, "'(' is never closed")]),
    ("extra-paren", V + "out s = mean(x))\n", [(2, 16, "unexpected ')'")]),
    ("python-power", V + "out s = mean(x ** 2)\n", [(2, 17, "powers are written x^2")]),
    ("leading-dot-number", V + "out s = mean(.5 * x)\n", [(2, 14, "write numbers with a leading digit")]),
    ("unclosed-at-eof", V + "out s = mean(x", [(2, 13, "'(' is never closed")]),
    ("unclosed-bracket-next-line", V + "y = relu([x\nout s = mean(y)\n", [(2, 10, "'[' is never closed")]),
    ("bad-character", V + "out s = mean(x $ x)\n", [(2, 16, "unexpected character '$'")]),
    ("unexpected-indent", V + "\tout s = mean(x)\n", [(2, 1, "unexpected indentation")]),
    ("bad-dedent", "for l in 1..2:\n    vector x[l] ~ N(0, 1)\n  out s = mean(x[1])\n",
     [(3, 1, "unindent does not match any outer indentation level")]),
    ("missing-block", "for l in 1..2:\nout s = 1\n", [(2, 1, "expected an indented block after ':'")]),
    ("matrix-shape-syntax", V + "matrix W : m ~ N(0, 1/n)\nout s = mean(x)\n",
     [(2, 10, "a matrix shape is written `: (rows, cols)`")]),
    ("vector-shape-syntax", "vector x : (n, n) ~ N(0, 1)\nout s = mean(x)\n",
     [(1, 10, "a vector's width is written `: m`")]),
    ("string-outside-load", V + 'out s = mean("x")\n', [(2, 14, 'a string can only be a file name in load("...")')]),
    # ---- names and definitions
    ("const-twice", "const a = 1, a = 2\n" + V + "out s = mean(x)\n", [(1, 14, "'a' is already defined")]),
    ("reserved-name", "const n = 1\n" + V + "out s = mean(x)\n", [(1, 7, "'n' is reserved")]),
    ("builtin-name", "const relu = 1\n" + V + "out s = mean(x)\n", [(1, 7, "'relu' is a builtin function")]),
    ("no-outputs", V, [(0, 0, "the program has no outputs")]),
    ("output-twice", V + "out s = mean(x)\nout s = mean(x*x)\n", [(3, 5, "output 's' is already defined (line 2)")]),
    ("single-assignment", V + "x = relu(x)\nout s = mean(x)\n",
     [(2, 1, "'x' is already defined at line 1 (single assignment")]),
    ("single-assignment-member", "vector x[l] ~ N(0, 1) for l in 1..2\nx[2] = relu(x[1])\nout s = mean(x[2])\n",
     [(2, 1, "'x[2]' is already defined at line 1")]),
    ("use-before-definition", "out s = mean(y)\nvector y ~ N(0, 1)\n", [(1, 14, "unknown name 'y'")]),
    ("two-unknown-names", V + "out s = mean(x) + mean(y)\nout t = mean(z)\n",
     [(2, 24, "unknown name 'y'"), (3, 14, "unknown name 'z'")]),
    ("unknown-const-cascade", "const L = q\nvector x[l] ~ N(0, 1) for l in 1..L\nout s = mean(x[1])\n",
     [(1, 11, "unknown name 'q'")]),
    ("failed-loop-no-cascade", "const L = q\nfor l in 1..L:\n    h[l] = 1\n    k[l] = 2 * h[l]\nout s = k[1]\n",
     [(1, 11, "unknown name 'q'")]),
    ("kind-redefined", V + "W = mean(x)\nmatrix W ~ N(0, 1/n)\nout s = mean(x)\n",
     [(3, 8, "'W' was defined as a scalar at line 2")]),
    ("loop-variable-clash", V + "out s[x] = mean(x) for x in 1..2\n", [(2, 24, "'x' is already defined")]),
    # ---- functions and arity
    ("unknown-function", V + "out s = mean(reul(x))\n", [(2, 14, "unknown function 'reul' (did you mean 'relu'?)")]),
    ("builtin-arity", V + "out s = mean(relu(x, 2))\n", [(2, 14, "relu takes 1 argument, got 2")]),
    ("user-fn-arity", "fn f(a, b) = a * b\n" + V + "out s = mean(f(x))\n", [(3, 14, "f takes 2 arguments, got 1")]),
    ("repeated-parameter", "fn f(a, a) = a\n" + V + "out s = mean(f(x, 1))\n",
     [(1, 1, "fn f: the parameter 'a' is repeated")]),
    ("fn-unknown-name", "fn f(a) = a + c\n" + V + "out s = mean(f(x))\n", [(1, 15, "unknown name 'c'")]),
    ("fn-uses-mean", V + "fn f(a) = a + mean(x)\nout s = mean(x)\n",
     [(2, 15, "mean(...) cannot be used inside a function definition")]),
    ("mean-arity", V + "out s = mean(x, x)\n", [(2, 9, "mean takes one vector expression")]),
    # ---- types: MatMul operands, moments, outputs
    ("matmul-scalar-left", V + "scalar c = 2\ny = c @ x\nout s = mean(y)\n",
     [(3, 5, "the left operand of @ must be a matrix, got a scalar")]),
    ("matmul-two-matrices", "matrix W ~ N(0, 1/n)\n" + V + "out s = mean(W @ W @ x)\n",
     [(3, 14, "a product of two matrices is not a Tensor Program operation")]),
    ("matmul-vectors", V + "out s = mean(x @ x)\n",
     [(2, 14, "the left operand of @ must be a matrix, got a vector; for an inner product")]),
    ("matmul-scalar-right", "matrix W ~ N(0, 1/n)\nscalar c = 1\nout s = W @ c\n",
     [(3, 9, "the right operand of @ must be a vector, got a scalar")]),
    ("transpose-vector", V + "out s = mean(x.T)\n", [(2, 14, ".T transposes a matrix, not a vector")]),
    ("mean-of-scalar", V + "scalar c = 2\nout s = mean(c)\n",
     [(3, 14, "mean averages a vector over its coordinates; got a scalar")]),
    ("mean-of-matrix", "matrix W ~ N(0, 1/n)\n" + V + "out s = mean(W)\n",
     [(3, 14, "mean averages a vector over its coordinates; got a matrix")]),
    ("matrix-assigned", "matrix W ~ N(0, 1/n)\n" + V + "y = W\nout s = mean(x)\n",
     [(3, 5, "cannot assign a matrix to 'y'")]),
    ("vector-output", V + "out s = x\n", [(2, 9, "outputs are scalars; average a vector with mean(...)")]),
    ("vector-output-existing", V + "y = x\nout y\n", [(3, 5, "'y' is a vector; outputs are scalars")]),
    ("softmax-of-vector", V + "out s = softmax([mean(x), x])[0]\n", [(2, 9, "softmax takes a list of scalars")]),
    ("dot-of-vectors", V + "out s = dot(x, x)\n", [(2, 13, "dot works on data; for vectors use mean(x * y)")]),
    # ---- dimensions
    ("matmul-shape-mismatch", "width m = 2*n\nmatrix A : (m, n) ~ N(0, 1/n)\n" + V + "y = A @ (A @ x)\nout s = mean(y)\n",
     [(4, 5, "shape mismatch: A has n columns but the vector has width m")]),
    ("widths-mixed", "width m = 2*n\n" + V + "vector y : m ~ N(0, 1)\nout s = mean(x * y)\n",
     [(4, 14, "cannot combine vectors of different widths")]),
    ("width-not-multiple-of-n", "width m = 2\n" + V + "out s = mean(x)\n",
     [(1, 11, "a width must be a positive multiple of n")]),
    # ---- indices and ranges
    ("family-index-out-of-range", X2 + "vector x[i] ~ N(0, dot(X[i], X[i']))\nout s = mean(x[5])\n",
     [(3, 16, "index 5 is out of range for x (a family over X: 0..1)")]),
    ("unrolled-member-missing", "vector x[l] ~ N(0, 1) for l in 1..3\nout s = mean(x[4])\n",
     [(2, 14, "x[4] is not defined (defined: [1], [2], [3])")]),
    ("list-index-out-of-range", V + "out s = [1, 2][2]\n", [(2, 16, "list index 2 is out of range (length 2)")]),
    ("too-many-indices", V + "out s = mean(x[0])\n", [(2, 14, "'x' takes 0 indices, got 1")]),
    ("too-few-indices", X2 + "vector x[i] ~ N(0, dot(X[i], X[i']))\nout s = mean(x)\n",
     [(3, 14, "'x' takes 1 index, got 0")]),
    ("index-data-set-mismatch",
     X2 + "data Y = [[1, 2], [3, 4], [5, 6]]\nvector x[i] ~ N(0, dot(X[i], X[i']))\n"
          "vector y[i] ~ N(0, dot(Y[i], Y[i']))\nout s[i] = mean(x[i] * y[i])\n",
     [(5, 26, "index 'i' runs over X, but y is a family over Y")]),
    ("unbound-index", X2 + "vector x[i] ~ N(0, dot(X[i], X[i']))\nout s[i] = mean(x[i] * x[j])\n",
     [(3, 26, "the index 'j' is not bound here")]),
    ("unused-left-index", X2 + "vector x[i] ~ N(0, dot(X[i], X[i']))\nout s[i, j] = mean(x[i])\n",
     [(3, 5, "the index 'j' does not appear on the right-hand side")]),
    ("data-set-not-inferable", "vector x[i] ~ N(0, 1)\nout s[i] = mean(x[i])\n",
     [(1, 10, "cannot tell which data set the index 'i' runs over; add `for i in X`")]),
    ("output-not-rectangular", "vector x[l] ~ N(0, 1) for l in 1..3\nout s[l] = mean(x[l]) for l in 1..3\n"
                               "out s[5] = mean(x[1])\n",
     [(2, 5, "output 's' is missing the entry [4]")]),
    # ---- loop bounds
    ("loop-bounds-reversed", "matrix W[l] ~ N(0, 1/n) for l in 3..1\n" + V + "out s = mean(W[3] @ x)\n",
     [(1, 29, "bad loop bounds 3..1: the upper bound is below the lower bound; to count down write reversed(1..3)")]),
    ("loop-bound-fraction", V + "out s[l] = mean(x) for l in 1..2.5\n",
     [(2, 32, "a loop bound must be an integer, got 5/2")]),
    ("loop-bound-program-variable", V + "m = mean(x)\nout s[l] = mean(x) for l in 1..m\n",
     [(3, 32, "'m' is a program variable; only constants and data can be used here")]),
    ("loop-over-data-for-matrix", X2 + V + "matrix W[i] ~ N(0, 1/n) for i in X\nout s = mean(x)\n",
     [(3, 29, "a loop over a data set is not allowed here")]),
    ("loop-too-long", V + "out s = mean(x) for l in 1..100000000000\n",
     [(2, 21, "this loop unrolls to 100000000000 iterations")]),
    ("loop-variable-repeated", V + "out s[a] = mean(x) for a in 1..2, a in 1..3\n",
     [(2, 35, "the loop variable 'a' is repeated")]),
    # ---- Gaussian specifications
    ("covariance-not-symmetric", "vector x, y ~ N(0, [[1, 2], [0, 1]])\nout s = mean(x*y)\n",
     [(1, 20, "the covariance is not symmetric: Cov(y, x) = 0 but Cov(x, y) = 2")]),
    ("family-covariance-not-symmetric",
     "data X = [[1, 0], [0, 1], [1, 1]]\nvector x[i] ~ N(0, dot(X[i], X[i]) - dot(X[i'], X[i']))\n"
     "out s[i] = mean(x[i])\n",
     [(2, 1, "the covariance is not symmetric: Cov(x[0], x[2]) = -1 but Cov(x[2], x[0]) = 1")]),
    ("unrolled-covariance-not-symmetric", "vector u[t] ~ N(0, t + 2*t') for t in 1..2\nout s = mean(u[1] * u[2])\n",
     [(1, 20, "the covariance is not symmetric: Cov(u[2], u[1]) = 4 but Cov(u[1], u[2]) = 5")]),
    ("covariance-not-psd", "vector x, y ~ N(0, [[1, 2], [2, 1]])\nout s = mean(x*y)\n",
     [(1, 1, "the covariance is not positive semi-definite (smallest eigenvalue -1)")]),
    ("negative-variance", "vector x ~ N(0, -1)\nout s = mean(x)\n",
     [(1, 1, "the covariance has a negative variance: Var(x) = -1")]),
    ("family-negative-variance", "data X = [[1, 0], [0, 1], [1, 1]]\nvector x[i] ~ N(0, -dot(X[i], X[i']))\n"
                                 "out s[i] = mean(x[i])\n",
     [(2, 1, "the covariance has a negative variance: Var(x[2]) = -2")]),
    ("covariance-table-shape", "vector x, y ~ N(0, [1, 1])\nout s = mean(x*y)\n",
     [(1, 20, "the covariance of 2 vectors is a 2 x 2 table")]),
    ("covariance-table-rows", "vector x, y ~ N(0, [[1, 0], [0, 1], [0, 0]])\nout s = mean(x*y)\n",
     [(1, 20, "the covariance lists 3 entries for 2 vectors")]),
    ("not-a-gaussian", "vector x ~ M(0, 1)\nout s = mean(x)\n", [(1, 12, "expected a Gaussian N(mean, covariance)")]),
    ("covariance-depends-on-n", "vector x ~ N(0, n)\nout s = mean(x)\n",
     [(1, 17, "the covariance must be a number or an expression of data, got a width-dependent number")]),
    ("matrix-mean", "matrix W ~ N(1, 1/n)\n" + V + "out s = mean(W @ x)\n",
     [(1, 14, "initial matrices have mean 0")]),
    ("matrix-variance-negative", "matrix W ~ N(0, -1/n)\n" + V + "out s = mean(W @ x)\n",
     [(1, 17, "a variance must be real and non-negative")]),
    ("matrix-variance-complex", "matrix W ~ N(0, sqrt(999 - n) / n^2)\n" + V + "out s = mean(W @ x)\n",
     [(1, 17, "a variance must be real and non-negative")]),
    ("scalar-divergent-sum", V + "scalar a = n + 1\nout s = mean(a * x)\n",
     [(2, 12, "the scalar n + 1 has no finite limit as n -> oo (it diverges)")]),
    # ---- divergent and non-finite things
    ("matrix-variance-divergent", "matrix W ~ N(0, 1)\n" + V + "out s = mean(W @ x)\n",
     [(1, 17, "the entry variance 1 does not scale as 1/n")]),
    ("scalar-divergent", V + "scalar a = n^(1/2)\nout s = mean(a * x)\n",
     [(2, 12, "the scalar sqrt(n) has no finite limit as n -> oo (it diverges)")]),
    ("width-factor-divergent", V + "out s = mean(x * n)\n", [(2, 14, "the scalar n has no finite limit")]),
    ("scalar-oscillating", V + "scalar a = sin(n)\nout s = mean(a * x)\n",
     [(2, 12, "the scalar sin(n) has no finite limit as n -> oo (it does not converge)")]),
    ("division-by-zero", V + "out s = mean(x) / 0\n", [(2, 9, "this arithmetic has no finite real value")]),
    ("complex-number", V + "out s = mean(x * (-1)^(1/2))\n", [(2, 18, "this arithmetic has no finite real value")]),
    ("huge-power", "const a = 9^9^9\n" + V + "out s = mean(x)\n", [(1, 11, "this power is too large to compute")]),
    ("number-out-of-range", "const a = 1e400\n" + V + "out s = mean(x)\n",
     [(1, 11, "the number 1e400 is outside the range of float64")]),
    # ---- data
    ("missing-data-file", 'data X = load("missing.npy")\n' + V + "out s = mean(x)\n", [(1, 15, "no such file: ")]),
    ("csv-not-a-number", 'data X = load("bad.csv")\n' + V + "out s = mean(x)\n",
     [(1, 15, "bad.csv, line 2: 'x' is not a number")]),
    ("csv-ragged", 'data X = load("ragged.csv")\n' + V + "out s = mean(x)\n",
     [(1, 15, "ragged.csv, line 3: 1 value, but the first row has 2")]),
    ("npy-not-numbers", 'data X = load("words.npy")\n' + V + "out s = mean(x)\n",
     [(1, 15, "words.npy must hold an array of real numbers")]),
    ("unknown-data-format", 'data X = load("points.json")\n' + V + "out s = mean(x)\n",
     [(1, 15, "cannot load 'points.json': use a .npy or .csv file")]),
    ("ragged-list", "data X = [[1, 2], [3]]\n" + V + "out s = mean(x)\n",
     [(1, 10, "the rows of this list have different lengths")]),
    ("empty-data", "data X = []\n" + V + "out s = mean(x)\n", [(1, 10, "data must contain at least one point")]),
]


@pytest.fixture
def program_dir(tmp_path):
    """A directory with the data files the cases load."""
    (tmp_path / "bad.csv").write_text("1,2\n3,x\n")
    (tmp_path / "ragged.csv").write_text("# a comment line\n1,2\n3\n")
    np.save(tmp_path / "words.npy", np.array(["a", "b"]))
    return tmp_path


def test_there_are_enough_cases():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("src, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_program(program_dir, src, expected, capsys, monkeypatch):
    monkeypatch.chdir(program_dir)
    (program_dir / "prog.tp").write_text(src)
    with pytest.raises(TPError) as info:
        tensorprog.parse("prog.tp")
    got = [((d.pos.line, d.pos.col) if d.pos else None, d.message) for d in info.value.diagnostics]
    assert [g[0] for g in got] == [(line, col) for line, col, _ in expected], got
    for (_, message), (_, _, part) in zip(got, expected):
        assert part in message

    # The same through the command line.
    assert cli.main(["check", "prog.tp"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    source_lines = src.splitlines()
    for line, col, part in expected:
        head = f"prog.tp:{line}:{col}: error: " if line else "prog.tp: error: "
        (k,) = [k for k, text in enumerate(lines) if text.startswith(head) and part in text]
        if line:  # the source line, then a caret under the column
            assert lines[k + 1] == "    " + source_lines[line - 1].expandtabs(1)
            assert lines[k + 2].startswith(" " * (3 + col) + "^")


def test_cli_subprocess_exit_code_and_no_traceback(tmp_path):
    (tmp_path / "prog.tp").write_text(V + "y = x +\nout s = mean(reul(x))\n")
    r = subprocess.run([sys.executable, "-m", "tensorprog", "check", "prog.tp"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("prog.tp:2:8: error: unexpected end of line; expected an expression\n"
                               "    y = x +\n           ^\n")
    assert "Traceback" not in r.stderr


def test_cli_bad_define_and_missing_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prog.tp").write_text("const L = 2\n" + V + "out s = mean(x)\n")
    assert cli.main(["check", "prog.tp", "-D", "K=3"]) == 2
    assert capsys.readouterr().err == "prog.tp: error: -D K=...: the program has no const named 'K'\n"
    assert cli.main(["check", "prog.tp", "-D", "L=two"]) == 2
    assert capsys.readouterr().err == "error: -D L: 'two' is not a number\n"
    assert cli.main(["check", "prog.tp", "-D", "L"]) == 2
    assert capsys.readouterr().err == "error: -D expects name=value, got 'L'\n"
    assert cli.main(["check", "absent.tp"]) == 2
    assert capsys.readouterr().err == "error: no such file: absent.tp\n"


def test_cli_define_overrides_const(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prog.tp").write_text("const L = 2\nvector x[l] ~ N(0, 1) for l in 1..L\n"
                                      "out s[l] = mean(x[l]) for l in 1..L\n")
    assert cli.main(["check", "prog.tp", "-D", "L=5"]) == 0
    assert capsys.readouterr().out == "ok: prog.tp: 10 instructions (5 init_vector, 5 moment); 0 over families; " \
                                      "1 output\n"


def test_error_report_format():
    """The exact report: position, message, source line, caret spanning the token."""
    with pytest.raises(TPError) as info:
        tensorprog.parse(V + "out s = mean(reul(x))\n", name="p.tp")
    assert str(info.value) == ("p.tp:2:14: error: unknown function 'reul' (did you mean 'relu'?)\n"
                               "    out s = mean(reul(x))\n"
                               "                 ^~~~")
