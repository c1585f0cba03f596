"""Vectorised numpy evaluation of limit expressions (the reference path of the numeric backend).

``compile_numpy(expr, symbols)`` returns a function of numpy arrays (one per symbol) that
evaluates ``expr`` elementwise with broadcasting.  It is built with ``sympy.lambdify`` from
expressions *tensorprog* constructed (never from user text), with our functions mapped to
numpy/scipy implementations that are safe at degenerate covariances.
"""
from __future__ import annotations

import functools

import numpy as np
import sympy

from .. import functions as F


def _safe_corr(c, a, b):
    c, a, b = np.broadcast_arrays(np.asarray(c, float), np.asarray(a, float), np.asarray(b, float))
    ab = a * b
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(c / np.sqrt(np.where(ab > 0, ab, 1.0)), -1.0, 1.0)
    # Within a few ulp of +-1: identical (antipodal) inputs; see codegen._safe_corr.
    r = np.where(r > 1.0 - 1e-15, 1.0, np.where(r < -1.0 + 1e-15, -1.0, r))
    return np.where(ab > 0, r, 0.0)


def _zscore(m, s):
    m, s = np.broadcast_arrays(np.asarray(m, float), np.asarray(s, float))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = m / np.sqrt(np.where(s > 0, s, 1.0))
    return np.where(s > 0, z, np.where(m == 0, 0.0, np.sign(m) * np.inf))


def _scipy():
    """scipy.special, imported on first use (it costs ~0.2 s at start-up)."""
    from scipy import special

    return special


def _dirac(*args):
    raise ValueError("a Dirac delta cannot be evaluated pointwise")


MODULE = {
    **F.NUMPY_IMPL,
    "erf": lambda x: _scipy().erf(x), "erfc": lambda x: _scipy().erfc(x), "SafeCorr": _safe_corr, "Zscore": _zscore, "DiracDelta": _dirac,
    "acos": np.arccos, "asin": np.arcsin, "atan": np.arctan,
}


def _float_constants(expr):
    """``expr`` with its composite numeric parts (``sqrt(336026280891018387252722405715309065610)``,
    ``3**(1/3)/7``) replaced by float64 constants: lambdify would hand numpy the exact Python integer
    inside, and numpy has no ``sqrt`` of an integer beyond 64 bits."""
    def as_float(e):
        f = e.evalf(17)
        return f if f.is_Float else e
    return expr.replace(lambda e: e.is_number and not e.is_Atom and e.is_real, as_float)


# A sum of more terms is compiled in chunks: Python's compiler recurses once per operand of
# a + b + c + ... (an NTK over 5000 layers is a sum of 5000 products: RecursionError).
MAX_TERMS = 256


@functools.lru_cache(maxsize=4096)
def compile_numpy(expr, symbols):
    """A numpy function of ``symbols`` (a tuple) computing ``expr``."""
    expr = sympy.sympify(expr)
    if expr.is_Add and len(expr.args) > MAX_TERMS:
        terms = expr.args
        parts = []
        for a in range(0, len(terms), MAX_TERMS):
            chunk = sympy.Add(*terms[a:a + MAX_TERMS])
            free = chunk.free_symbols      # once per chunk, not once per symbol
            used = [k for k, s in enumerate(symbols) if s in free]
            parts.append((compile_numpy(chunk, tuple(symbols[k] for k in used)), used))

        def total(*args):
            out = 0.0
            for fn, used in parts:
                out = out + fn(*[args[k] for k in used])
            return out
        return total
    return sympy.lambdify(symbols, _float_constants(expr), modules=[MODULE, F.NUMPY_IMPL, "numpy"], cse=True)
