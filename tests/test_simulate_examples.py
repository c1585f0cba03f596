"""Finite-width simulation of every example against an infinite-width limit derived in this file,
independently of tensorprog's limit pass: the relu arc-cosine closed forms (docs/theory.md, "Moment: closed forms")
for the MLP, NTK, LayerNorm and attention examples, tensor Gauss-Hermite quadrature for the tanh
RNN and the muP one-step example.  Also: the check has power (the muP limit without its Zdot term
is rejected), the RMS deviation shrinks like width^-1/2, and results do not depend on the number
of threads."""
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss

import tensorprog
from tensorprog.simulate import convergence, simulate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")

pytestmark = pytest.mark.slow


def example(name):
    return tensorprog.parse(os.path.join(EXAMPLES, name))


# ---------------------------------------------------------------------- closed forms (docs/theory.md)

def _angle(a, b, c):
    scale = np.sqrt(a * b)
    rho = np.divide(c, scale, out=np.zeros_like(scale), where=scale > 0)
    return scale, np.arccos(np.clip(rho, -1.0, 1.0))


def relu_kernel(S):
    """E[relu(u) relu(v)] for (u, v) ~ N(0, [[S_ii, S_ij], [S_ij, S_jj]]), all i, j."""
    d = np.diag(S)
    scale, t = _angle(d[:, None], d[None, :], S)
    return scale / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t))


def step_kernel(S):
    """E[step(u) step(v)] = (pi - theta) / (2 pi)."""
    d = np.diag(S)
    _, t = _angle(d[:, None], d[None, :], S)
    return (np.pi - t) / (2 * np.pi)


MLP_X = np.array([[1, 0, 0], [0.6, 0.8, 0], [2, 0, 0], [-1, 0, 0]], dtype=float)


def mlp_limits(sw2=2.0, sb2=0.1, L=3):
    """NNGP and NTK of examples/mlp_nngp.tp and mlp_ntk.tp (their header formulas), with
    E[dg_L dg_L'] = sw2 E[step step] and E[dg_l dg_l'] = E[step step] sw2 E[dg_(l+1) dg_(l+1)']."""
    sig = [None, sw2 * MLP_X @ MLP_X.T / 3 + sb2]
    for _ in range(2, L + 1):
        sig.append(sw2 * relu_kernel(sig[-1]) + sb2)
    nngp = sw2 * relu_kernel(sig[L]) + sb2
    dg = {L: sw2 * step_kernel(sig[L])}
    for l in range(L - 1, 0, -1):
        dg[l] = step_kernel(sig[l]) * sw2 * dg[l + 1]
    ntk = nngp + sum(dg[l] * sig[l] for l in range(1, L + 1))
    return nngp, ntk


def layernorm_limit(sw2=2.0, sb2=0.5, eps=1e-5, L=3):
    """examples/layernorm.tp: the Moments converge to mu = 0 and s2 = Sigma_ii, so each layer maps
    Sigma to sw2 E[relu(u / sqrt(S_ii + eps)) relu(v / sqrt(S_jj + eps))] + sb2."""
    X = np.array([[1, 0, 0], [0.6, 0.8, 0], [3, 3, 3]], dtype=float)
    S = sw2 * X @ X.T / 3 + sb2
    for _ in range(L):
        r = 1.0 / np.sqrt(np.diag(S) + eps)
        S = sw2 * relu_kernel(S * np.outer(r, r)) + sb2
    return S


def attention_limit(sw2=1.0):
    """examples/attention.tp: logit(t, u; s) -> sw2 E[e_t(s) e_u(s)], a = softmax over u;
    y_t(s) is Gaussian with Cov(y_t(s), y_t2(s2)) = sum_{u, u2} a_tu(s) a_t2u2(s2) sw2 E[e_u(s) e_u2(s2)];
    K[t][s][t2][s2] = E[relu(y_t(s)) relu(y_t2(s2))]."""
    S = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]],
                  [[0, 1, 1], [1, 0, 1], [1, 1, 1], [0, 0, 1]]], dtype=float)
    E = np.einsum("sud,rvd->usvr", S, S) / 3          # E[e_u(s) e_v(r)], (u, s, v, r)
    A = np.zeros((4, 2, 4))                            # a[t, s, u]
    for s in range(2):
        logit = sw2 * E[:, s, :, s]
        ex = np.exp(logit - logit.max(axis=1, keepdims=True))
        A[:, s, :] = ex / ex.sum(axis=1, keepdims=True)
    cov = sw2 * np.einsum("tsu,qrv,usvr->tsqr", A, A, E).reshape(8, 8)
    return relu_kernel(cov).reshape(4, 2, 4, 2)


# ---------------------------------------------------------------------- Gauss-Hermite quadrature

def gauss_hermite(deg):
    x, w = hermegauss(deg)
    return x, w / np.sqrt(2 * np.pi)


def rnn_limit(deg=120, T=5, sw2=1.5, su2=1.0, sb2=0.1):
    """examples/rnn.tp: pre_t(s) = W h_(t-1)(s) + u_t(s) + b is Gaussian with covariance
    [t, t2 > 1] sw2 K[t-1, s, t2-1, s2] + su2 <S[s][t-1], S[s2][t2-1]>/3 + sb2, and
    K[t, s, t2, s2] = E[tanh(pre) tanh(pre')] by 2-D Gauss-Hermite quadrature."""
    S = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]],
                  [[0, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 1], [1, 0, 1]]], dtype=float)
    U = su2 * np.einsum("std,rqd->tsqr", S, S) / 3 + sb2     # (t, s, t2, s2), t from 0
    x, w = gauss_hermite(deg)
    g1, g2 = np.meshgrid(x, x, indexing="ij")
    w2 = np.outer(w, w)
    K = np.zeros((T, 2, T, 2))

    def cov(t, s, t2, s2):
        return U[t, s, t2, s2] + (sw2 * K[t - 1, s, t2 - 1, s2] if t > 0 and t2 > 0 else 0.0)

    # (t, t2) needs K at (t - 1, t2 - 1), (t - 1, t - 1) and (t2 - 1, t2 - 1): go by max(t, t2).
    for t, t2 in sorted(itertools.product(range(T), repeat=2), key=max):
        for s, s2 in itertools.product(range(2), repeat=2):
            a, b, c = cov(t, s, t, s), cov(t2, s2, t2, s2), cov(t, s, t2, s2)
            lam, vec = np.linalg.eigh(np.array([[a, c], [c, b]]))
            F = vec * np.sqrt(np.clip(lam, 0, None))
            u, v = F[0, 0] * g1 + F[0, 1] * g2, F[1, 0] * g1 + F[1, 1] * g2
            K[t, s, t2, s2] = np.sum(w2 * np.tanh(u) * np.tanh(v))
    return K


def mup_limit(deg=60, zdot=True):
    """f1 of examples/mup_one_step.tp (eta = 1, y0 = 1, so chi -> -1 and -eta chi = 1):
    dh1 = tanh'(h1_0) Zb, Zb = Zhat^{W^T dh2} ~ N(0, E[tanh'(h2)^2]) (its Zdot is
    x1 E[v tanh''(h2)] = 0); h1' = h1_1 + c dh1; theta = E[x1 x1'];
    Z^{W x1'} = Zhat + k dh2 with k = c E[tanh'(h1') tanh'(h1_0)] (the Zdot term; 0 without it),
    Cov(Zhat^{W x1'}, Zhat^{W x1}) = theta; h2' = Z^{W x1'} + theta dh2;
    f1 = E[v tanh(h2')] + E[tanh(h2) tanh(h2')].  3-D Gauss-Hermite quadrature."""
    X = np.array([[1, 0.5, -0.5], [0.2, 1, 0.4]])
    C = X @ X.T / 3
    c = C[0, 1]
    dt = lambda z: 1 - np.tanh(z) ** 2  # noqa: E731
    x, w = gauss_hermite(deg)
    q = np.sum(w * np.tanh(np.sqrt(C[0, 0]) * x) ** 2)              # E[x1^2]
    e_dh2 = np.sum(w * dt(np.sqrt(q) * x) ** 2)                      # E[dh2^2], E[v^2] = 1
    g0, g1, g2 = np.meshgrid(x, x, x, indexing="ij")
    w3 = w[:, None, None] * w[None, :, None] * w[None, None, :]
    L = np.linalg.cholesky(C)
    h10, h11 = L[0, 0] * g0, L[1, 0] * g0 + L[1, 1] * g1
    h1p = h11 + c * dt(h10) * np.sqrt(e_dh2) * g2
    theta = np.sum(w3 * np.tanh(h10) * np.tanh(h1p))
    k = c * np.sum(w3 * dt(h1p) * dt(h10)) if zdot else 0.0
    M = np.linalg.cholesky(np.array([[q, theta], [theta, np.sum(w3 * np.tanh(h1p) ** 2)]]))
    zh2, z14, v = M[0, 0] * g0, M[1, 0] * g0 + M[1, 1] * g1, g2
    h2p = z14 + (k + theta) * v * dt(zh2)
    return np.sum(w3 * v * np.tanh(h2p)) + np.sum(w3 * np.tanh(zh2) * np.tanh(h2p))


def test_quadrature_truths_are_converged():
    # Far below the statistical errors of the simulations (~1e-3); tanh's poles at +-i pi/2 make
    # Gauss-Hermite converge slowly, hence 1e-6 for the deeper RNN recursion.
    assert abs(mup_limit(40) - mup_limit(60)) < 1e-9
    assert np.max(np.abs(rnn_limit(80) - rnn_limit(120))) < 1e-6
    K = rnn_limit()
    assert np.allclose(K, K.transpose(2, 3, 0, 1), atol=1e-14)


def assert_within(sim, name, truth, nsigma=4.0):
    z = (sim.mean[name] - truth) / sim.stderr[name]
    assert np.all(np.isfinite(z))
    assert np.max(np.abs(z)) < nsigma, (name, np.max(np.abs(z)), sim.mean[name], truth)


# ---------------------------------------------------------------------- examples vs limits

@pytest.fixture(scope="module")
def nngp_sweep():
    nngp, _ = mlp_limits()
    return convergence(example("mlp_nngp.tp"), [256, 512, 1024, 2048], seeds=24, limit={"K": nngp})


def test_mlp_nngp_matches_arccos_recursion_at_2048(nngp_sweep):
    last = nngp_sweep.points["K"][-1]
    assert last.width == 2048
    assert last.max_abs_z < 4.0


def test_mlp_nngp_rms_deviation_shrinks_like_inverse_sqrt_width(nngp_sweep):
    b, eb = nngp_sweep.exponents["K"]
    assert -0.7 < b < -0.3, (b, eb)
    assert 0 < eb < 0.15


def test_mlp_ntk_matches_closed_forms_at_2048():
    nngp, ntk = mlp_limits()
    sim = simulate(example("mlp_ntk.tp"), 2048, seeds=20)
    assert_within(sim, "NNGP", nngp)
    assert_within(sim, "NTK", ntk)


def test_rnn_matches_gauss_hermite_recursion_at_2048():
    sim = simulate(example("rnn.tp"), 2048, seeds=20)
    assert_within(sim, "K", rnn_limit())


def test_layernorm_matches_normalised_arccos_recursion_at_2048():
    sim = simulate(example("layernorm.tp"), 2048, seeds=20)
    assert_within(sim, "K", layernorm_limit())


def test_attention_matches_softmax_mixture_closed_form_at_2048():
    sim = simulate(example("attention.tp"), 2048, seeds=20)
    assert_within(sim, "K", attention_limit())


@pytest.fixture(scope="module")
def mup_sweep():
    return convergence(example("mup_one_step.tp"), [256, 512, 1024, 2048], seeds=30,
                       limit={"f0": 0.0, "f1": mup_limit()})


def test_mup_one_step_matches_limit_with_zdot(mup_sweep):
    points = mup_sweep.points
    assert points["f1"][-1].width == 2048
    assert points["f1"][-1].max_abs_z < 4.0
    assert points["f0"][-1].max_abs_z < 4.0


def test_mup_limit_without_zdot_is_rejected(mup_sweep):
    # The same check against the limit with the Zdot term of W x1' dropped (gradient independence
    # assumed after the step) fails by many standard errors: the check has power.
    sim = mup_sweep.simulations[-1]
    wrong = mup_limit(zdot=False)
    assert abs(mup_limit() - wrong) > 0.05
    z = (sim.mean["f1"] - wrong) / sim.stderr["f1"]
    assert abs(z) > 10


def test_mup_rms_deviation_shrinks_like_inverse_sqrt_width(mup_sweep):
    b, eb = mup_sweep.exponents["f1"]
    assert -0.7 < b < -0.3, (b, eb)


# ---------------------------------------------------------------------- the limit pass (when present)

@pytest.mark.parametrize("name", sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".tp")))
def test_example_limit_from_evaluate_within_4_se_at_2048(name, example_convergence):
    if not hasattr(tensorprog, "evaluate"):
        pytest.skip("tensorprog.evaluate is not available yet")
    conv = example_convergence(name, width=2048, seeds=20)
    for out, pts in conv.points.items():
        assert pts[-1].max_abs_z < 4.0, (name, out, pts[-1].max_abs_z)


# ---------------------------------------------------------------------- thread counts

_SCRIPT = """
import json, sys
import tensorprog
from tensorprog.simulate import simulate
out = {}
for path in sys.argv[1:]:
    sim = simulate(tensorprog.parse(path), 1024, seeds=2, seed=5)
    out.update({path + ":" + k: v.tolist() for k, v in sim.samples.items()})
print(json.dumps(out))
"""

# A family of 48 inputs, so that the products are real matrix-matrix products (BLAS gemm).
_FAMILY = """
data X = {data}
matrix W ~ N(0, 2/n)
vector g[i] ~ N(0, dot(X[i], X[i']) / dim(X))
vector v ~ N(0, 1)
h[i] = W @ relu(g[i])
d[i] = W.T @ (v * step(h[i]))
out K[i, j] = mean(relu(h[i]) * relu(h[j]))
out D[i, j] = mean(d[i] * d[j])
"""


def _run_with_threads(threads, programs):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               NUMBA_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", _SCRIPT, *programs], env=env, capture_output=True, text=True,
                         check=True, cwd=REPO)
    return {k: np.array(v) for k, v in json.loads(out.stdout).items()}


def test_results_do_not_depend_on_thread_count(tmp_path):
    # Random numbers are drawn per fixed matrix row block, so they are identical for any number of
    # threads; only BLAS summation order could differ (measured: bitwise identical with OpenBLAS).
    family = tmp_path / "family.tp"
    data = np.round(np.random.default_rng(0).standard_normal((48, 5)), 3).tolist()
    family.write_text(_FAMILY.format(data=data))
    programs = [os.path.join(EXAMPLES, "mlp_ntk.tp"), str(family)]
    one, two = _run_with_threads(1, programs), _run_with_threads(2, programs)
    assert one.keys() == two.keys() and len(one) == 4
    for k in one:
        np.testing.assert_allclose(one[k], two[k], rtol=1e-12, atol=0)
