"""ntk(...) against the hand-written NTK program: what a user waits for, in one run.

Usage: python bench/bench_ntk.py [--n 2000] [--depth 10] [--deep 100] [--repeat 3]

1. A depth-10 relu MLP with biases over N = 2000 random points in d = 16: the NNGP + NTK program
   with the backward pass and the NTK written by hand (tests/mlp_truths.py mlp_program) against the
   same forward network with `param`s and ntk(f[i], f[j]) (ntk_mlp_program): parse, derive and
   evaluate times (best of --repeat, kernels compiled beforehand) and the ratio generated / hand
   (target: evaluation within 1.2x), and the largest relative difference of the two NTKs.
2. The derivation of a depth-100 ntk(...) program (target < 5 s), against the hand-written one.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import tensorprog  # noqa: E402
from mlp_truths import inline_data, mlp_program, ntk_mlp_program  # noqa: E402


def timed(text, repeat):
    """(best parse s, best derive s, best evaluate s, the NTK)."""
    best = [np.inf] * 3
    for _ in range(repeat):
        t0 = time.perf_counter()
        program = tensorprog.parse(text)
        t1 = time.perf_counter()
        limit = tensorprog.derive(program)
        t2 = time.perf_counter()
        res = tensorprog.evaluate(limit)
        t3 = time.perf_counter()
        best = [min(b, t) for b, t in zip(best, (t1 - t0, t2 - t1, t3 - t2))]
    return (*best, res["NTK"].value)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--deep", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((a.n, 16))
    tmp = tempfile.TemporaryDirectory()
    np.save(Path(tmp.name) / "X.npy", X)
    data = f'load("{Path(tmp.name) / "X.npy"}")'
    hand = mlp_program("relu", a.depth, 2.0, 0.1, data)
    gen = ntk_mlp_program("relu", a.depth, 2.0, 0.1, data)
    timed(hand, 1), timed(gen, 1)           # compile the kernels of both once
    h = timed(hand, a.repeat)
    g = timed(gen, a.repeat)
    print(f"depth {a.depth} relu MLP, N = {a.n}, d = 16 (best of {a.repeat}):")
    print(f"{'':>14} {'parse s':>9} {'derive s':>9} {'eval s':>9} {'total s':>9}")
    for name, r in (("hand-written", h), ("ntk(...)", g)):
        print(f"{name:>14} {r[0]:9.3f} {r[1]:9.3f} {r[2]:9.3f} {sum(r[:3]):9.3f}")
    print(f"ratio ntk(...) / hand-written: evaluate {g[2] / h[2]:.2f} (target <= 1.2), "
          f"total {sum(g[:3]) / sum(h[:3]):.2f}")
    print(f"max relative difference of the NTKs: {np.max(np.abs(g[3] - h[3]) / np.abs(h[3])):.1e}")
    small = inline_data(X[:4])
    for name, text in (("hand-written", mlp_program("relu", a.deep, 2.0, 0.1, small)),
                       ("ntk(...)", ntk_mlp_program("relu", a.deep, 2.0, 0.1, small))):
        t0 = time.perf_counter()
        program = tensorprog.parse(text)
        t1 = time.perf_counter()
        tensorprog.derive(program)
        t2 = time.perf_counter()
        print(f"depth {a.deep}, {name}: parse {t1 - t0:.2f} s, derive {t2 - t1:.2f} s (target for ntk(...): < 5 s)")


if __name__ == "__main__":
    main()
