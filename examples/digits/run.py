"""Infinite-width relu MLPs on handwritten digits: NNGP and NTK test accuracy against depth.

Usage: python examples/digits/run.py [--train 1000] [--depths 1,2,3,5,10] [--curve 50,100,200,500,1000]

Needs scikit-learn, for its copy of the UCI 8x8 digits (1,797 images, shipped inside the package: no
download): ``pip install "tensorprog[examples]"``. The images are scaled to [0, 1], centred by the
training mean and normalised to norm sqrt(64); labels are one-hot (the predicted class is the
largest output). The first ``--train`` images of a fixed shuffle train, the rest test. For each
depth L (hidden layers) examples/ntk_mlp.tp (its NTK written by the compiler, ntk(...)) gives the
NNGP and NTK kernels over all 1,797 images at once; ``tensorprog.predict`` turns them into the
t = infinity predictions: the NNGP posterior mean (noise 1e-6, a jitter) and the NTK gradient-flow
limit (kernel regression with the NTK). Prints a markdown table (as in docs/predict.md) and, with
``--curve``, test accuracy against training-set size.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

import tensorprog

MLP_NTK = Path(__file__).resolve().parents[1] / "ntk_mlp.tp"


def program(depth: int) -> str:
    """examples/ntk_mlp.tp (relu MLP, NTK parametrization, sw2 = 2, sb2 = 0.1; NNGP and ntk(...) outputs)
    with ``depth`` hidden layers, reading its points from points.npy (``predict`` provides them)."""
    lines = []
    for line in MLP_NTK.read_text().splitlines():
        if line.startswith("const L = "):
            line = line.replace("L = 3,", f"L = {int(depth)},")
        elif line.startswith("data X = "):
            line = 'data X = load("points.npy")'
        lines.append(line)
    return "\n".join(lines) + "\n"


def digits(n_train: int, n_test: int | None = None, seed: int = 0):
    """(X_train, Y_train, X_test, Y_test): preprocessed images and one-hot labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(seed).permutation(len(data.target))
    x = data.data[order] / 16.0
    labels = data.target[order]
    n_test = len(labels) - n_train if n_test is None else n_test
    x = x[: n_train + n_test]
    x = x - x[:n_train].mean(axis=0)
    x = x / np.linalg.norm(x, axis=1, keepdims=True) * math.sqrt(x.shape[1])
    y = np.eye(10)[labels[: n_train + n_test]]
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def accuracy_table(depths, n_train, n_test=None):
    """Rows (depth, NNGP accuracy, NTK accuracy) of the t = infinity predictions."""
    xtr, ytr, xte, yte = digits(n_train, n_test)
    rows = []
    for depth in depths:
        nngp = tensorprog.predict(program(depth), xtr, ytr, xte, y_test=yte, kernel="nngp", noise=1e-6)
        ntk = tensorprog.predict(program(depth), xtr, ytr, xte, y_test=yte, kernel="ntk")
        rows.append((depth, nngp.test_accuracy[-1], ntk.test_accuracy[-1]))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--depths", default="1,2,3,5,10")
    ap.add_argument("--curve", default="", help="training-set sizes for a learning curve (NTK, depth 3)")
    args = ap.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    rows = accuracy_table(depths, args.train)
    print(f"{args.train} training images, {1797 - args.train} test images; test accuracy at t = infinity\n")
    print("| hidden layers | NNGP | NTK |\n|---|---|---|")
    for depth, a_nngp, a_ntk in rows:
        print(f"| {depth} | {a_nngp:.4f} | {a_ntk:.4f} |")
    if args.curve:
        from tensorprog.predict_curve import learning_curve

        sizes = [int(s) for s in args.curve.split(",")]
        xtr, ytr, xte, yte = digits(max(sizes))
        curve = learning_curve(program(3), xtr, ytr, xte, sizes, y_test=yte, kernel="ntk")
        print()
        print(curve.summary())


if __name__ == "__main__":
    main()
