"""The numeric method of a Gaussian integral is the first rule of integrals.METHOD_RULES that applies;
each case below is the docs' table (docs/backend.md) written out by hand, and every integral's value is
checked against a closed form with the method the rule picked."""
import math

import numpy as np
import pytest
import sympy

from tensorprog import functions as F
from tensorprog.limit.symbols import Integral
from tensorprog.numeric import integrals as I
from tensorprog.numeric.evaluate import _METHOD_ORDER

U = sympy.symbols("u0:4", real=True)


def integral(F_, d):
    return Integral(F_, U[:d], (0,) * d, sympy.eye(d))


CASES = [
    # (integrand, dim, grid points, requested, expected method, E[F] under N(0, I))
    (sympy.cos(U[0]), 1, 10, "auto", "quad1d", math.exp(-0.5)),
    (sympy.cos(U[0]), 1, 100, "auto", "series", math.exp(-0.5)),
    (sympy.cos(U[0]), 1, 10, "series", "series", math.exp(-0.5)),
    (sympy.cos(U[0]) * sympy.cos(U[1]), 2, 10, "auto", "nested", math.exp(-1.0)),
    (F.relu(U[0]) * F.relu(U[1]), 2, 100, "auto", "nested", 1 / (2 * math.pi)),   # kinks: no series
    (sympy.cos(U[0] + U[1] + U[2]), 3, 10, "auto", "nested", math.exp(-1.5)),
    (sympy.cos(U[0] + U[1] + U[2]), 3, 100, "auto", "gh", math.exp(-1.5)),
    (sympy.cos(U[0] + U[1] + U[2] + U[3]), 4, 10, "auto", "gh", math.exp(-2.0)),
    (F.relu(U[0] + U[1] + U[2] + U[3]), 4, 10, "auto", "mc", 2 / math.sqrt(2 * math.pi)),
    (sympy.cos(U[0]), 1, 10, "mc", "mc", math.exp(-0.5)),
]


@pytest.mark.parametrize("F_,d,points,requested,expected,truth", CASES)
def test_first_applicable_rule_and_its_value(F_, d, points, requested, expected, truth):
    I_ = integral(F_, d)
    series_ok = expected == "series" or (d <= 2 and points >= I.SERIES_MIN_POINTS)
    method = I.choose_method(I_, {"series_ok": series_ok, "points": points}, requested)
    assert method == expected
    if method == "series":
        return  # the series runs on a layer's rows (Evaluator), tested in test_hermite.py
    mean, cov = np.zeros((1, d)), np.eye(d)[None]
    val, err = I.integrate(I_, mean, cov, np.empty((1, 0)), method, {"samples": 1 << 16, "seed": 0})
    tol = 5 * err[0] if method == "mc" else max(err[0], 1e-12) * 10
    assert abs(val[0] - truth) <= tol + 1e-12, (val, err, truth)


def test_every_label_is_ordered_and_closed_is_refused():
    assert {r.label for r in I.METHOD_RULES} <= set(_METHOD_ORDER)
    assert I.METHOD_RULES[-1].applies(None) is True     # the last rule always applies: Monte Carlo
    with pytest.raises(I.IntegrationError, match="has no closed form"):
        I.choose_method(integral(sympy.cos(U[0]), 1), {}, "closed")
