"""method="sampled": the Master Theorem's Z sampled instruction by instruction (simulate/limit_sampler.py).

Truths: closed forms derived by hand in each test (Gaussian groups, the Zdot term of a transpose via
Stein's lemma) and the derived-and-integrated limit of the same program.
"""
import subprocess
import sys

import numpy as np
import pytest

import tensorprog
from tensorprog.simulate.limit_sampler import sample_limit

SAMPLES = 1 << 17


def within(res, truth, k=4.0, bias=0.0):
    return np.all(np.abs(res.value - truth) <= k * res.error + bias), (res.value, truth, res.error)


def test_relu_layer_kernel_is_the_arccos_closed_form():
    """K[i, j] = E[relu(h_i) relu(h_j)], h = W x: Cov(h_i, h_j) = x_i.x_j / d; K = the arc-cosine kernel
    (1/2pi) |u||v| (sin t + (pi - t) cos t) with cos t = the correlation."""
    src = """data X = [[1, 0], [0.6, 0.8], [-1, 0.2]]
vector h[i] ~ N(0, dot(X[i], X[i']) / dim(X))
matrix W ~ N(0, 2/n)
g[i] = W @ relu(h[i])
out K[i, j] = mean(relu(g[i]) * relu(g[j]))
"""
    X = np.array([[1, 0], [0.6, 0.8], [-1, 0.2]])
    C = X @ X.T / 2

    def arccos(C):
        s = np.sqrt(np.diag(C))
        c = np.clip(C / np.outer(s, s), -1, 1)
        t = np.arccos(c)
        return np.outer(s, s) * (np.sin(t) + (np.pi - t) * np.cos(t)) / (2 * np.pi)

    truth = arccos(2 * arccos(C))
    res = sample_limit(src, samples=SAMPLES)["K"]
    ok, info = within(res, truth)
    assert ok, info
    assert res.error.max() < 0.02


def test_transpose_gets_the_zdot_term():
    """x ~ N(0, 1), h = W x, g = W^T relu(h) (W n x n, sigma^2 = 1): Z^g = Zhat^{W^T relu(h)} + Z^x E[relu'(Z^h)],
    so mean(g x) -> E[x^2] E[relu'(h)] = 1/2 and mean(g^2) -> E[relu(h)^2] + E[relu'(h)]^2 = 1/2 + 1/4."""
    src = """vector x ~ N(0, 1)
matrix W ~ N(0, 1/n)
g = W.T @ relu(W @ x)
out a = mean(g * x)
out b = mean(g * g)
"""
    res = sample_limit(src, samples=SAMPLES)
    assert within(res["a"], 0.5)[0], within(res["a"], 0.5)[1]
    assert within(res["b"], 0.75)[0], within(res["b"], 0.75)[1]


def test_rectangular_matrix_scales_the_transpose_by_rho():
    """W: 2n x n, variance 1/n (sigma^2 = 1), rho = 2 for W^T: Z^g = Zhat^{W^T relu(h)} + 2 Z^x E[relu'(h)], so
    mean(g x) -> 2 * 1/2 = 1 and mean(g^2) -> 2 E[relu(h)^2] + (2 * 1/2)^2 = 2."""
    src = "vector x ~ N(0, 1)\nmatrix W : (2*n, n) ~ N(0, 1/n)\ng = W.T @ relu(W @ x)\nout a = mean(g * x)\n" \
          "out b = mean(g * g)\n"
    res = sample_limit(src, samples=SAMPLES)
    assert within(res["a"], 1.0)[0], within(res["a"], 1.0)[1]
    assert within(res["b"], 2.0)[0], within(res["b"], 2.0)[1]


def test_one_training_step_equals_the_derived_limit():
    """mup_one_step.tp (a hand-unrolled muP step: W and W^T, rank-one updates) integrated vs sampled."""
    path = "examples/mup_one_step.tp"
    exact = tensorprog.evaluate(tensorprog.parse(path), method="mc", samples=1 << 18)
    sampled = tensorprog.evaluate(path, method="sampled", samples=SAMPLES)
    for name in ("f0", "f1"):
        ok, info = within(sampled[name], exact[name].value, bias=4 * exact[name].error)
        assert ok, (name, info)
        assert sampled[name].method.startswith("sampled")


def test_seeded_and_reproducible():
    src = "vector x ~ N(0, 1)\nmatrix W ~ N(0, 1/n)\nout s = mean(tanh(W @ x)^2)\n"
    a = sample_limit(src, samples=1 << 12, seed=3)["s"]
    b = sample_limit(src, samples=1 << 12, seed=3)["s"]
    c = sample_limit(src, samples=1 << 12, seed=4)["s"]
    assert a.value == b.value and a.error == b.error
    assert a.value != c.value


def test_cli_sampled_skips_the_derivation(tmp_path):
    prog = tmp_path / "p.tp"
    prog.write_text("vector x ~ N(0, 1)\nmatrix W ~ N(0, 1/n)\nout s = mean(relu(W @ x)^2)\n")
    out = subprocess.run([sys.executable, "-m", "tensorprog", "eval", str(prog), "--method", "sampled",
                          "--samples", "65536", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    import json
    s = json.loads(out.stdout)["outputs"]["s"]
    assert abs(s["value"] - 0.5) <= 4 * s["error"] and s["error"] < 0.02
    assert s["method"].startswith("sampled")


@pytest.mark.parametrize("replicates, samples, message", [(1, 100, "replicates must be an integer >= 2"),
                                                          (8, 8, "cannot be split")])
def test_bad_sampling_arguments(replicates, samples, message):
    with pytest.raises(tensorprog.TPError, match=message):
        sample_limit("vector x ~ N(0, 1)\nout s = mean(x^2)\n", samples=samples, replicates=replicates)


def test_diverging_scalar_is_refused():
    with pytest.raises(tensorprog.TPError, match="no finite limit"):
        sample_limit("scalar c = n\nvector x ~ N(0, 1)\nout s = mean(c * x^2)\n", samples=1 << 10)


def test_auto_samples_a_program_with_several_training_steps():
    """Two gd steps of a one-hidden-layer network: auto samples (SAMPLE_FROM_STEPS = 2); the result agrees
    with the derived and integrated limit (method quad) within 4 standard errors."""
    src = ("data X = [[1, 0.5], [0.2, 1]]\nparam vector h[i] ~ N(0, dot(X[i], X[i']) / dim(X))\n"
           "param vector v ~ N(0, 1)\nf[i] = mean(v * tanh(h[i]))\nout F[k] = gd(f[k], [1], 1.0, 2)\n")
    prog = tensorprog.parse(src)
    assert prog.training_steps == 2
    sampled = tensorprog.evaluate(prog, samples=SAMPLES)["F"]
    exact = tensorprog.evaluate(prog, method="quad")["F"]
    assert sampled.method.startswith("sampled") and not exact.method.startswith("sampled")
    assert within(sampled, exact.value, bias=exact.error)[0], within(sampled, exact.value)[1]
