"""Infinite-width relu MLPs on handwritten digits: NNGP and NTK test accuracy against depth.

Usage: python examples/digits/run.py [--train 1000] [--depths 1,2,3,5,10] [--curve 50,100,200,500,1000]
                                    [--gap all | --gap TRAIN,TEST] [--finite 256,1024,4096] [--mup 1,2,5,10,20]

Needs scikit-learn, for its copy of the UCI 8x8 digits (1,797 images, shipped inside the package: no
download): ``pip install "tensorprog[examples]"``. The images are scaled to [0, 1], centred by the
training mean and normalised to norm sqrt(64); labels are one-hot (the predicted class is the
largest output). The first ``--train`` images of a fixed shuffle train, the rest test. For each
depth L (hidden layers) examples/ntk_mlp.tp (its NTK written by the compiler, ntk(...)) gives the
NNGP and NTK kernels over all 1,797 images at once; ``tensorprog.predict`` turns them into the
t = infinity predictions: the NNGP posterior mean (noise 1e-6, a jitter) and the NTK gradient-flow
limit (kernel regression with the NTK). Prints a markdown table (as in docs/predict.md) and, with
``--curve``, test accuracy against training-set size. ``--gap``: the GAP sequence model over the 8
rows of each image (gap_rows.tp) as a last table row; ``--finite``: finite-width networks trained in
numpy beside the NTK prediction (finite_width.py); ``--mup``: the muP feature-learning limit after T
steps against the kernel regime on 3 vs 8 (mup.py). docs/predict.md shows the output.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

import tensorprog

MLP_NTK = Path(__file__).resolve().parents[1] / "ntk_mlp.tp"
GAP_ROWS = Path(__file__).resolve().parent / "gap_rows.tp"
if str(GAP_ROWS.parent) not in sys.path:  # the example's own modules (finite_width, mup)
    sys.path.insert(0, str(GAP_ROWS.parent))


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


def gap_program() -> str:
    """examples/digits/gap_rows.tp: a GAP model over the 8 rows of each image (its points: images x 8 x 8)."""
    return GAP_ROWS.read_text()


def gap_accuracy(n_train, n_test=None):
    """(NNGP accuracy, NTK accuracy) at t = infinity of the GAP row model, on the split of ``digits``.
    Its two kernels come from one evaluation of the program (``kernels_on``, what ``tensorprog.predict``
    evaluates) and go through ``predict``'s own solve (``predict_from_kernels``) for each kernel: the GAP
    kernels are the slow part (64 row pairs per image pair), not worth computing twice."""
    from tensorprog.predict_program import kernels_on, predict_from_kernels

    xtr, ytr, xte, yte = digits(n_train, n_test)
    images = np.concatenate([xtr, xte]).reshape(-1, 8, 8)   # sklearn's pixels are row-major: 8 rows of 8
    k = kernels_on(gap_program(), images, ["NNGP", "NTK"])
    nngp = predict_from_kernels(k["NNGP"], k["NTK"], len(xtr), ytr, yte, kernel="nngp", noise=1e-6)
    ntk = predict_from_kernels(k["NNGP"], k["NTK"], len(xtr), ytr, yte, kernel="ntk")
    return nngp.test_accuracy[-1], ntk.test_accuracy[-1]


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
    ap.add_argument("--gap", default="", metavar="TRAIN,TEST",
                    help="add the GAP row model to the table, on the first TRAIN,TEST images of the split "
                         "('all': the same split as the MLPs; its kernels over 1,797 images take ~6 minutes "
                         "and ~12 GiB)")
    ap.add_argument("--finite", default="", metavar="WIDTHS",
                    help="finite-width trained MLPs (1 hidden layer) beside the NTK flow, e.g. 256,1024,4096")
    ap.add_argument("--mup", default="", metavar="STEPS",
                    help="muP limit after T steps vs the kernel regime on 3 vs 8, e.g. 1,5,10")
    args = ap.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    rows = accuracy_table(depths, args.train)
    print(f"{args.train} training images, {1797 - args.train} test images; test accuracy at t = infinity\n")
    print("| model | NNGP | NTK |\n|---|---|---|")
    for depth, a_nngp, a_ntk in rows:
        print(f"| relu MLP, {depth} hidden layer{'s' if depth > 1 else ''} | {a_nngp:.4f} | {a_ntk:.4f} |")
    if args.gap:
        n_train, n_test = (args.train, None) if args.gap == "all" else map(int, args.gap.split(","))
        a_nngp, a_ntk = gap_accuracy(n_train, n_test)
        where = "" if args.gap == "all" else f" ({n_train} train / {n_test} test images)"
        print(f"| GAP over the 8 rows{where} | {a_nngp:.4f} | {a_ntk:.4f} |")
    if args.finite:
        from finite_width import finite_width_table

        print()
        print(finite_width_table([int(w) for w in args.finite.split(",")], digits, program))
    if args.mup:
        from mup import comparison_table

        print()
        print(comparison_table([int(t) for t in args.mup.split(",")]))
    if args.curve:
        from tensorprog.predict_curve import learning_curve

        sizes = [int(s) for s in args.curve.split(",")]
        xtr, ytr, xte, yte = digits(max(sizes))
        curve = learning_curve(program(3), xtr, ytr, xte, sizes, y_test=yte, kernel="ntk")
        print()
        print(curve.summary())


if __name__ == "__main__":
    main()
