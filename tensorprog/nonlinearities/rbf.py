"""rbf(x) = exp(-x^2 / 2), the Gaussian bump: a smooth nonlinearity with a closed form.

rbf' = -x rbf(x).  For u ~ N(m, s):  E[rbf(u)] = exp(-m^2 / (2 (1 + s))) / sqrt(1 + s)
(complete the square: the product of the bump and the N(m, s) density integrates to the density
of N(0, 1 + s) at m, times sqrt(2 pi)).  For a centred pair (u, v) with covariance
C = [[a, c], [c, b]]:  E[rbf(u) rbf(v)] = det(I + C)^(-1/2) = 1 / sqrt((1 + a)(1 + b) - c^2)
(the same Gaussian integral in two dimensions).
"""
from __future__ import annotations

import numpy as np
import sympy
from sympy import S

from ..functions import _Coordinatewise
from . import Nonlinearity, register


class rbf(_Coordinatewise):
    """rbf(x) = exp(-x^2/2).  rbf' = -x rbf(x)."""

    nargs = 1
    _latex_name = r"\operatorname{rbf}"

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return S.One

    def fdiff(self, argindex=1):
        return -self.args[0] * self

    def _eval_evalf(self, prec):
        return sympy.exp(-self.args[0] ** 2 / 2).evalf(prec)


def _np_rbf(x):
    return np.exp(-0.5 * np.square(x))


register(Nonlinearity(
    "rbf", 1, rbf, "rbf", numpy=_np_rbf, numba=lambda x: f"_sp.exp(-0.5 * ({x}) * ({x}))",
    single=("exp(-m^2 / (2 (1 + s))) / sqrt(1 + s)",
            lambda m, s: sympy.exp(-m**2 / (2 * (1 + s))) / sympy.sqrt(1 + s)),
    pairs=(("rbf", "1 / sqrt((1 + a)(1 + b) - c^2)",
            lambda a, b, c: 1 / sympy.sqrt((1 + a) * (1 + b) - c**2)),),
    doc=("exp(-x^2 / 2)", "-x rbf(x)"), asymptotics=(0, -sympy.oo)))
