"""Trained limits (gd(...), several steps, evaluated by method="sampled") against real finite-width
networks trained by real gradient descent with their own backprop (tests/train_networks.py, no tensorprog).

Issue 12's checks: (a) a 2-hidden-layer tanh MLP in muP, 1 and 5 steps (with its feature kernel and
loss after every step); (c) an RNN with a shared W in muP, 2 steps (here with a learning-rate schedule);
(d) softmax cross-entropy over 3 classes in muP, 3 steps (here with mini-batches).  At widths 256, 1024
and 4096 with 10 seeds each: the limit lies within 4 standard errors (finite width and Monte Carlo
combined, plus 4/n for the O(1/n) bias) of the widest runs' mean, and the RMS deviation from the limit
shrinks with an exponent in [-0.7, -0.3].
"""
import numpy as np
import pytest

import tensorprog
from train_networks import parametrization, train_mlp, train_rnn

pytestmark = pytest.mark.slow

WIDTHS, SEEDS = (256, 1024, 4096), 10
X = np.array([[1, 0.5, -0.5], [0.2, 1, 0.4], [-1, 0, 1], [0.5, 0.5, 0.5], [0, 1, 0], [1, -1, 0]])


def check_convergence(limit, error, runs, steps_from=1):
    """runs: {width: (seeds, ...) finite-width values}; limit, error: the sampled limit and its SE."""
    rms = []
    for n in WIDTHS:
        dev = runs[n][:, steps_from:] - limit[steps_from:]
        rms.append(np.sqrt(np.mean(dev ** 2)))
    slope = np.polyfit(np.log(WIDTHS), np.log(rms), 1)[0]
    assert -0.7 <= slope <= -0.3, (slope, rms)
    wide = runs[WIDTHS[-1]]
    mean, se = wide.mean(0), wide.std(0, ddof=1) / np.sqrt(len(wide))
    bound = 4 * np.sqrt(se ** 2 + error ** 2) + 4.0 / WIDTHS[-1]
    assert np.all(np.abs(mean - limit) <= bound), (np.abs(mean - limit) / bound).max()
    return slope


MLP = """data X = {X}
data Y = {Y}
param matrix W ~ N(0, 1/n)
param vector h1[i] ~ N(0, dot(X[i], X[i']) / dim(X))
param vector v ~ N(0, 1)
x[i] = tanh(W @ tanh(h1[i]))
f[i] = mean(v * x[i])
out F[t][k] = gd(f[k], Y, 1.0, t) for t in 0..5
out K[t][i, j] = mean(gd(f[i], Y, 1.0, t, value = x[i]) * gd(f[j], Y, 1.0, t, value = x[j])) for t in 0..5
out L[t] = sum((gd(f[m], Y, 1.0, t) - Y[m])^2 for m in 0..3) / 2 for t in 0..5
"""


def test_muP_tanh_mlp_five_steps_matches_trained_networks():
    """(a): f after 1..5 steps at training and test points, the feature kernel x.x'/n and the loss."""
    Y = np.array([1.0, -1.0, 0.5, 0.0])
    res = tensorprog.evaluate(MLP.format(X=X.tolist(), Y=Y.tolist()), method="sampled", samples=1 << 18)
    F, K, L = res["F"], res["K"], res["L"]
    assert np.all(np.abs(F.value[0]) <= 5 * F.error[0])            # muP: f = 0 at initialisation
    runs = {n: [] for n in WIDTHS}
    for n in WIDTHS:
        a, r = parametrization("mup", X.shape[1], n)
        for s in range(SEEDS):
            tr = train_mlp(X, Y[:, None], width=n, depth=2, activation="tanh", multipliers=a, rates=r, eta=1.0,
                           steps=5, seed=[5, n, s], kernels=True)
            runs[n].append((tr.f[:, :, 0], tr.kernels[:, 1], tr.loss))
    for k, out in enumerate((F, K, L)):
        check_convergence(out.value, out.error, {n: np.array([r[k] for r in runs[n]]) for n in WIDTHS})
    # feature learning: the kernel of the hidden layer moves by Theta(1) in muP
    assert np.abs(K.value[5] - K.value[0]).max() > 20 * K.error[5].max()
    assert L.value[5] < L.value[0]


def test_muP_rnn_two_steps_with_a_schedule_matches_trained_networks():
    """(c): tanh RNN, W shared over 3 tokens, learning rates [1.0, 0.5]."""
    S = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[0, 1, 0], [1, 0, 0], [1, 1, 1]],
                  [[1, 1, 0], [0, 0, 1], [-1, 0, 1]], [[0, 0, 1], [1, -1, 0], [0, 1, 1]]], dtype=float)
    Y = np.array([1.0, -1.0, 0.5])
    src = f"""data S = {S.tolist()}
param matrix W ~ N(0, 1/n)
param vector u[t][s] ~ N(0, dot(S[s][t-1], S[s'][t'-1]) / dim(S)) for t in 1..3
param vector v ~ N(0, 1)
h[1][s] = tanh(u[1][s])
for t in 2..3: h[t][s] = tanh(W @ h[t-1][s] + u[t][s])
f[s] = mean(v * h[3][s])
out F[step][k] = gd(f[k], {Y.tolist()}, [1.0, 0.5], step) for step in 0..2
"""
    F = tensorprog.evaluate(src, method="sampled", samples=1 << 18)["F"]
    runs = {}
    for n in WIDTHS:
        a, r = parametrization("mup", 3, n)
        runs[n] = np.array([train_rnn(S, Y[:, None], width=n, activation="tanh", multipliers=a, rates=r,
                                      eta=[1.0, 0.5], steps=2, seed=[7, n, s]).f[:, :, 0] for s in range(SEEDS)])
    check_convergence(F.value, F.error, runs)


def test_muP_softmax_cross_entropy_three_classes_with_mini_batches():
    """(d): 3 classes, cross-entropy, mini-batches [[0, 1], [2, 3], [0, 3]], 3 steps."""
    labels = [0, 2, 1, 0]
    src = f"""data X = {X.tolist()}
param matrix W ~ N(0, 1/n)
param vector h1[i] ~ N(0, dot(X[i], X[i']) / dim(X))
param vector v[c] ~ N(0, 1) for c in 0..2
x[i] = tanh(W @ tanh(h1[i]))
f[c][i] = mean(v[c] * x[i]) for c in 0..2
out F[t][c][k] = gd(f[c][k], {labels}, 2.0, t, loss = softmax, batches = [[0, 1], [2, 3], [0, 3]]) for t in 0..3, c in 0..2
"""
    F = tensorprog.evaluate(src, method="sampled", samples=1 << 18)["F"]
    runs = {}
    for n in WIDTHS:
        a, r = parametrization("mup", 3, n)
        runs[n] = np.array([train_mlp(X, np.array(labels), width=n, depth=2, activation="tanh", multipliers=a,
                                      rates=r, eta=2.0, steps=3, loss="softmax_ce", classes=3,
                                      batches=[[0, 1], [2, 3], [0, 3]], seed=[6, n, s]).f.transpose(0, 2, 1)
                            for s in range(SEEDS)])
    check_convergence(F.value, F.error, runs)
