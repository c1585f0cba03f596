"""Gaussian expectations with singular integrands (issue 18).  Non-integrable singularities
(|t|^e, e <= -1, at a zero of an affine argument) are refused with the program line (exit 2);
integrable ones (log|t|, |t|^-1/2) are integrated split at the singularity.  Truths: mpmath
quadrature at 30 digits split at the singularity, and the closed forms
E log|x| = -(gamma + log 2)/2, E |x|^-1/2 = Gamma(1/4) / (2^(1/4) sqrt(pi)) for x ~ N(0, 1)."""
import math
import subprocess
import sys

import mpmath
import pytest

import tensorprog
from tensorprog.errors import TPError


def _prog(expr, var=1):
    return f"vector x ~ N(0, {var})\nout s = mean({expr})\n"


@pytest.mark.parametrize("expr,word", [("x^-2", "diverges"), ("x^-1", "undefined"), ("1/(x-1)", "undefined"),
                                       ("abs(x)^(-3/2)", "diverges"), ("cos(x) * x^-4", "diverges")])
def test_non_integrable_singularities_are_refused(expr, word):
    with pytest.raises(TPError) as e:
        tensorprog.evaluate(_prog(expr))
    msg = str(e.value)
    assert word in msg and "not integrable" in msg and ":2:" in msg


def test_refusal_exit_code_two(tmp_path):
    p = tmp_path / "s.tp"
    p.write_text(_prog("x^-2"))
    r = subprocess.run([sys.executable, "-m", "tensorprog", "eval", str(p)], capture_output=True, text=True)
    assert r.returncode == 2 and "diverges" in r.stderr and "Traceback" not in r.stderr


def _truth(f, var, at):
    mpmath.mp.dps = 30
    s = mpmath.sqrt(var)
    g = lambda x: mpmath.exp(-x * x / (2 * var)) / (s * mpmath.sqrt(2 * mpmath.pi))  # noqa: E731
    return float(mpmath.quad(lambda x: f(x) * g(x), [-mpmath.inf, -s, at, s, mpmath.inf]))


CASES = [
    ("log(abs(x))", 1, lambda x: mpmath.log(abs(x)), 0.0),
    ("abs(x)^(-1/2)", 1, lambda x: abs(x) ** -0.5, 0.0),
    ("abs(x)^(-1/2)", 1e4, lambda x: abs(x) ** -0.5, 0.0),
    ("log(abs(x - 0.3)) * tanh(x)", 1, lambda x: mpmath.log(abs(x - 0.3)) * mpmath.tanh(x), 0.3),
    ("abs(x - 0.3)^(-1/2)", 1, lambda x: abs(x - 0.3) ** -0.5, 0.3),
    ("log(abs(x))^2", 2, lambda x: mpmath.log(abs(x)) ** 2, 0.0),
]


@pytest.mark.parametrize("expr,var,f,at", CASES)
def test_integrable_singularities(expr, var, f, at):
    out = tensorprog.evaluate(_prog(expr, var))["s"]
    truth = _truth(f, var, at)
    err = abs(float(out.value) - truth)
    assert err <= float(out.error), (out.value, truth, out.error)
    assert float(out.error) <= 1e-7 * max(1.0, abs(truth))


def test_closed_form_values():
    gamma = float(mpmath.euler)
    assert abs(float(tensorprog.evaluate(_prog("log(abs(x))"))["s"].value) + (gamma + math.log(2)) / 2) < 1e-14
    assert abs(float(tensorprog.evaluate(_prog("abs(x)^(-1/2)"))["s"].value)
               - math.gamma(0.25) / (2 ** 0.25 * math.sqrt(math.pi))) < 1e-14
