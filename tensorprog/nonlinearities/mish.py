"""mish(x) = x tanh(softplus(x)) (Misra 2019): a smooth nonlinearity with no closed form.

mish' = tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2), sp = softplus(x).  Expectations with it are
computed by quadrature or Monte Carlo.
"""
from __future__ import annotations

import numpy as np
import sympy
from sympy import S

from ..functions import _Coordinatewise, _np_softplus, sigmoid, softplus, tanh
from . import Nonlinearity, register


class mish(_Coordinatewise):
    """mish(x) = x tanh(softplus(x)).  mish' = tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2)."""

    nargs = 1
    _latex_name = r"\operatorname{mish}"

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return S.Zero

    def fdiff(self, argindex=1):
        x = self.args[0]
        t = tanh(softplus(x))
        return t + x * sigmoid(x) * (1 - t**2)

    def _eval_evalf(self, prec):
        x = self.args[0]
        return (x * sympy.tanh(sympy.log(1 + sympy.exp(x)))).evalf(prec)


def _np_mish(x):
    return x * np.tanh(_np_softplus(x))


register(Nonlinearity("mish", 1, mish, "mish", numpy=_np_mish,
                      numba=lambda x: f"(({x}) * _sp.tanh(_sp.softplus({x})))",
                      doc=("x tanh(softplus(x))", "tanh(sp) + x sigmoid (1 - tanh(sp)^2)"), asymptotics=(1, 1)))
