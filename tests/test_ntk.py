"""`param` + `ntk(...)` + `grad(...)`: the compiler-written backward pass and NTK (docs/ntk.md).

Truths: the hand-written programs (examples/mlp_ntk.tp, mlp_relu.tp, rnn_ntk.tp, tests/mlp_truths.py),
the MLP layer recursion in closed form (mlp_truths.mlp_recursion), a hand derivation through Moments
written below, and a numpy network with its own hand-written backprop (the W^T W case).
"""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tensorprog
from gaussian_truths import erf_erf, erfp_erfp, relu_relu, step_step
from mlp_truths import inline_data, mlp_program, mlp_recursion, on_pairs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
POINTS = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [2.0, 0.0, 0.0], [-1.0, 0.5, 0.3]])


def value(program, name):
    return tensorprog.evaluate(tensorprog.parse(program))[name].value


def rel(a, b):
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))


def generated_mlp(phi, L, sw2, sb2, data, biases=True, rates=None):
    """The forward MLP of mlp_truths.mlp_program with `param`s and ntk(...) instead of the backward pass."""
    r = rates or {}

    def p(kind):
        return f"param(rate = {r[kind]})" if kind in r else "param"
    bias = sb2 if biases else 0
    return f"""
const L = {L}, sw2 = {sw2}, sb2 = {bias}
data X = {data}
{p('W')} matrix W[l] ~ N(0, sw2/n) for l in 2..L
""" + (f"{p('b')} vector b[l] ~ N(0, sb2) for l in 2..L\n" if biases else "") + f"""
{p('in')} vector g[1][i] ~ N(0, sw2 * dot(X[i], X[i']) / dim(X){' + sb2' if biases else ''})
{p('v')} vector v ~ N(0, sw2)
for l in 2..L: g[l][i] = W[l] @ {phi}(g[l-1][i]){' + b[l]' if biases else ''}
f[i] = mean(v * {phi}(g[L][i]))
out NNGP[i, j] = sw2 * mean({phi}(g[L][i]) * {phi}(g[L][j])) + sb2
out NTK[i, j] = ntk(f[i], f[j]) + sb2
"""


def test_generated_equals_the_hand_written_example():
    """examples/mlp_ntk.tp writes the backward pass and the NTK by hand; the same forward network."""
    hand = (EXAMPLES / "mlp_ntk.tp").read_text()
    data = re.search(r"^data X = (.*)$", hand, flags=re.M).group(1)
    gen = generated_mlp("relu", 3, 2.0, 0.1, data)
    assert rel(value(gen, "NTK"), value(hand, "NTK")) < 1e-12


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


def test_standard_parametrization_rates_give_the_hand_written_ntk_sp():
    """examples/mlp_relu.tp: NTK_SP with the 1/n terms (input layer, biases) written out; here the
    rates of docs/ntk.md's table: 1/sw2 for W and the readout, vanishing for biases and input layer."""
    hand = (EXAMPLES / "mlp_relu.tp").read_text()
    data = re.search(r"^data X = (.*)$", hand, flags=re.M).group(1)
    gen = generated_mlp("relu", 3, 2.0, 0.05, data,
                        rates={"W": "1/sw2", "v": "1/sw2", "b": "1/(n*sb2)", "in": "1/n"})
    gen = gen.replace("ntk(f[i], f[j]) + sb2", "ntk(f[i], f[j])")
    assert rel(value(gen, "NTK"), value(hand, "NTK_SP")) < 1e-12


def test_weight_shared_rnn_equals_hand_written():
    """examples/rnn_ntk.tp: W, U, b shared over time (double sums over steps written by hand)."""
    hand = (EXAMPLES / "rnn_ntk.tp").read_text()
    head = hand[hand.index("const T"):hand.index("matrix W")]
    gen = head + """
param matrix W ~ N(0, sw2/n)
param vector b ~ N(0, sb2)
param vector u[t][s] ~ N(0, su2 * dot(S[s][t-1], S[s'][t'-1]) / dim(S)) for t in 1..T
param vector v ~ N(0, sv2)
g[1][s] = u[1][s] + b
for t in 2..T: g[t][s] = W @ relu(g[t-1][s]) + u[t][s] + b
fl[s] = mean(v * relu(g[T][s]))
fp[s] = mean(v * sum(relu(g[t][s]) for t in 1..T)) / T
out NTK_last[s, s2] = ntk(fl[s], fl[s2])
out NTK_pool[s, s2] = ntk(fp[s], fp[s2])
"""
    a, b = tensorprog.evaluate(tensorprog.parse(gen)), tensorprog.evaluate(tensorprog.parse(hand))
    for name in ("NTK_last", "NTK_pool"):
        assert rel(a[name].value, b[name].value) < 1e-12, name


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


# ---------------------------------------------------------------------- bad input

X2 = "data X = [[1, 0], [0, 1]]\n"
G = "param vector g[i] ~ N(0, dot(X[i], X[i']))\n"
BAD = [
    ("no-params", X2 + "vector g[i] ~ N(0, dot(X[i], X[i']))\nf[i] = mean(relu(g[i]))\n"
     "out K[i, j] = ntk(f[i], f[j])\n", (4, 15, "needs trained parameters")),
    ("vector-not-scalar", X2 + G + "out K[i, j] = ntk(g[i], g[j])\n", (3, 19, "one member of a scalar family")),
    ("same-index", X2 + G + "f[i] = mean(relu(g[i]))\nout K[i] = ntk(f[i], f[i])\n", (4, 12, "different indices")),
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
def test_bad_input_is_a_clear_error(tmp_path, text, where):
    line, col, msg = where
    path = tmp_path / "prog.tp"
    path.write_text(text)
    r = subprocess.run([sys.executable, "-m", "tensorprog", "eval", str(path)], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert f"prog.tp:{line}:{col}: error:" in r.stderr and msg in r.stderr, r.stderr
