"""Depth 5000 and 10,000 (issue 18): checks too long for CI's budget (about 2 minutes on 2 cores),
run by hand: ``python -m pytest -q bench/check_deep.py``.  Times per layer: ``python bench/bench_deep.py``."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import tensorprog  # noqa: E402
from gaussian_truths import relu_relu, step_step  # noqa: E402
from mlp_truths import inline_data, mlp_program, mlp_recursion, on_pairs  # noqa: E402


def test_relu_mlp_nngp_ntk_depth_5000():
    """Depth 5000 (issue 18), derived through the templates of tensorprog/limit/templates.py (one
    derivation per layer structure, replayed by renaming).  Truth: the diagonal is preserved exactly
    (2 E[relu(u)^2] = Var u, so every layer's variance is the input's, the same floats as depth 2),
    and the recursion of tests/mlp_truths.py over the arc-cosine kernels."""
    X = np.array([[1.0, 0, 0], [0.6, 0.8, 0], [2, 0, 0], [-1, 0, 0]])
    L = 5000
    res = tensorprog.evaluate(mlp_program("relu", L, 2.0, 0.0, inline_data(X)))
    first = tensorprog.evaluate(mlp_program("relu", 2, 2.0, 0.0, inline_data(X)))["NNGP"].value
    np.testing.assert_array_equal(np.diag(res["NNGP"].value), np.diag(first))
    np.testing.assert_allclose(np.diag(first), np.diag(2 * (X @ X.T) / 3), rtol=1e-15)
    nngp, ntk = mlp_recursion(lambda S: (on_pairs(relu_relu, S), on_pairs(step_step, S)), X, L, 2.0, 0.0)
    np.testing.assert_allclose(res["NNGP"].value, nngp, rtol=1e-12, atol=1e-13)
    # deep in the network the correlations are within ~1e-8 of 1, where acos(rho) (the step kernel)
    # turns a rounding of rho into a relative error ~1e-16 / sqrt(1 - rho) of each of the L factors
    np.testing.assert_allclose(res["NTK"].value, ntk, rtol=1e-7)
    # with sw2 = 2, sb2 = 0 every layer's variance is the input's, v, and sw2 E[step(u)^2] = 1: the NTK
    # diagonal is its L + 1 terms, each v
    np.testing.assert_allclose(np.diag(res["NTK"].value), (L + 1) * np.diag(2 * (X @ X.T) / 3), rtol=1e-12)


def test_relu_chain_depth_10000_parse_derive_evaluate():
    """Every walk whose depth grows with the program (parse, derive, the plan's schedule and the
    method labels, code generation) at depth 10,000 (issue 18).  Truth: the diagonal is preserved
    exactly; the off-diagonal follows the arc-cosine recursion; at this depth the correlation of
    any two inputs of the same sign has converged to 1 (|K_ij - sqrt(K_ii K_jj)| < 1e-6)."""
    L = 10000
    res = tensorprog.evaluate(f"""const L = {L}
data X = [[1, 0], [0.6, 0.8], [-2, 0]]
matrix W[l] ~ N(0, 2/n) for l in 2..L
vector g[1][i] ~ N(0, dot(X[i], X[i']))
for l in 2..L: g[l][i] = W[l] @ relu(g[l-1][i])
out K[i, j] = 2 * mean(relu(g[L][i]) * relu(g[L][j]))
""")
    K = res["K"].value
    np.testing.assert_array_equal(np.diag(K), [1.0, 1.0, 4.0])
    X = np.array([[1, 0], [0.6, 0.8], [-2, 0]])
    S = X @ X.T
    for _ in range(L - 1):
        S = on_pairs(lambda a, b, c: 2 * relu_relu(a, b, c), S)
    np.testing.assert_allclose(K, 2 * on_pairs(relu_relu, S), rtol=1e-10)
    assert abs(K[0, 1] - 1.0) < 1e-6
