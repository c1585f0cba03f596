"""`param` + `ntk(...)` + `grad(...)`: the compiler-written backward pass and NTK (docs/ntk.md).

Truths: the hand-written programs (examples/mlp_ntk.tp, mlp_relu.tp, rnn_ntk.tp, tests/mlp_truths.py),
the MLP layer recursion in closed form (mlp_truths.mlp_recursion), a hand derivation through Moments
written below, and a numpy network with its own hand-written backprop (the W^T W case).
"""
import re
from pathlib import Path

import numpy as np
import pytest

import tensorprog
from tensorprog.cli import main as tpc_main
from gaussian_truths import erf_erf, erfp_erfp, relu_relu, step_step
from mlp_truths import inline_data, mlp_program, mlp_recursion, ntk_mlp_program as generated_mlp, on_pairs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
POINTS = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [2.0, 0.0, 0.0], [-1.0, 0.5, 0.3]])


def value(program, name):
    return tensorprog.evaluate(tensorprog.parse(program))[name].value


def rel(a, b):
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))


@pytest.mark.parametrize("short,hand,names", [
    ("ntk_mlp.tp", "mlp_ntk.tp", [("NTK", "NTK"), ("NNGP", "NNGP")]),
    ("ntk_mlp_sp.tp", "mlp_relu.tp", [("NTK_SP", "NTK_SP")]),      # the 1/n terms vanish in the limit
    ("ntk_rnn.tp", "rnn_ntk.tp", [("NTK_last", "NTK_last"), ("NTK_pool", "NTK_pool")]),
    ("ntk_layernorm.tp", "layernorm.tp", [("K", "K")]),
    ("ntk_gap.tp", "ntk_gap.tp", [("NTK", "NTK_hand")]),          # its hand-written NTK beside it
])
def test_short_examples_equal_the_hand_written_ones(short, hand, names):
    """examples/ntk_*.tp (forward pass + ntk(...)) against the examples whose NTK is written by hand:
    mlp_ntk.tp (NTK parametrization), mlp_relu.tp (NTK_SP: standard parametrization with its 1/n
    terms written out), rnn_ntk.tp (W, U, b shared over time: double sums over steps)."""
    a = tensorprog.evaluate(tensorprog.parse(EXAMPLES / short))
    b = tensorprog.evaluate(tensorprog.parse(EXAMPLES / hand))
    for x, y in names:
        assert rel(a[x].value, b[y].value) < 1e-12, x


def test_kernel_regime_backward_corrections_are_derived_zero():
    """Gradient independence derived, not assumed: every Zdot of the generated backward passes is 0."""
    for name in ("ntk_mlp.tp", "ntk_rnn.tp", "ntk_layernorm.tp"):
        lim = tensorprog.derive(tensorprog.parse(EXAMPLES / name))
        assert lim.zdot and not lim.nonzero_zdot(), name


def test_mlp_relu_ntk_parametrization():
    """examples/mlp_relu.tp's NTK (NTK parametrization, sb2 = 0.05) from its forward network with ntk(...)
    (its NTK_SP is examples/ntk_mlp_sp.tp's, above)."""
    hand = (EXAMPLES / "mlp_relu.tp").read_text()
    data = re.search(r"^data X = (.*)$", hand, flags=re.M).group(1)
    assert rel(value(generated_mlp("relu", 3, 2.0, 0.05, data), "NTK"), value(hand, "NTK")) < 1e-12


@pytest.mark.parametrize("phi,kernels", [
    ("relu", lambda S: (on_pairs(relu_relu, S), on_pairs(step_step, S))),
    ("erf", lambda S: (on_pairs(erf_erf, S), on_pairs(erfp_erfp, S))),
])
@pytest.mark.parametrize("biases", [True, False])
def test_generated_equals_the_layer_recursion(phi, kernels, biases):
    L, sw2, sb2 = 4, 1.7, (0.2 if biases else 0.0)
    _, ntk = mlp_recursion(kernels, POINTS, L, sw2, sb2)
    got = value(generated_mlp(phi, L, sw2, sb2, inline_data(POINTS), biases), "NTK")
    assert rel(got, ntk) < 1e-12


def test_tanh_generated_equals_hand_written():
    L, sw2, sb2 = 3, 1.5, 0.1
    hand = mlp_program("tanh", L, sw2, sb2, inline_data(POINTS))
    got = value(generated_mlp("tanh", L, sw2, sb2, inline_data(POINTS)), "NTK")
    assert rel(got, value(hand, "NTK")) < 1e-12


def test_gradient_through_moments_matches_hand_derivation():
    """f = mean(relu(g)) / sqrt(mean(g^2)), g[i] ~ N(0, K): by hand, with s = K_ii = sigma_i^2,
    gbar = n df/dg = step(g)/sigma - E[relu(g)] g / sigma^3 = step(g)/sigma - g/(sqrt(2 pi) sigma^2), so
    ntk = K_ij E[gbar_i gbar_j] = K_ij ((pi - acos rho)/(2 pi sigma_i sigma_j) - K_ij/(2 pi sigma_i^2 sigma_j^2))
    (E[step(g_i) g_j] = K_ij/(sqrt(2 pi) sigma_i))."""
    K = POINTS @ POINTS.T / 3 + 0.3
    prog = f"""
data X = {inline_data(POINTS)}
param vector g[i] ~ N(0, dot(X[i], X[i']) / dim(X) + 0.3)
f[i] = mean(relu(g[i])) / sqrt(mean(g[i]^2))
out K[i, j] = ntk(f[i], f[j])
"""
    s = np.sqrt(np.diag(K))
    rho = np.clip(K / np.outer(s, s), -1, 1)
    truth = K * ((np.pi - np.arccos(rho)) / (2 * np.pi * np.outer(s, s)) - K / (2 * np.pi * np.outer(s, s) ** 2))
    assert rel(value(prog, "K"), truth) < 1e-12


WIDE = """
const sw2 = 2.0, sv2 = 1.5, sw2r = 3.0
data X = [[1, 0, 0], [0.6, 0.8, 0], [2, 0, 0]]
width m = 2*n
param matrix A : (m, n) ~ N(0, sw2/n)
param matrix B : (n, m) ~ N(0, sw2/m)
param vector g1[i] ~ N(0, dot(X[i], X[i']) / dim(X) + 0.1)
param vector v ~ N(0, sv2)
param vector w : m ~ N(0, sw2r)
h[i] = A @ relu(g1[i])
g2[i] = B @ relu(h[i])
f[i] = mean(v * relu(g2[i]))
f2[i] = mean(w * relu(h[i]))
out NTK[i, j] = ntk(f[i], f[j])
out NTK2[i, j] = ntk(f2[i], f2[j])
dg2[i] = v * relu'(g2[i])
dh[i] = relu'(h[i]) * (B.T @ dg2[i])
dg1[i] = relu'(g1[i]) * (A.T @ dh[i])
dh2[i] = w * relu'(h[i]) / 2
dg12[i] = relu'(g1[i]) * (A.T @ dh2[i])
out HAND[i, j] = (sv2 * mean(relu(g2[i]) * relu(g2[j])) + sw2 * mean(dg2[i] * dg2[j]) * mean(relu(h[i]) * relu(h[j]))
    + 2 * sw2 * mean(dh[i] * dh[j]) * mean(relu(g1[i]) * relu(g1[j]))
    + mean(dg1[i] * dg1[j]) * (dot(X[i], X[j]) / dim(X) + 0.1))
out HAND2[i, j] = (sw2r / 2 * mean(relu(h[i]) * relu(h[j])) + 2 * sw2 * mean(dh2[i] * dh2[j]) * mean(relu(g1[i]) * relu(g1[j]))
    + mean(dg12[i] * dg12[j]) * (dot(X[i], X[j]) / dim(X) + 0.1))
"""


def test_vectors_of_other_widths():
    """A hidden layer of width m = 2n. By hand, with F = sqrt(n) f and each matrix sqrt(var) theta:
    A (m x n, var sw2/n): sum (dF/dtheta)^2 = (sw2/n) n |hbar/n|^2 |x|^2 = 2 sw2 E[hbar hbar'] E[x x'] (|hbar|^2 sums
    2n coordinates); B (n x m, var sw2/m): sw2 E E; the readout w of width m: F2 = sqrt(n) (1/2n) sum w x,
    so sum_a (dF2/dtheta_a)^2 = sw2r E[x x'] / 2 and its backward vector is n df2/dh = w relu'(h) / 2."""
    res = tensorprog.evaluate(tensorprog.parse(WIDE))
    assert rel(res["NTK"].value, res["HAND"].value) < 1e-12
    assert rel(res["NTK2"].value, res["HAND2"].value) < 1e-12


def test_single_scalar_output_by_hand():
    """No families: f = mean(v relu(W x)), x ~ N(0, 1), W ~ N(0, sw2/n), v ~ N(0, sv2), all trained. With
    h = W x ~ N(0, sw2): the readout gives sv2 E[relu(h)^2] = sv2 sw2/2; W gives sw2 E[(v step(h))^2] E[x^2]
    = sw2 sv2/2; x gives E[xbar^2] Var(x) with xbar = W^T (v step(h)), E[xbar^2] = sw2 sv2/2: 3 sw2 sv2 / 2."""
    prog = """
const sw2 = 1.7, sv2 = 0.6
param matrix W ~ N(0, sw2/n)
param vector x ~ N(0, 1)
param vector v ~ N(0, sv2)
f = mean(v * relu(W @ x))
out K = ntk(f, f)
"""
    assert rel(value(prog, "K"), np.array(3 * 1.7 * 0.6 / 2)) < 1e-14


def test_constant_backward_vector():
    """f = mean(g) + mean(g)^2 / 2 with g[i] ~ N(0, K): gbar = n df/dg = 1 + mean(g) -> 1 (all coordinates
    equal: a Nonlin that only takes its width from g), so ntk = mean(1 * 1) K(i, j) = K."""
    K = POINTS @ POINTS.T / 3 + 0.3
    prog = f"""
data X = {inline_data(POINTS)}
param vector g[i] ~ N(0, dot(X[i], X[i']) / dim(X) + 0.3)
f[i] = mean(g[i]) + mean(g[i])^2 / 2
out K[i, j] = ntk(f[i], f[j])
"""
    assert rel(value(prog, "K"), K) < 1e-14


def test_diagonal_is_the_diagonal_of_the_kernel():
    text = (EXAMPLES / "ntk_mlp.tp").read_text() + "out D[i] = ntk(f[i], f[i]) + sb2\n"
    res = tensorprog.evaluate(tensorprog.parse(text))
    assert rel(res["D"].value, np.diag(res["NTK"].value)) < 1e-14


def test_grad_is_the_hand_written_backward_vector():
    """grad(f[i], g[1][i]) is mlp_ntk.tp's dg[1] (its moments equal)."""
    hand = (EXAMPLES / "mlp_ntk.tp").read_text()
    data = re.search(r"^data X = (.*)$", hand, flags=re.M).group(1)
    gen = generated_mlp("relu", 3, 2.0, 0.1, data).replace(
        "out NNGP", "dx[i] = grad(f[i], g[1][i])\nout P[i, j] = mean(dx[i] * dx[j])\nout NNGP")
    hand = hand + "out P[i, j] = mean(dg[1][i] * dg[1][j])\n"
    assert rel(value(gen, "P"), value(hand, "P")) < 1e-12


# ---------------------------------------------------------------------- W and W^T in one forward pass

WTW = """
const sw2 = 1.5
data X = [[1, 0], [0.6, 0.8], [-0.5, 1]]
param matrix W ~ N(0, sw2/n)
param vector x[i] ~ N(0, dot(X[i], X[i']) / dim(X) + 0.2)
param vector v ~ N(0, 1)
z[i] = W.T @ relu(W @ x[i])
f[i] = mean(v * tanh(z[i]))
out K[i, j] = ntk(f[i], f[j])
"""


def empirical_wtw_ntk(X, width, rng, sw2=1.5, c2=0.2):
    """F = v . tanh(W^T relu(W x)) / sqrt(n), x = A xi / sqrt(d) + sqrt(c2) c, with W = sqrt(sw2/n) w and
    w, A, c, v standard normal: the NTK over (w, A, c, v) by hand-written backprop, per pair of inputs."""
    N, d = X.shape
    n = width
    w = rng.standard_normal((n, n))
    A, c, v = rng.standard_normal((n, d)), rng.standard_normal(n), rng.standard_normal(n)
    W = np.sqrt(sw2 / n) * w
    x = X @ A.T / np.sqrt(d) + np.sqrt(c2) * c          # (N, n)
    y = x @ W.T
    u = np.maximum(y, 0)
    z = u @ W
    dv = np.tanh(z) / np.sqrt(n)                        # dF/dv
    dz = v * (1 - np.tanh(z) ** 2) / np.sqrt(n)         # dF/dz
    dy = (y > 0) * (dz @ W.T)                           # dF/dy
    dx = dy @ W                                         # dF/dx
    # dF/dW = u dz^T + dy x^T; <G_i, G_j>_F expanded into Gram matrices of n-vectors
    G = lambda a, b: a @ b.T                            # noqa: E731
    gram_w = G(u, u) * G(dz, dz) + G(u, dy) * G(dz, x) + G(dy, u) * G(x, dz) + G(dy, dy) * G(x, x)
    data_k = X @ X.T / d + c2
    return G(dv, dv) + sw2 / n * gram_w + G(dx, dx) * data_k


def test_wtw_has_a_nonzero_correction_and_matches_a_numpy_network():
    prog = tensorprog.parse(WTW)
    lim = tensorprog.derive(prog)
    assert lim.nonzero_zdot()  # the forward pass's W^T (W x) term, and the backward pass's
    limit = tensorprog.evaluate(prog)["K"].value
    X = np.array([[1, 0], [0.6, 0.8], [-0.5, 1]], dtype=float)
    rng = np.random.default_rng(20261205)
    width, draws = 1024, 12
    samples = np.array([empirical_wtw_ntk(X, width, rng) for _ in range(draws)])
    mean, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(draws)
    # 4 standard errors plus an O(1/n) finite-width bias allowance
    assert np.all(np.abs(mean - limit) <= 4 * se + 2.0 / width * np.abs(limit) + 1e-3), (mean, limit, se)
    # and the generated program itself, simulated, agrees with its limit (Master Theorem)
    sim = tensorprog.simulate(prog, width=1024, seeds=32, seed=3)
    assert np.all(np.abs(sim.mean["K"] - limit) <= 4 * sim.stderr["K"] + 2.0 / 1024 * np.abs(limit))


def empirical_layernorm_ntk(X, width, rng, L=3, sw2=2.0, sb2=0.5, eps=1e-5):
    """examples/ntk_layernorm.tp at width n, every parameter a multiplier times a standard normal
    tensor: g1 = sqrt(sw2/d) A xi + sqrt(sb2) c, z = LN(g), x = relu(z), g(l+1) = sqrt(sw2/n) w x + sqrt(sb2) b,
    F = v . g(L+1) / sqrt(n).  Hand backprop, LN's with its whole Jacobian:
    dF/dg = (delta - mean(delta) - z mean(delta z)) / sqrt(s2 + eps) for delta = dF/dz."""
    N, d = X.shape
    n = width
    g = X @ rng.standard_normal((n, d)).T * np.sqrt(sw2 / d) + np.sqrt(sb2) * rng.standard_normal(n)
    data_k = sw2 * X @ X.T / d + sb2
    Ws = [np.sqrt(sw2 / n) * rng.standard_normal((n, n)) for _ in range(L)]
    bs = [np.sqrt(sb2) * rng.standard_normal(n) for _ in range(L)]
    v = rng.standard_normal(n)
    tape = []
    for W, b in zip(Ws, bs):
        mu = g.mean(1, keepdims=True)
        sd = np.sqrt(((g - mu) ** 2).mean(1, keepdims=True) + eps)
        z = (g - mu) / sd
        x = np.maximum(z, 0)
        tape.append((z, sd, x))
        g = x @ W.T + b
    G = lambda a, b: a @ b.T                              # noqa: E731
    ntk = G(g, g) / n                                     # the readout v
    delta = np.broadcast_to(v / np.sqrt(n), g.shape)      # dF/dg(L+1)
    for W, (z, sd, x) in zip(reversed(Ws), reversed(tape)):
        ntk += sw2 / n * G(delta, delta) * G(x, x) + sb2 * G(delta, delta)
        dz = (z > 0) * (delta @ W)
        delta = (dz - dz.mean(1, keepdims=True) - z * (dz * z).mean(1, keepdims=True)) / sd
    return ntk + G(delta, delta) * data_k                 # the input layer's weights and bias


def test_layernorm_ntk_matches_a_numpy_network():
    X = np.array([[1, 0, 0], [0.6, 0.8, 0], [3, 3, 3]], dtype=float)
    limit = value(EXAMPLES / "ntk_layernorm.tp", "NTK")
    rng = np.random.default_rng(7)
    width, draws = 1024, 12
    samples = np.array([empirical_layernorm_ntk(X, width, rng) for _ in range(draws)])
    mean, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(draws)
    assert np.all(np.abs(mean - limit) <= 4 * se + 4.0 / width * np.abs(limit)), (mean, limit, se)


def test_transformer_ntk_agrees_with_its_finite_width_simulation():
    """No independent network here: the generated program (backward pass through softmax attention and
    LayerNorm) simulated at finite width converges to its derived limit (Master Theorem)."""
    prog = tensorprog.parse(EXAMPLES / "ntk_transformer.tp")
    limit = tensorprog.evaluate(prog)["NTK"].value
    sim = tensorprog.simulate(prog, width=512, seeds=12, seed=1)
    assert np.all(np.abs(sim.mean["NTK"] - limit) <= 4 * sim.stderr["NTK"] + 8.0 / 512 * np.abs(limit))


# ---------------------------------------------------------------------- bad input

X2 = "data X = [[1, 0], [0, 1]]\n"
G = "param vector g[i] ~ N(0, dot(X[i], X[i']))\n"
BAD = [
    ("no-params", X2 + "vector g[i] ~ N(0, dot(X[i], X[i']))\nf[i] = mean(relu(g[i]))\n"
     "out K[i, j] = ntk(f[i], f[j])\n", (4, 15, "needs trained parameters")),
    ("vector-not-scalar", X2 + G + "out K[i, j] = ntk(g[i], g[j])\n", (3, 19, "expected a scalar of the program")),
    ("half-same-index", X2 + "param vector g[i, k] ~ N(0, dot(X[i], X[i']) * dot(X[k], X[k']))\n"
     "f[i, k] = mean(relu(g[i, k]))\nout K[i, k, j] = ntk(f[i, k], f[j, k])\n", (4, 18, "either alike")),
    ("step-gradient", X2 + G + "f[i] = mean(step(g[i]))\nout K[i, j] = ntk(f[i], f[j])\n",
     (3, 8, "through step(g): its derivative with respect to 'g' is a Dirac delta")),
    ("diverging-rate", X2 + "param(rate = n) vector g[i] ~ N(0, dot(X[i], X[i']))\nf[i] = mean(relu(g[i]))\n"
     "out K[i, j] = ntk(f[i], f[j])\n", (4, 15, "'g' (line 2) grows with the width")),
    ("mixes-members", X2 + G + "f[i] = mean(relu(g[i]) * g[0])\nout K[i, j] = ntk(f[i], f[j])\n",
     (3, 8, "uses g[0] (another member of a family)")),
    ("bad-option", X2 + "param(speed = 1) vector g[i] ~ N(0, dot(X[i], X[i']))\nout o[i] = mean(g[i])\n",
     (2, 7, "unknown parameter option 'speed'")),
    ("negative-rate", X2 + "param(rate = -1) vector g[i] ~ N(0, dot(X[i], X[i']))\nout o[i] = mean(g[i])\n",
     (2, 14, "must be positive")),
]


@pytest.mark.parametrize("text,where", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_a_clear_error(tmp_path, capsys, text, where):
    # `tpc eval` in this process (`python -m tensorprog` exits with main's status; the process boundary
    # itself is tested in test_frontend_errors.py and test_cli_eval.py)
    line, col, msg = where
    path = tmp_path / "prog.tp"
    path.write_text(text)
    returncode = tpc_main(["eval", str(path)])
    stderr = capsys.readouterr().err
    assert returncode == 2, stderr
    assert "Traceback" not in stderr
    assert f"prog.tp:{line}:{col}: error:" in stderr and msg in stderr, stderr
