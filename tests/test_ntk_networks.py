"""ntk(...) against real finite-width networks: numpy MLPs and RNNs with their own hand-written backprop
(independent of tensorprog's generated backward pass), in the NTK parametrization: every trained tensor
is a multiplier times a standard normal one, unit rate.  Their empirical NTK sum_theta dF_i/dtheta
dF_j/dtheta converges to the limit of examples/ntk_mlp.tp / ntk_rnn.tp: the RMS deviation over draws
shrinks like n^-1/2 (fitted exponent in [-0.7, -0.3]) and the widest runs' mean is within 4 standard
errors (plus an O(1/n) bias allowance).  The backprop itself is checked against central differences.
"""
from pathlib import Path

import numpy as np
import pytest

import tensorprog

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
WIDTHS = (128, 256, 512, 1024, 2048)


def relu(x):
    return np.maximum(x, 0.0)


def mlp(X, width, rng, L=3, sw2=2.0, sb2=0.1):
    """examples/ntk_mlp.tp's network: g1 = sqrt(sw2/d) A xi + sqrt(sb2) c, g(l) = sqrt(sw2/n) W(l) relu(g(l-1))
    + sqrt(sb2) b(l), F = sqrt(sw2/n) v . relu(g(L)) + sqrt(sb2) b_out.  Returns (params, forward(params))."""
    n, (N, d) = width, X.shape
    params = {"A": rng.standard_normal((n, d)), "c": rng.standard_normal(n), "v": rng.standard_normal(n),
              "bo": rng.standard_normal(())}
    for l in range(2, L + 1):
        params[f"W{l}"], params[f"b{l}"] = rng.standard_normal((n, n)), rng.standard_normal(n)

    def forward(p):
        g = [None, X @ p["A"].T * np.sqrt(sw2 / d) + np.sqrt(sb2) * p["c"]]
        for l in range(2, L + 1):
            g.append(relu(g[-1]) @ p[f"W{l}"].T * np.sqrt(sw2 / n) + np.sqrt(sb2) * p[f"b{l}"])
        return g, relu(g[L]) @ p["v"] * np.sqrt(sw2 / n) + np.sqrt(sb2) * p["bo"]
    return params, forward


def mlp_grads(X, params, forward, L=3, sw2=2.0, sb2=0.1):
    """dF_i/dtheta for every parameter, by hand: {name: array (N,) + shape}."""
    n, d = params["v"].shape[0], X.shape[1]
    g, _ = forward(params)
    out = {"v": relu(g[L]) * np.sqrt(sw2 / n), "bo": np.full(len(X), np.sqrt(sb2))}
    delta = (g[L] > 0) * params["v"] * np.sqrt(sw2 / n)              # dF/dg(L), (N, n)
    for l in range(L, 1, -1):
        out[f"W{l}"] = np.einsum("ia,ib->iab", delta, relu(g[l - 1])) * np.sqrt(sw2 / n)
        out[f"b{l}"] = delta * np.sqrt(sb2)
        delta = (g[l - 1] > 0) * (delta @ params[f"W{l}"]) * np.sqrt(sw2 / n)
    out["A"] = np.einsum("ia,ib->iab", delta, X) * np.sqrt(sw2 / d)
    out["c"] = delta * np.sqrt(sb2)
    return out


def mlp_ntk(X, width, rng):
    """The empirical NTK, with the weight-matrix terms contracted without forming (N, n, n) arrays."""
    L, sw2, sb2 = 3, 2.0, 0.1
    n, d = width, X.shape[1]
    params, forward = mlp(X, width, rng)
    g, _ = forward(params)
    K = sw2 / n * relu(g[L]) @ relu(g[L]).T + sb2
    delta = (g[L] > 0) * params["v"] * np.sqrt(sw2 / n)
    for l in range(L, 1, -1):
        K += sw2 / n * (delta @ delta.T) * (relu(g[l - 1]) @ relu(g[l - 1]).T) + sb2 * delta @ delta.T
        delta = (g[l - 1] > 0) * (delta @ params[f"W{l}"]) * np.sqrt(sw2 / n)
    return K + (delta @ delta.T) * (sw2 * X @ X.T / d + sb2)


def rnn(S, width, rng, readout, sw2=1.0, su2=1.0, sb2=0.1, sv2=1.0):
    """examples/ntk_rnn.tp's network: g(1) = sqrt(su2/d) U x(1) + sqrt(sb2) b, g(t) = sqrt(sw2/n) W relu(g(t-1))
    + sqrt(su2/d) U x(t) + sqrt(sb2) b, F = sqrt(sv2/n) v . relu(g(T)) (last) or . mean_t relu(g(t)) (pool).
    The empirical NTK by backprop through time, gradients of the shared W, U, b summed over steps."""
    n, (N, T, d) = width, S.shape
    W, U, b, v = (rng.standard_normal((n, n)), rng.standard_normal((n, d)), rng.standard_normal(n),
                  rng.standard_normal(n))
    g = []
    for t in range(T):
        pre = S[:, t] @ U.T * np.sqrt(su2 / d) + np.sqrt(sb2) * b
        g.append(pre if t == 0 else pre + relu(g[-1]) @ W.T * np.sqrt(sw2 / n))
    h = [relu(x) for x in g]
    y = h[-1] if readout == "last" else sum(h) / T
    K = sv2 / n * y @ y.T
    direct = [np.zeros((N, n))] * (T - 1) + [v * np.sqrt(sv2 / n)] if readout == "last" else \
        [v * np.sqrt(sv2 / n) / T] * T                                # dF/dh(t) from the readout
    deltas = [None] * T
    carry = np.zeros((N, n))
    for t in range(T - 1, -1, -1):
        deltas[t] = (g[t] > 0) * (direct[t] + carry)                  # dF/dg(t)
        carry = deltas[t] @ W * np.sqrt(sw2 / n)
    D = np.stack(deltas, 1)                                           # (N, T, n)
    gram_d = np.einsum("ita,jsa->ijts", D, D)
    data = np.einsum("itk,jsk->ijts", S, S) / d
    K += np.einsum("ijts,ijts->ij", gram_d, su2 * data + sb2)         # U and b
    H = np.stack(h[:-1], 1)                                           # h(t-1) for t = 2..T
    gram_h = np.einsum("ita,jsa->ijts", H, H)
    K += sw2 / n * np.einsum("ijts,ijts->ij", gram_d[:, :, 1:, 1:], gram_h)
    return K


def test_mlp_backprop_is_its_own_gradient():
    """The hand backprop against central differences in random directions (width 16), and the
    contracted NTK (mlp_ntk) against the sum over the full per-parameter gradients."""
    X = np.random.default_rng(1).standard_normal((3, 3))
    params, forward = mlp(X, 16, np.random.default_rng(5))
    grads = mlp_grads(X, params, forward)
    rng = np.random.default_rng(2)
    for _ in range(3):
        u = {k: rng.standard_normal(np.shape(p)) for k, p in params.items()}
        eps = 1e-6
        plus = forward({k: p + eps * u[k] for k, p in params.items()})[1]
        minus = forward({k: p - eps * u[k] for k, p in params.items()})[1]
        an = sum(grads[k].reshape(len(X), -1) @ np.ravel(u[k]) for k in params)
        assert np.allclose(an, (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-8)
    full = sum(gr.reshape(len(X), -1) @ gr.reshape(len(X), -1).T for gr in grads.values())
    assert np.allclose(mlp_ntk(X, 16, np.random.default_rng(5)), full, rtol=1e-12)


def converges(limit, draw, seed):
    rng = np.random.default_rng(seed)
    rms, last = [], None
    for n in WIDTHS:
        samples = np.array([draw(n, rng) for _ in range(12)])
        rms.append(np.sqrt(np.mean((samples - limit) ** 2)))
        last = samples
    slope = np.polyfit(np.log(WIDTHS), np.log(rms), 1)[0]
    mean, se = last.mean(0), last.std(0, ddof=1) / np.sqrt(len(last))
    return slope, np.abs(mean - limit) <= 4 * se + 4.0 / WIDTHS[-1] * np.abs(limit)


def test_mlp_empirical_ntk_converges_to_ntk():
    X = np.array([[1, 0, 0], [0.6, 0.8, 0], [2, 0, 0], [-1, 0, 0]], dtype=float)
    limit = tensorprog.evaluate(tensorprog.parse(EXAMPLES / "ntk_mlp.tp"))["NTK"].value
    slope, close = converges(limit, lambda n, rng: mlp_ntk(X, n, rng), 11)
    assert -0.7 <= slope <= -0.3, slope
    assert close.all()


@pytest.mark.parametrize("readout,name", [("last", "NTK_last"), ("pool", "NTK_pool")])
def test_rnn_empirical_ntk_converges_to_ntk(readout, name):
    S = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]],
                  [[0, 1, 0], [1, 0, 0], [1, 1, 1], [-1, 0, 1]]], dtype=float)
    limit = tensorprog.evaluate(tensorprog.parse(EXAMPLES / "ntk_rnn.tp"))[name].value
    slope, close = converges(limit, lambda n, rng: rnn(S, n, rng, readout), 12)
    assert -0.7 <= slope <= -0.3, slope
    assert close.all()
