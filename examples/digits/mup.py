"""Feature learning vs the kernel regime on a small binary digits task (3 vs 8, labels +-1).

The network: one hidden relu layer in muP (the mean-field network), the row embedding a field over
the images, h(x) = U x / sqrt(64) (scaled by sw2 = 2), f(x) = mean(v relu(h(x))) with every parameter
trained at rate 1 (docs/train.md). tensorprog's ``gd(f[k], Y, eta, T)`` gives the infinite-width muP
network after T steps of gradient descent on the squared loss 1/2 sum_i (f_i - Y_i)^2 (evaluated by
the sampled limit: a standard error over 16 replicates). Its features move: the limit is not a kernel
method. The kernel regime of the same network is gradient descent on the model linearised around
its initialisation (f_0 = 0 in this limit) with the network's NTK Theta = ntk(f, f) (the same units:
one step is f <- f - eta Theta chi, docs/train.md):

    kernel GD (T steps):   f_T = Theta_xX Theta_XX^-1 (I - (I - eta Theta_XX)^T) Y
    kernel flow (t = eta T, ``tensorprog.predict``): Theta_xX Theta_XX^-1 (I - exp(-eta T Theta_XX)) Y.

To first order in eta both give f_1 = eta Theta_xX Y after one step (chi = -Y at f_0 = 0). The muP
step moves the features by O(1) (h <- h + eta sum_i Y_i c(x, x_i) v relu'(h_i), v <- v + eta sum_i Y_i
relu(h_i)), so f_1 differs from the kernel step at O(eta^2), and the difference grows with the steps
as the learned features change the kernel.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

import tensorprog
from tensorprog.predict_program import kernels_on

ETA = 0.1   # the largest train-NTK eigenvalue is ~10.6: eta * lambda_max ~ 1, stable gradient descent


def binary_task(classes=(3, 8), n_train=10, n_test=20):
    """(X_train, y_train, X_test, y_test): the first n_train + n_test images of each class in sklearn's
    order, scaled to [0, 1], centred by the training mean, norm sqrt(64); labels +1 (first class), -1."""
    from sklearn.datasets import load_digits

    data = load_digits()
    first, second = (np.flatnonzero(data.target == c)[: n_train + n_test] for c in classes)
    order = np.concatenate([first[:n_train], second[:n_train], first[n_train:], second[n_train:]])
    x = data.data[order] / 16.0
    x = x - x[: 2 * n_train].mean(axis=0)
    x = x / np.linalg.norm(x, axis=1, keepdims=True) * math.sqrt(x.shape[1])
    y = np.concatenate([np.ones(n_train), -np.ones(n_train), np.ones(n_test), -np.ones(n_test)])
    return x[: 2 * n_train], y[: 2 * n_train], x[2 * n_train:], y[2 * n_train:]


def mup_program(steps, y_train, eta=ETA, points="points.npy"):
    """The muP network's program: F[k] = gd(f[k], Y, eta, steps) at every image; NTK = ntk(f, f)."""
    labels = ", ".join(repr(float(v)) for v in y_train)
    return f"""const eta = {eta!r}, sw2 = 2.0
data X = load("{points}")
param vector h[i] ~ N(0, sw2 * dot(X[i], X[i']) / dim(X))
param vector v ~ N(0, 1)
f[i] = mean(v * relu(h[i]))
out F[k] = gd(f[k], [{labels}], eta, {int(steps)})
out NTK[i, j] = ntk(f[i], f[j])
"""


def mup_limit(steps, x_train, y_train, x_test, eta=ETA, samples=1 << 18, seed=0):
    """(value, standard error) of the muP limit's f after ``steps`` steps at [train; test] (sampled)."""
    with tempfile.TemporaryDirectory(prefix="digits-mup-") as tmp:
        np.save(Path(tmp) / "points.npy", np.vstack([x_train, x_test]))
        text = mup_program(steps, y_train, eta, points=str(Path(tmp) / "points.npy"))
        res = tensorprog.evaluate(text, method="sampled", samples=samples, seed=seed)
        return np.asarray(res["F"].value, dtype=float), np.asarray(res["F"].error, dtype=float)


def kernel_gd(theta, n_train, y_train, steps, eta=ETA):
    """Kernel-regime gradient descent: Theta_xX Theta_XX^-1 (I - (I - eta Theta_XX)^T) Y at [train; test],
    i.e. T steps of f <- f - eta Theta (f - Y) on the linearised model from f_0 = 0, written as the sum
    over steps eta Theta_{.X} sum_{s<T} (I - eta Theta_XX)^s Y (no inverse)."""
    tr = slice(0, n_train)
    r, total = np.asarray(y_train, dtype=float), np.zeros(theta.shape[0])
    for _ in range(steps):
        total += eta * theta[:, tr] @ r
        r = r - eta * theta[tr, tr] @ r
    return total


def compare(steps_list, eta=ETA, samples=1 << 18):
    """Rows per T: muP limit vs kernel GD vs kernel flow (predict at t = eta T): test MSE, accuracy, and
    the RMS test-point difference muP - kernel GD (feature learning) with its standard error."""
    xtr, ytr, xte, yte = binary_task()
    n = len(ytr)
    text = mup_program(1, ytr, eta)
    theta = kernels_on(text, np.vstack([xtr, xte]), ["NTK"])["NTK"]
    flows = tensorprog.predict(text, xtr, ytr, xte, y_test=yte, times=steps_list, learning_rate=eta).mean
    rows = []
    for steps, flow in zip(steps_list, flows):
        f, err = mup_limit(steps, xtr, ytr, xte, eta, samples)
        lin = kernel_gd(theta, n, ytr, steps, eta)
        flow = flow[:, 0]
        diff = f[n:] - lin[n:]
        rows.append({"T": steps,
                     "mup": (float(np.mean((f[n:] - yte) ** 2)), float(np.mean(np.sign(f[n:]) == yte))),
                     "kernel_gd": (float(np.mean((lin[n:] - yte) ** 2)), float(np.mean(np.sign(lin[n:]) == yte))),
                     "kernel_flow": (float(np.mean((flow - yte) ** 2)), float(np.mean(np.sign(flow) == yte))),
                     "rms_diff": math.sqrt(float(np.mean(diff ** 2))),
                     "stderr": math.sqrt(float(np.mean(err[n:] ** 2)))})
    return rows


def comparison_table(steps_list, eta=ETA):
    rows = compare(steps_list, eta)
    lines = [f"digits 3 vs 8, 20 training / 40 test images, labels +-1, eta = {eta}; test MSE (accuracy)", "",
             "| steps T | muP limit (gd) | kernel GD | kernel flow, t = eta T (predict) | RMS(muP - kernel GD) |",
             "|---|---|---|---|---|"]
    for r in rows:
        cell = lambda k: f"{r[k][0]:.4f} ({r[k][1]:.3f})"  # noqa: E731
        lines.append(f"| {r['T']} | {cell('mup')} | {cell('kernel_gd')} | {cell('kernel_flow')} | "
                     f"{r['rms_diff']:.4f} +- {r['stderr']:.4f} |")
    return "\n".join(lines)
