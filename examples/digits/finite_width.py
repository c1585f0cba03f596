"""Finite-width relu MLPs in the NTK parametrization, trained in plain numpy (own backpropagation, no
tensorprog), beside the NTK gradient-flow prediction of ``tensorprog.predict``.

The network is examples/ntk_mlp.tp's (L hidden layers, sw2 = 2, sb2 = 0.1), with K outputs; every
parameter theta is standard normal at initialisation and enters times a fixed multiplier:

    g_1 = sqrt(sw2/d) W_1 x + sqrt(sb2) b_1,      g_l = sqrt(sw2/n) W_l relu(g_{l-1}) + sqrt(sb2) b_l,
    f   = sqrt(sw2/n) V relu(g_L) + sqrt(sb2) b_out                       (V: K x n, b_out: K)

so that, as n -> infinity, the empirical NTK sum_theta <df/dtheta, df'/dtheta> tends to the program's
``ntk(f[i], f[j]) + sb2`` (times the K x K identity). Training: gradient flow on the squared loss
L = 1/2 sum_i |f(x_i) - Y_i|^2 over the training points (d theta/dt = -grad L, every parameter at unit
rate), integrated by classical Runge-Kutta (RK4): the small-learning-rate limit of gradient descent,
whose discretisation error (dt^4) is far below the width effects. Its infinite-width ensemble mean at
time t is ``predict``'s Theta_xX Theta_XX^-1 (I - exp(-Theta_XX t)) Y.

Antithetic pairs: every initialisation is trained beside its copy with (V, b_out) negated. Both have
the same empirical NTK and opposite initial functions, so the pair's mean prediction has no O(1)
random initial function; it differs from the kernel prediction by the empirical NTK's fluctuations and
the nonlinear corrections, O(n^-1/2).
"""
from __future__ import annotations

import math

import numpy as np

SW2, SB2 = 2.0, 0.1


def init(depth, width, d, outputs, pairs, rng):
    """Standard normal parameters of ``pairs`` networks followed by their antithetic copies (2 pairs dicts)."""
    nets = []
    for _ in range(pairs):
        p = {"W1": rng.standard_normal((width, d)), "b1": rng.standard_normal(width)}
        for l in range(2, depth + 1):
            p[f"W{l}"] = rng.standard_normal((width, width))
            p[f"b{l}"] = rng.standard_normal(width)
        p["V"] = rng.standard_normal((outputs, width))
        p["bout"] = rng.standard_normal(outputs)
        nets.append(p)
    return nets + [{k: -a if k in ("V", "bout") else a for k, a in p.items()} for p in nets]


def _depth(p):
    return sum(1 for k in p if k.startswith("W"))


def forward(p, X):
    """f (P, K) of one network at the points X (P, d), and its pre-activations g_l (P, n).
    Products are written W x^T (BLAS on the wide matrix; numpy's x @ W.T is slower for few rows)."""
    n, d = p["V"].shape[1], X.shape[1]
    cw, cb = math.sqrt(SW2 / n), math.sqrt(SB2)
    g = [(math.sqrt(SW2 / d) * (p["W1"] @ X.T)).T + cb * p["b1"]]
    for l in range(2, _depth(p) + 1):
        g.append((cw * (p[f"W{l}"] @ np.maximum(g[-1], 0.0).T)).T + cb * p[f"b{l}"])
    f = cw * np.maximum(g[-1], 0.0) @ p["V"].T + cb * p["bout"]
    return f, g


def gradients(p, X, Y):
    """dL/dtheta of L = 1/2 sum_{i, k} (f_k(x_i) - Y_ik)^2 for one network, by backpropagation:
    with r = f - Y, dL/dV = cw r^T relu(g_L), dL/dg_L = cw (r V) relu'(g_L), dL/dW_l = cw dg_l^T relu(g_{l-1}),
    dL/dg_{l-1} = cw (dg_l W_l) relu'(g_{l-1}), dL/dW_1 = sqrt(sw2/d) dg_1^T X, dL/db_l = cb sum_i dg_l."""
    n, d = p["V"].shape[1], X.shape[1]
    cw, cb = math.sqrt(SW2 / n), math.sqrt(SB2)
    f, g = forward(p, X)
    r = f - Y
    grad = {"bout": cb * r.sum(axis=0), "V": cw * r.T @ np.maximum(g[-1], 0.0)}
    dg = cw * (r @ p["V"]) * (g[-1] > 0)
    for l in range(_depth(p), 1, -1):
        grad[f"W{l}"] = cw * dg.T @ np.maximum(g[l - 2], 0.0)
        grad[f"b{l}"] = cb * dg.sum(axis=0)
        dg = cw * (dg @ p[f"W{l}"]) * (g[l - 2] > 0)
    grad["W1"] = math.sqrt(SW2 / d) * dg.T @ X
    grad["b1"] = cb * dg.sum(axis=0)
    return grad


def train(p, X, Y, time, steps):
    """Gradient flow d theta/dt = -grad L from 0 to ``time`` in ``steps`` RK4 steps (a new dict)."""
    dt = time / steps

    def moved(q, k, h):
        return {name: q[name] - h * k[name] for name in q}

    for _ in range(steps):
        k1 = gradients(p, X, Y)
        k2 = gradients(moved(p, k1, dt / 2), X, Y)
        k3 = gradients(moved(p, k2, dt / 2), X, Y)
        k4 = gradients(moved(p, k3, dt), X, Y)
        p = {k: p[k] - dt / 6 * (k1[k] + 2 * k2[k] + 2 * k3[k] + k4[k]) for k in p}
    return p


def trained_predictions(depth, width, X, Y, X_test, time, steps, pairs, seed):
    """Test predictions (2 pairs, P_test, K) of the trained networks; rows i and pairs + i are a pair."""
    rng = np.random.default_rng(seed)
    out = []
    for p in init(depth, width, X.shape[1], Y.shape[1], pairs, rng):
        f = forward(train(p, X, Y, time, steps), X_test)[0]
        if not np.all(np.isfinite(f)):
            raise FloatingPointError(f"training diverged at width {width}: use more RK4 steps")
        out.append(f)
    return np.array(out)


def width_sweep(depth, widths, X, Y, X_test, Y_test, target, time, steps=20, pairs=2, seed=0):
    """Per width: (width, test accuracy of the single networks (mean), test accuracy of the pairs' means,
    RMS distance of the pairs' mean predictions to ``target`` (the NTK gradient-flow prediction at ``time``));
    and the fitted exponent of RMS against width (slope of log RMS on log width)."""
    rows = []
    for w in widths:
        f = trained_predictions(depth, w, X, Y, X_test, time, steps, pairs, seed + w)
        labels = np.argmax(Y_test, axis=1)[None]
        pair_mean = (f[:pairs] + f[pairs:]) / 2
        rows.append((w, float(np.mean(np.argmax(f, axis=2) == labels)),
                     float(np.mean(np.argmax(pair_mean, axis=2) == labels)),
                     math.sqrt(float(np.mean((pair_mean - target[None]) ** 2)))))
    slope = float(np.polyfit(np.log(widths), np.log([r[3] for r in rows]), 1)[0]) if len(rows) > 1 else math.nan
    return rows, slope


def finite_width_table(widths, digits, program, n_train=256, n_test=200, time=0.1, steps=40, pairs=2, seed=0):
    """Markdown table: 1-hidden-layer relu MLPs trained to ``time`` at each width beside the NTK gradient-flow
    prediction of ``program(1)`` (tensorprog.predict) on the first ``n_train``/``n_test`` images of ``digits``.
    time = 0.1 with the sum-over-points loss: the largest train-NTK eigenvalue is ~240, so the flow has
    fitted the leading directions but not converged (test accuracy 0.95 vs 0.98 at t = infinity)."""
    import tensorprog

    xtr, ytr, xte, yte = digits(n_train, n_test)
    pred = tensorprog.predict(program(1), xtr, ytr, xte, y_test=yte, times=[time], kernel="ntk")
    rows, slope = width_sweep(1, widths, xtr, ytr, xte, yte, pred.mean[0], time, steps=steps, pairs=pairs, seed=seed)
    lines = [f"{n_train} training / {n_test} test images, 1 hidden layer, gradient flow to t = {time} "
             f"({steps} RK4 steps), {pairs} antithetic pairs per width; NTK prediction: test accuracy "
             f"{pred.test_accuracy[0]:.4f}, RMS {math.sqrt(float(np.mean(pred.mean[0] ** 2))):.4f}",
             "",
             "| width | test accuracy, single networks | test accuracy, pair means | RMS(pair mean - NTK prediction) |",
             "|---|---|---|---|"]
    lines += [f"| {w} | {acc:.4f} | {acc_pair:.4f} | {rms:.4f} |" for w, acc, acc_pair, rms in rows]
    lines.append(f"\nfitted exponent of the RMS distance against width: {slope:.2f} (n^-1/2: -0.5)")
    return "\n".join(lines)
