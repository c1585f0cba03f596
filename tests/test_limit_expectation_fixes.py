"""Expectation engine fixes: deltas times functions vanishing at their point, program names in errors."""
import re

import numpy as np
import pytest
from scipy import integrate

import tensorprog
from tensorprog.errors import TPError

# the limit's internal function names: Z/Q, a hex process tag, a 9-digit counter (limit/symbols.py)
INTERNAL_NAME = re.compile(r"[ZQ][0-9a-f]{8}[0-9]{9}")


def _gauss_mean(g):
    """E[g(x)] for x ~ N(0, 1) by adaptive quadrature (independent of the limit engine)."""
    val, err = integrate.quad(lambda x: g(x) * np.exp(-x * x / 2) / np.sqrt(2 * np.pi), -np.inf, np.inf)
    return val


def test_delta_times_vanishing_square_is_zero():
    # f(a) = step(a) a^2: f'(a) = delta(a) a^2 + 2 a step(a) and a^2 delta(a) = 0, so
    # E[f'(x)^2] = E[4 x^2 step(x)] = 4 * 1/2 = 2 (by hand).
    res = tensorprog.evaluate("fn f(a) = step(a) * a^2\nvector x ~ N(0, 1)\nout m = mean(f'(x)^2)\n")
    assert float(res["m"].value) == pytest.approx(2.0, rel=1e-12)


def test_shifted_delta_times_vanishing_factor():
    # f(a) = step(a - 1) (a - 1)^2: f'(a) = 2 (a - 1) step(a - 1) a.s.; E[f'(x)^2] by quadrature.
    res = tensorprog.evaluate("fn f(a) = step(a - 1) * (a - 1)^2\nvector x ~ N(0, 1)\nout m = mean(f'(x)^2)\n")
    truth = _gauss_mean(lambda x: 4 * (x - 1) ** 2 * (x > 1))
    assert float(res["m"].value) == pytest.approx(truth, rel=1e-8)


def test_delta_error_names_program_variables():
    # delta(x)^2 exp(x) has no value: the error must name x, not an internal atom id.
    with pytest.raises(TPError) as exc:
        tensorprog.evaluate("fn f(a) = step(a)\nvector x ~ N(0, 1)\nout m = mean(f'(x)^2 * exp(x))\n")
    msg = str(exc.value)
    assert "Dirac delta" in msg and "Z[x]" in msg
    assert not INTERNAL_NAME.search(msg)


def _product_family(n_axes):
    names = [f"a{k}" for k in range(n_axes)]
    return (f"data X = [[1.0], [0.5]]\nvector z[i] ~ N(0, dot(X[i], X[i']))\n"
            f"out T[{', '.join(names)}] = mean({' * '.join(f'z[{c}]' for c in names)})\n")


def test_index_cap_is_a_clear_error():
    # 13 axes: an odd product of centred Gaussians has mean 0 (Isserlis); 14 axes: a positioned error.
    assert "T = 0" in str(tensorprog.derive(_product_family(13)))
    with pytest.raises(TPError) as exc:
        tensorprog.derive(_product_family(14))
    msg = str(exc.value)
    assert ":3:" in msg and "spans 14 axes; at most 13 are supported" in msg


def _u_exp_mean(m, s):
    """E[u exp(-u^2)] for u ~ N(m, s), by completing the square (hand derivation):
    int u exp(-u^2) exp(-(u-m)^2/(2s)) du / sqrt(2 pi s) = m (1+2s)^(-3/2) exp(-m^2/(1+2s))."""
    return m / (1 + 2 * s) ** 1.5 * np.exp(-m * m / (1 + 2 * s))


def test_sum_of_independent_gaussians_is_one_variable():
    # b ~ N(0.5, 1) and z[i] ~ N(0, X_i^2) independent: b + z[i] ~ N(0.5, 1 + X_i^2), a closed form.
    src = """fn f(a) = a * exp(-a^2)
data X = [[1.0], [0.5]]
vector b ~ N(0.5, 1)
vector z[i] ~ N(0, dot(X[i], X[i']))
out m[i] = mean(f(b + z[i]))
out k[i, j] = mean(f(b + z[i]) * f(b + z[j]))
"""
    res = tensorprog.evaluate(src)
    assert res["m"].method == "closed form"
    np.testing.assert_allclose(res["m"].value, [_u_exp_mean(0.5, 2.0), _u_exp_mean(0.5, 1.25)], rtol=1e-12)
    # The pair is over the two correlated variables b + z[i], b + z[j] (not three): closed form too;
    # its diagonal is E[u^2 exp(-2u^2)], checked by 1-D quadrature.
    assert "numeric" not in res["k"].method and "quadrature" not in res["k"].method
    s = 2.0
    truth, _ = integrate.quad(lambda u: u * u * np.exp(-2 * u * u) * np.exp(-(u - 0.5) ** 2 / (2 * s))
                              / np.sqrt(2 * np.pi * s), -np.inf, np.inf, epsabs=1e-14)
    assert float(res["k"].value[0, 0]) == pytest.approx(truth, rel=1e-9)


@pytest.mark.parametrize("src", [
    "vector x ~ N(0, 1)\nscalar c = 0\nout s = mean(x^2) / c\n",
    "vector x ~ N(0, 1)\nvector y ~ N(0, 1)\nout s = 1 / (mean(x^2) - mean(y^2))\n",   # E x^2 = E y^2 = 1
])
def test_division_by_zero_in_the_limit_is_named_plainly(src):
    with pytest.raises(TPError) as err:
        tensorprog.derive(src)
    text = str(err.value)
    assert "<string>:3:9" in text and "infinite: a division by zero" in text
    assert "zoo" not in text and not INTERNAL_NAME.search(text)
