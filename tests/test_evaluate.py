"""tensorprog.evaluate against independent truths written here (issue 4).

NNGP and NTK of MLPs (relu, erf, tanh, gelu; biases; depth up to 5) at identical, antipodal and
zero-norm inputs, against the layer recursion written out with closed forms (1e-10) or with an
independent nested Gauss-Legendre integration (1e-8); the muP one-step example against an
independent 3-d Gauss-Hermite quadrature of its limit formula.
"""
import math

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import erf as sp_erf, ndtr

import tensorprog
from gaussian_truths import erf_erf, erfp_erfp, gelu_gelu, integrate2, relu_relu, step_step
from mlp_truths import inline_data, mlp_program, mlp_recursion, on_pairs

# identical (0, 1), antipodal (0, 2), zero norm (3), generic (4)
X = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.6, 0.8, 0.0]])


def program(phi, L, sw2, sb2, points=X):
    return mlp_program(phi, L, sw2, sb2, inline_data(points))


tanh = np.tanh


def dtanh(x):
    return 1 - np.tanh(x) ** 2


def gelu(x):
    return x * ndtr(x)


def dgelu(x):
    return ndtr(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)


KERNELS = {
    "relu": (relu_relu, step_step),
    "erf": (erf_erf, erfp_erfp),
    "tanh": (lambda a, b, c: integrate2(tanh, tanh, a, b, c), lambda a, b, c: integrate2(dtanh, dtanh, a, b, c)),
    "gelu": (gelu_gelu, lambda a, b, c: integrate2(dgelu, dgelu, a, b, c)),
}


def hand_nngp_ntk(phi, L, sw2, sb2, points=X):
    """The layer recursion (mlp_truths.mlp_recursion) with the kernels of KERNELS entry by entry."""
    k, kd = KERNELS[phi]
    return mlp_recursion(lambda S: (on_pairs(k, S), on_pairs(kd, S)), points, L, sw2, sb2)


CASES = [("relu", 3, 2.0, 0.1), ("relu", 5, 2.0, 0.0), ("erf", 4, 1.5, 0.2), ("erf", 2, 3.0, 0.0),
         ("tanh", 3, 1.5, 0.1), ("tanh", 5, 2.0, 0.0), ("gelu", 3, 2.0, 0.05)]


@pytest.mark.parametrize("phi,L,sw2,sb2", CASES)
def test_mlp_nngp_and_ntk_against_hand_recursion(phi, L, sw2, sb2):
    res = tensorprog.evaluate(program(phi, L, sw2, sb2))
    nngp, ntk = hand_nngp_ntk(phi, L, sw2, sb2)
    closed = phi in ("relu", "erf")
    tol = 1e-10 if closed else 1e-8
    for name, truth in (("NNGP", nngp), ("NTK", ntk)):
        out = res[name]
        np.testing.assert_allclose(out.value, truth, rtol=tol, atol=tol, err_msg=name)
        if closed:
            assert out.method == "closed form" and np.all(out.error == 0)
        else:
            assert np.all(out.error < 1e-6)
            assert np.all(np.abs(out.value - truth) <= out.error + 1e-12)  # the estimate bounds the error


def test_relu_large_variance_sigma_w_16():
    """sigma_w = 16 (sw2 = 256): entries grow like 128^L; relative accuracy stays at rounding level."""
    res = tensorprog.evaluate(program("relu", 4, 256.0, 0.0))
    nngp, ntk = hand_nngp_ntk("relu", 4, 256.0, 0.0)
    np.testing.assert_allclose(res["NNGP"].value, nngp, rtol=1e-12, atol=0)
    np.testing.assert_allclose(res["NTK"].value, ntk, rtol=1e-12, atol=0)


def test_tanh_large_variance_is_finite_and_accurate():
    res = tensorprog.evaluate(program("tanh", 2, 256.0, 0.0))
    nngp, _ = hand_nngp_ntk("tanh", 2, 256.0, 0.0)
    np.testing.assert_allclose(res["NNGP"].value, nngp, rtol=1e-7, atol=1e-7)


# ------------------------------------------------------------------ muP one step

def mup_hand(deg=70, zdot=True):
    """f1 of examples/mup_one_step.tp, from docs/theory.md (one step of muP training) (eta = y0 = 1: chi = -1).

    h1' = h1_1 + c tanh'(h1_0) Zb with Zb ~ N(0, E[tanh'(h2)^2]), Var h2 = E[tanh(h1_0)^2];
    Z^{W x1'} = Zhat + D v tanh'(h2) with the Zdot coefficient D = c E[tanh'(h1') tanh'(h1_0)];
    h2' = Z^{W x1'} + theta v tanh'(h2), theta = E[x1 x1']; f1 = E[v tanh(h2')] + E[tanh(h2) tanh(h2')].
    """
    X2 = np.array([[1, 0.5, -0.5], [0.2, 1, 0.4]])
    C = X2 @ X2.T / 3
    c = C[0, 1]
    x, w = hermegauss(deg)
    w = w / math.sqrt(2 * math.pi)
    var_h2 = np.sum(w * np.tanh(math.sqrt(C[0, 0]) * x) ** 2)
    var_zb = np.sum(w * dtanh(math.sqrt(var_h2) * x) ** 2)
    g0, g1, g2 = np.meshgrid(x, x, x, indexing="ij")
    w3 = np.einsum("i,j,k->ijk", w, w, w)
    L = np.linalg.cholesky(C)
    h10 = L[0, 0] * g0
    h11 = L[1, 0] * g0 + L[1, 1] * g1
    h1p = h11 + c * dtanh(h10) * math.sqrt(var_zb) * g2
    theta = np.sum(w3 * np.tanh(h10) * np.tanh(h1p))
    D = c * np.sum(w3 * dtanh(h1p) * dtanh(h10)) if zdot else 0.0
    M = np.linalg.cholesky(np.array([[var_h2, theta], [theta, np.sum(w3 * np.tanh(h1p) ** 2)]]))
    zh2, zhat = M[0, 0] * g0, M[1, 0] * g0 + M[1, 1] * g1
    h2p = zhat + (D + theta) * g2 * dtanh(zh2)
    return float(np.sum(w3 * g2 * np.tanh(h2p)) + np.sum(w3 * np.tanh(zh2) * np.tanh(h2p)))


def test_mup_one_step_against_independent_quadrature():
    truth = mup_hand()
    assert abs(truth - mup_hand(50)) < 1e-10  # the truth is converged
    res = tensorprog.evaluate("examples/mup_one_step.tp")
    f1 = res["f1"]
    assert abs(float(f1.value) - truth) <= max(float(f1.error), 1e-9)
    assert float(f1.error) < 1e-5
    # Without the Zdot term (gradient independence after the step) the value is far off.
    wrong = mup_hand(zdot=False)
    assert abs(wrong - truth) > 1e4 * float(f1.error)
    assert float(res["f0"].value) == 0.0


# ------------------------------------------------------------------ errors and memory

@pytest.mark.parametrize("src,line", [
    # symbolically: log(1 - 2) = i pi, found by the limit pass
    ("vector x ~ N(0, 1)\ns = mean(x * x)\nout y = log(s - 2)\n", 3),
    # numerically: a family whose first member gives log(1 - 2)
    ("data X = [[1, 0], [0, 3]]\nvector x[i] ~ N(0, dot(X[i], X[i']))\nout y[i] = log(mean(x[i] * x[i]) - 2)\n", 3),
])
def test_nan_stops_with_the_variable_and_line(src, line):
    with pytest.raises(tensorprog.TPError) as e:
        tensorprog.evaluate(src)
    msg = e.value.report()
    assert f"<string>:{line}:" in msg and "finite" in msg and "limit of y" in msg


def test_memory_is_estimated_before_allocating():
    from tensorprog.numeric.evaluate import Evaluator

    limit = tensorprog.derive(program("relu", 2, 2.0, 0.1))
    with pytest.raises(tensorprog.TPError, match="needs about .* of memory"):
        Evaluator(limit).check_memory(limit=1000)


def test_results_save_npz_and_json(tmp_path):
    res = tensorprog.evaluate("examples/mlp_nngp.tp")
    res.save(tmp_path / "r.npz")
    data = np.load(tmp_path / "r.npz")
    np.testing.assert_array_equal(data["K"], res["K"].value)
    res.save(tmp_path / "r.json")
    import json

    loaded = json.loads((tmp_path / "r.json").read_text())
    assert np.allclose(loaded["outputs"]["K"]["value"], res["K"].value)


def test_erf_helper_matches_scipy():
    # guard on the test's own closed form against scipy (the truths above rely on it)
    a, b, c = 0.7, 1.3, 0.4
    num = integrate2(sp_erf, sp_erf, a, b, c)
    assert abs(num - erf_erf(a, b, c)) < 1e-12


# ------------------------------------------------------------------ Monte Carlo

MC_SOURCE = """
vector x, y, z ~ N([0, 0.5, 0], [[1, 0.3, 0], [0.3, 1, -0.2], [0, -0.2, 0.5]])
out m = mean(tanh(x + y) * tanh(y) * sin(x - y + z))
"""


def test_monte_carlo_within_four_standard_errors_of_quadrature():
    quad = tensorprog.evaluate(MC_SOURCE, method="quad")["m"]
    assert quad.method == "quadrature" and float(quad.error) < 1e-7
    for seed in (0, 1):
        mc = tensorprog.evaluate(MC_SOURCE, method="mc", samples=1 << 18, seed=seed)["m"]
        assert mc.method == "Monte Carlo" and 0 < float(mc.error) < 5e-3
        assert abs(float(mc.value) - float(quad.value)) < 4 * float(mc.error)


def test_monte_carlo_is_identical_with_one_and_two_threads(tmp_path):
    import subprocess
    import sys

    (tmp_path / "p.tp").write_text(MC_SOURCE)
    code = ("import sys, tensorprog; r = tensorprog.evaluate(sys.argv[1], method='mc', samples=1 << 16, seed=7)"
            "['m']; print(repr(float(r.value)), repr(float(r.error)))")
    outs = []
    for threads in ("1", "2"):
        env = dict(__import__("os").environ, NUMBA_NUM_THREADS=threads)
        outs.append(subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.tp")], env=env,
                                   capture_output=True, text=True, check=True).stdout)
    assert outs[0] == outs[1]


def test_generated_kernels_match_the_numpy_path_on_a_large_grid():
    """300 inputs (90,000 pairs) take the generated-kernel path (fused groups run tile by tile);
    the reference numpy path and the hand recursion must agree with it."""
    from tensorprog.numeric.evaluate import Evaluator

    rng = np.random.default_rng(3)
    points = rng.standard_normal((300, 3))
    points[1], points[2], points[3] = points[0], -points[0], 0.0
    limit = tensorprog.derive(program("relu", 4, 2.0, 0.1, points=points))
    fast = Evaluator(limit).run()
    slow = Evaluator(limit, backend="numpy").run()
    nngp, ntk = hand_nngp_ntk("relu", 4, 2.0, 0.1, points=points)
    for name, truth in (("NNGP", nngp), ("NTK", ntk)):
        np.testing.assert_allclose(fast[name].value, slow[name].value, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fast[name].value, truth, rtol=1e-10, atol=1e-10)


def test_tanh_on_a_large_grid_takes_the_hermite_diagonal_and_matches_the_hand_recursion():
    """70 inputs: the diagonals E[tanh(u_i)^2] come from the same Hermite rows as the pairs (no
    quadrature at all).  The kernel recursion of a subset of inputs only involves that subset, so
    the block of the first five inputs (identical, antipodal, zero norm) is checked against the
    hand recursion with independent nested Gauss-Legendre integration."""
    rng = np.random.default_rng(5)
    points = np.vstack([X, rng.standard_normal((65, 3))])
    res = tensorprog.evaluate(program("tanh", 3, 1.5, 0.1, points=points))
    nngp, ntk = hand_nngp_ntk("tanh", 3, 1.5, 0.1)
    assert res["NNGP"].method == "Hermite series"
    np.testing.assert_allclose(res["NNGP"].value[:5, :5], nngp, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res["NTK"].value[:5, :5], ntk, rtol=0, atol=1e-9)
    assert np.all(res["NTK"].error[:5, :5] >= np.abs(res["NTK"].value[:5, :5] - ntk) - 1e-12)


def test_nan_inside_a_tiled_recursion_names_its_variable():
    """On a grid of 240 x 240 pairs the closed-form layers run tile by tile and keep intermediate
    quantities in scratch rows; a NaN born there (log of a negative kernel entry at layer 2) must
    still be reported as that variable, not as the output it poisons."""
    rng = np.random.default_rng(0)
    rows = ", ".join("[" + ", ".join(f"{v:.6f}" for v in r) + "]" for r in rng.standard_normal((240, 3)))
    src = f"""data X = [{rows}]
matrix W[l] ~ N(0, 2/n) for l in 2..4
vector g[1][i] ~ N(0, dot(X[i], X[i']) / dim(X))
for l in 2..4: g[l][i] = W[l] @ relu(g[l-1][i])
s[i, j] = log(mean(relu(g[2][i]) * relu(g[2][j])) - 0.3)
t[i, j] = exp(s[i, j]) + mean(relu(g[4][i]) * relu(g[4][j]))
out K[i, j] = 2 * t[i, j]
"""
    with pytest.raises(tensorprog.TPError) as e:
        tensorprog.evaluate(src)
    msg = e.value.report()
    assert "<string>:5:" in msg and "limit of s" in msg and "not finite" in msg


def test_three_axis_family_in_one_tiled_pass_matches_the_hand_formula():
    """A 40 x 40 x 40 output (64,000 points) runs as one tiled segment whose column-only values (the
    k-th variance and its square root) are computed once per column, not once per (i, j) row.
    Truth: K1 = <x, x'>/3 + 0.1, K2 = 2 E[relu relu](K1) (one matmul), then
    T[i, j, k] = E[relu relu](K2)_ij E[relu relu](K2)_jk + sqrt(E[relu relu](K2)_kk + 1)."""
    rng = np.random.default_rng(1)
    pts = np.round(rng.standard_normal((40, 3)), 5)
    rows = ", ".join("[" + ", ".join(repr(float(v)) for v in r) + "]" for r in pts)
    src = f"""data X = [{rows}]
matrix W ~ N(0, 2/n)
vector g[i] ~ N(0, dot(X[i], X[i']) / dim(X) + 0.1)
h[i] = W @ relu(g[i])
out T[i, j, k] = mean(relu(h[i]) * relu(h[j])) * mean(relu(h[j]) * relu(h[k])) + sqrt(mean(relu(h[k]) * relu(h[k])) + 1)
"""
    from tensorprog.numeric.plan import execution_plan
    from tensorprog.numeric.tiled import Segment

    limit = tensorprog.derive(src)
    assert any(isinstance(s, Segment) for s in execution_plan(limit, 50_000).steps)
    got = tensorprog.evaluate(limit)["T"].value
    K1 = pts @ pts.T / 3 + 0.1
    n = len(pts)
    K2 = np.array([[2 * relu_relu(K1[p, p], K1[q, q], K1[p, q]) for q in range(n)] for p in range(n)])
    E = np.array([[relu_relu(K2[p, p], K2[q, q], K2[p, q]) for q in range(n)] for p in range(n)])
    truth = E[:, :, None] * E[None, :, :] + np.sqrt(np.diag(E) + 1)[None, None, :]
    np.testing.assert_allclose(got, truth, rtol=1e-12, atol=1e-12)
