"""Placeholder symbols of the evaluator grow on demand (issue 10): the former fixed tuples of 4,096
(``_r``) and 512 (``_p``) symbols silently truncated a zip with longer lists of references."""
import sympy

from tensorprog.numeric import evaluate as E
from tensorprog.numeric import integrals as I


def test_reference_symbols_beyond_the_former_cap_are_distinct():
    syms = E._ref_symbols(5000)
    assert len(syms) == 5000 and len(set(syms)) == 5000
    assert syms[4999] == sympy.Symbol("_r4999", real=True)
    assert E._ref_symbols(3) == syms[:3]                # the same symbols every time


def test_integrand_parameters_beyond_512_compile_and_evaluate():
    # an integrand with 700 parameters: F(z; p) = z^2 * sum_k p_k, so E F = sum_k p_k for z ~ N(0, 1)
    params = tuple(I._P[:700])
    assert len(set(params)) == 700
    z = sympy.Symbol("z", real=True)
    fn = I.compile_numpy(z**2 * sympy.Add(*params), (z,) + params)
    import numpy as np
    nodes, weights = np.polynomial.hermite_e.hermegauss(8)
    values = np.arange(1.0, 701.0)
    got = float(np.sum(weights * fn(nodes, *values)) / np.sqrt(2 * np.pi))
    assert abs(got - values.sum()) < 1e-9 * values.sum()
