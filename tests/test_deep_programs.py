"""Depth grows with the program, not the Python stack (issue 18): the numeric layer's walks over
the quantity graph (methods behind an output) are iterative.  Truth: for relu with sw2 = 2 and no
bias the NNGP diagonal is preserved exactly, Sigma^{l+1}_ii = 2 E[relu(u)^2] = Sigma^l_ii, and the
off-diagonal follows the arc-cosine recursion written out in tests/mlp_truths.py."""
import numpy as np
import pytest

import tensorprog
from gaussian_truths import relu_relu, step_step
from mlp_truths import inline_data, mlp_program, mlp_recursion, on_pairs


def test_relu_chain_depth_2000_keeps_the_diagonal():
    L = 2000  # the recursive walk hit RecursionError from about L = 1000
    res = tensorprog.evaluate(f"""const L = {L}
data X = [[1, 0], [0.6, 0.8], [2, 0]]
matrix W[l] ~ N(0, 2/n) for l in 2..L
vector g[1][i] ~ N(0, dot(X[i], X[i']))
for l in 2..L: g[l][i] = W[l] @ relu(g[l-1][i])
out K[i, j] = 2 * mean(relu(g[L][i]) * relu(g[L][j]))
""")
    K = res["K"].value
    assert res["K"].method == "closed form"
    np.testing.assert_array_equal(np.diag(K), [1.0, 1.0, 4.0])
    X = np.array([[1, 0], [0.6, 0.8], [2, 0]])
    S = X @ X.T
    for _ in range(L - 1):
        S = on_pairs(lambda a, b, c: 2 * relu_relu(a, b, c), S)
    np.testing.assert_allclose(K, 2 * on_pairs(relu_relu, S), rtol=1e-12)


@pytest.mark.slow
def test_relu_mlp_nngp_ntk_depth_1000():
    X = np.array([[1.0, 0, 0], [0.6, 0.8, 0], [2, 0, 0], [-1, 0, 0]])
    L = 1000
    res = tensorprog.evaluate(mlp_program("relu", L, 2.0, 0.0, inline_data(X)))
    nngp, ntk = mlp_recursion(lambda S: (on_pairs(relu_relu, S), on_pairs(step_step, S)), X, L, 2.0, 0.0)
    # preserved exactly: the same floats as the first layer's variance (depth 2 makes the same value)
    first = tensorprog.evaluate(mlp_program("relu", 2, 2.0, 0.0, inline_data(X)))["NNGP"].value
    np.testing.assert_array_equal(np.diag(res["NNGP"].value), np.diag(first))
    np.testing.assert_allclose(np.diag(first), np.diag(2 * (X @ X.T) / 3), rtol=1e-15)
    np.testing.assert_allclose(res["NNGP"].value, nngp, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(res["NTK"].value, ntk, rtol=1e-9)


def test_long_sum_of_products_compiles_in_chunks():
    """An NTK over L layers is a sum of ~L products of quantities; Python's compiler recursed once
    per operand of the generated a + b + ... (RecursionError at L = 5000); sums longer than MAX_TERMS
    are compiled in chunks (here 1200 terms: 5 chunks).  Truth: numpy's sum."""
    import sympy

    from tensorprog.numeric.npfuncs import compile_numpy

    xs = sympy.symbols("x0:1201", real=True)
    fn = compile_numpy(sympy.Add(*[2 * xs[k] * xs[k + 1] for k in range(1200)]), xs)
    v = np.random.default_rng(0).standard_normal((1201, 3))
    np.testing.assert_allclose(fn(*v), 2 * np.sum(v[:-1] * v[1:], axis=0), rtol=1e-12)

