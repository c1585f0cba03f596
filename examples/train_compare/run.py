"""Five steps of gradient descent in the infinite-width limit, in SP, NTK, muP and mean-field, side by side.

Usage: python examples/train_compare/run.py [--steps 5] [--samples 262144] [--plot compare.png]

The network: 3 hidden tanh layers on 6 points of R^3 (the first 4 train, squared loss, labels
1, -1, 0.5, 0; the last 2 are test points), trained by full-batch gradient descent with learning rate
ETA, every parametrization written as one program with `gd(...)` (docs/train.md):

* muP: output f = mean(v x) (a 1/n readout), every parameter at rate 1 (`gd(...)`, scale 1);
* NTK: output sqrt(n) f, every parameter at rate 1 (`scale = sqrt(n)`: the kernel regime);
* SP with learning rate eta/n: output sqrt(n) f, rates 1 for the hidden matrices and the readout,
  d/n for the input layer (docs/ntk.md's table; its update vanishes in the limit);
* mean-field: the one-hidden-layer network with the 1/n readout (for one hidden layer muP is the
  mean-field parametrization; deeper mean-field limits are not Tensor Programs of this kind).

For each: the test function after every step, the training loss, and how far the last hidden layer's
feature kernel K = mean(tanh(h) tanh(h')) moved from initialisation (max over pairs): exactly 0 in
the kernel regime (NTK, SP), Theta(1) in muP and mean-field.  Evaluation: the sampled limit (method
"sampled", standard errors printed).  With --plot, a PNG with the three panels.
"""
from __future__ import annotations

import argparse

import numpy as np

import tensorprog

X = [[1, 0.5, -0.5], [0.2, 1, 0.4], [-1, 0, 1], [0.5, 0.5, 0.5], [0, 1, 0], [1, -1, 0]]
Y = [1.0, -1.0, 0.5, 0.0]
ETA = 1.0

DEEP = """data X = {X}
data Y = {Y}
param (rate = {rU}) vector h[1][i] ~ N(0, dot(X[i], X[i']) / dim(X))
param matrix W[l] ~ N(0, 1/n) for l in 2..3
param vector v ~ N(0, 1)
for l in 2..3: h[l][i] = W[l] @ tanh(h[l-1][i])
f[i] = mean(v * tanh(h[3][i]))
out F[t][k] = gd(f[k], Y, {eta}, t{opt}) for t in 0..{T}
out L[t] = sum((gd(f[m], Y, {eta}, t{opt}) - Y[m])^2 for m in 0..3) / 2 for t in 0..{T}
out K[t][i, j] = mean(tanh(gd(f[i], Y, {eta}, t{opt}, value = h[3][i])) * tanh(gd(f[j], Y, {eta}, t{opt}, value = h[3][j]))) for t in 0..{T}
"""

SHALLOW = """data X = {X}
data Y = {Y}
param vector h[i] ~ N(0, dot(X[i], X[i']) / dim(X))
param vector v ~ N(0, 1)
f[i] = mean(v * tanh(h[i]))
out F[t][k] = gd(f[k], Y, {eta}, t) for t in 0..{T}
out L[t] = sum((gd(f[m], Y, {eta}, t) - Y[m])^2 for m in 0..3) / 2 for t in 0..{T}
out K[t][i, j] = mean(tanh(gd(f[i], Y, {eta}, t, value = h[i])) * tanh(gd(f[j], Y, {eta}, t, value = h[j]))) for t in 0..{T}
"""


def programs(steps: int) -> dict:
    """name -> program text."""
    common = dict(X=X, Y=Y, eta=ETA, T=steps)
    return {
        "muP": DEEP.format(rU=1, opt="", **common),
        "NTK": DEEP.format(rU=1, opt=", scale = sqrt(n)", **common),
        "SP (lr eta/n)": DEEP.format(rU="3/n", opt=", scale = sqrt(n)", **common),
        "mean-field (1 hidden)": SHALLOW.format(**common),
    }


def compare(steps: int = 5, samples: int = 1 << 18) -> dict:
    """name -> {"F": test function (steps + 1, 2), "L": loss (steps + 1,), "dK": max |K_t - K_0| per step,
    and their standard errors "F_se", "L_se", "dK_se"}."""
    out = {}
    for name, src in programs(steps).items():
        res = tensorprog.evaluate(src, method="sampled", samples=samples)
        F, L, K = res["F"], res["L"], res["K"]
        dK = np.abs(K.value - K.value[0]).reshape(steps + 1, -1)
        out[name] = {"F": F.value[:, 4:], "F_se": F.error[:, 4:], "L": L.value, "L_se": L.error,
                     "dK": dK.max(axis=1), "dK_se": (K.error + K.error[0]).reshape(steps + 1, -1).max(axis=1)}
    return out


def plot(results: dict, path: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name, r in results.items():
        t = np.arange(len(r["L"]))
        axes[0].errorbar(t, r["F"][:, 0], yerr=r["F_se"][:, 0], marker="o", label=name)
        axes[1].errorbar(t, r["L"], yerr=r["L_se"], marker="o", label=name)
        axes[2].errorbar(t, r["dK"], yerr=r["dK_se"], marker="o", label=name)
    axes[0].set_title("f at the test point X[4]")
    axes[1].set_title("training loss")
    axes[2].set_title("feature-kernel movement max |K_t - K_0|")
    for ax in axes:
        ax.set_xlabel("step")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--samples", type=int, default=1 << 18)
    ap.add_argument("--plot", metavar="FILE.png")
    a = ap.parse_args()
    results = compare(a.steps, a.samples)
    print(f"| parametrization | f(X[4]) after {a.steps} steps | loss after {a.steps} steps | max feature-kernel movement |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['F'][-1, 0]:.4f} +- {r['F_se'][-1, 0]:.1e} | {r['L'][-1]:.4f} +- {r['L_se'][-1]:.1e} "
              f"| {r['dK'][-1]:.4f} +- {r['dK_se'][-1]:.1e} |")
    if a.plot:
        plot(results, a.plot)
        print(f"wrote {a.plot}")


if __name__ == "__main__":
    main()
