"""Predictions at scale: kernel evaluation + linear algebra of `tensorprog.predict`.

Usage: python bench/bench_predict.py [--sizes 1797,10000] [--depth 3]

For each total number of points N (train = 80%, test = 20%; synthetic inputs of dimension 64, as
many as the digits data set at N = 1797) the relu MLP NNGP + NTK kernels are evaluated over all N
points and the NTK gradient-flow prediction at t = 1 and t = infinity is solved. Reported: the
kernel time, the solve time, and, as the baseline measured in the same run, numpy's Cholesky
solve (``np.linalg.cholesky`` + two triangular solves) of the same train system: the prediction
needs an eigendecomposition (finite times, conditioning), a few times the cost of Cholesky.
"""
import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.linalg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "digits"))
import tensorprog  # noqa: E402
from run import program  # noqa: E402  (the digits example's relu MLP program)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1797,10000")
    ap.add_argument("--depth", type=int, default=3)
    args = ap.parse_args()
    from tensorprog.predict_program import predict_from_kernels

    print(f"relu MLP, {args.depth} hidden layers, NTK flow at t = 1 and t = inf")
    print(f"{'N':>7} {'n_train':>8} {'kernel s':>9} {'solve s':>8} {'cholesky s':>11} {'solve/chol':>11}")
    for N in [int(s) for s in args.sizes.split(",")]:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((N, 64))
        x *= math.sqrt(64) / np.linalg.norm(x, axis=1, keepdims=True)
        n_train = int(0.8 * N)
        y = np.eye(10)[rng.integers(0, 10, N)]
        with tempfile.TemporaryDirectory() as tmp:
            np.save(Path(tmp) / "points.npy", x)
            text = program(args.depth).replace('load("points.npy")', f'load("{Path(tmp) / "points.npy"}")')
            t0 = time.perf_counter()
            res = tensorprog.evaluate(text)
            t1 = time.perf_counter()
        K, theta = res["NNGP"].value, res["NTK"].value
        t2 = time.perf_counter()
        predict_from_kernels(K, theta, n_train, y[:n_train], y[n_train:], times=(1.0, math.inf), kernel="ntk")
        t3 = time.perf_counter()
        A = theta[:n_train, :n_train]
        c = scipy.linalg.cho_factor(A, lower=True)
        scipy.linalg.cho_solve(c, y[:n_train])
        t4 = time.perf_counter()
        print(f"{N:>7} {n_train:>8} {t1 - t0:9.2f} {t3 - t2:8.2f} {t4 - t3:11.2f} {(t3 - t2) / (t4 - t3):11.1f}")


if __name__ == "__main__":
    main()
