"""The builtin nonlinearities, one registry entry each (docs-table order).

The sympy classes with their derivatives live in :mod:`tensorprog.functions`; here each is tied to
its numpy and numba implementations and to what the limit pass knows about it.
"""
from __future__ import annotations

import numpy as np
import sympy

from .. import functions as F
from . import Nonlinearity, register


def _np_relu(x):
    return np.maximum(x, 0.0)


def _np_erf(x):
    from scipy.special import erf

    return erf(x)


def _fn_step(x):
    return f"(1.0 if ({x}) > 0.0 else (0.0 if ({x}) < 0.0 else 0.5))"


def _fn_sign(x):
    return f"(1.0 if ({x}) > 0.0 else (-1.0 if ({x}) < 0.0 else 0.0))"


_INF = sympy.oo      # exp grows faster than any power
_USUAL = ("the usual functions", "the usual derivatives")

for _entry in (
    Nonlinearity("relu", 1, F.relu, "relu", numpy=_np_relu, numba=lambda x: f"max({x}, 0.0)",
                 kinks=True, cheap=True, closed_form=True, stein=True, doc=("max(x, 0)", "`step`"), asymptotics=(1, 1)),
    Nonlinearity("step", 1, F.step, "step", numpy=F._np_step, numba=_fn_step, kinks=True, cheap=True,
                 closed_form=True, stein=True, doc=("1 for x > 0, 1/2 at 0, 0 for x < 0", "Dirac delta"),
                 asymptotics=(0, 0)),
    Nonlinearity("sign", 1, sympy.sign, "sign", data_numpy=np.sign, numba=_fn_sign, kinks=True, cheap=True,
                 closed_form=True, stein=True, doc=("-1, 0, 1", "Dirac delta (times 2)"), asymptotics=(0, 0)),
    Nonlinearity("abs", 1, sympy.Abs, "Abs", data_numpy=np.abs, numba=lambda x: f"abs({x})", kinks=True,
                 cheap=True, closed_form=True, stein=True, doc=("abs(x)", "`sign`"), asymptotics=(1, 1)),
    Nonlinearity("tanh", 1, F.tanh, "tanh", numpy=np.tanh, numba="_sp.tanh", doc=_USUAL, asymptotics=(1, 0)),
    Nonlinearity("erf", 1, sympy.erf, "erf", numpy=_np_erf, numba="_sp.erf", closed_form=True, stein=True,
                 doc=_USUAL, asymptotics=(1, 0)),
    Nonlinearity("sin", 1, sympy.sin, "sin", data_numpy=np.sin, numba="_sp.sin", closed_form=True, stein=True,
                 doc=_USUAL, asymptotics=(1, 0)),
    Nonlinearity("cos", 1, sympy.cos, "cos", data_numpy=np.cos, numba="_sp.cos", closed_form=True, stein=True,
                 doc=_USUAL, asymptotics=(0, 0)),
    Nonlinearity("exp", 1, sympy.exp, "exp", data_numpy=np.exp, numba="_sp.exp", closed_form=True, doc=_USUAL,
                 asymptotics=(0, _INF)),
    Nonlinearity("log", 1, sympy.log, "log", data_numpy=np.log, numba="_sp.log", doc=_USUAL),
    # sqrt(x) is the sympy power x^(1/2): printed by the power rules, no head of its own.
    Nonlinearity("sqrt", 1, sympy.sqrt, None, data_numpy=np.sqrt, doc=_USUAL),
    Nonlinearity("sigmoid", 1, F.sigmoid, "sigmoid", numpy=F._np_sigmoid, numba="_sp.sigmoid",
                 doc=("1 / (1 + exp(-x))", "sigmoid (1 - sigmoid)"), asymptotics=(0, 0)),
    Nonlinearity("Phi", 1, F.Phi, "Phi", numpy=F._np_Phi, numba="_sp.ndtr", closed_form=True, stein=True,
                 doc=("the standard normal CDF", "the standard normal density"), asymptotics=(0, 0)),
    Nonlinearity("gelu", 1, F.gelu, "gelu", numpy=F._np_gelu, numba=lambda x: f"(({x}) * _sp.ndtr({x}))",
                 closed_form=True, stein=True, doc=("x Phi(x)", "Phi(x) + x Phi'(x)"), asymptotics=(1, 1)),
    Nonlinearity("silu", 1, F.silu, "silu", numpy=F._np_silu, numba=lambda x: f"(({x}) * _sp.sigmoid({x}))",
                 doc=("x sigmoid(x)", "sigmoid + x sigmoid (1 - sigmoid)"), asymptotics=(1, 1)),
    Nonlinearity("softplus", 1, F.softplus, "softplus", numpy=F._np_softplus, numba="_sp.softplus",
                 doc=("log(1 + exp(x))", "`sigmoid`"), asymptotics=(0, 1)),
    # identity and leaky_relu build expressions of other functions: nothing of their own to compute.
    Nonlinearity("identity", 1, F._identity, None, doc=("x", "1")),
    Nonlinearity("leaky_relu", 2, F._leaky_relu, None,
                 doc=("a x + (1 - a) relu(x)", "a + (1 - a) step(x)")),
):
    register(_entry)

# Builtins with a module of their own (one file each; see docs/contributing.md).
from . import mish, rbf  # noqa: E402,F401
