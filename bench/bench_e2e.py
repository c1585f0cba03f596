"""End to end: parse + derive + evaluate against evaluate alone and the numpy baseline (issue 16).

Usage: python bench/bench_e2e.py [--sizes 2000,8000] [--depth 10] [--repeat 3]

For the relu and erf MLPs of depth L (NNGP + NTK, forward and explicit backward pass, inputs of
dimension 16 loaded from a .npy file) at each N, all in this process after one warm-up run (kernels
compiled or loaded, imports done):

* end to end: ``tensorprog.parse`` of the program text, ``tensorprog.derive``, ``tensorprog.evaluate``
  (median of --repeat, each phase's time from the same runs);
* evaluate alone: ``tensorprog.evaluate`` of the derived limit (median of --repeat);
* numpy: the straightforward vectorised recursion of bench/bench_evaluate.py (same run).

Targets (ratios within this run): parse < 10% of end to end at the largest N; end to end <= 1.5x
evaluate alone at the smallest N; erf's evaluate throughput (entries x layers per second) >= 80% of
relu's at every N.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from bench_evaluate import numpy_baseline  # noqa: E402
from mlp_truths import mlp_program  # noqa: E402


def end_to_end(text):
    """(seconds of parse, derive, evaluate) of one run and its results."""
    import tensorprog

    t0 = time.perf_counter()
    prog = tensorprog.parse(text, name="mlp.tp")
    t1 = time.perf_counter()
    limit = tensorprog.derive(prog)
    t2 = time.perf_counter()
    res = tensorprog.evaluate(limit)
    t3 = time.perf_counter()
    return (t1 - t0, t2 - t1, t3 - t2), res


def case(phi, N, depth, repeat, folder):
    import tensorprog

    X = np.random.default_rng(0).standard_normal((N, 16))
    path = folder / f"X{N}.npy"
    np.save(path, X)
    text = mlp_program(phi, depth, 2.0, 0.1, f'load("{path}")')
    end_to_end(text)                                    # warm-up
    phases = []
    for _ in range(repeat):
        t, res = end_to_end(text)
        phases.append(t)
    parse, derive, ev = (statistics.median(p[k] for p in phases) for k in range(3))
    e2e = statistics.median(sum(p) for p in phases)
    limit = tensorprog.derive(tensorprog.parse(text, name="mlp.tp"))
    alone = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        tensorprog.evaluate(limit)
        alone.append(time.perf_counter() - t0)
    alone = statistics.median(alone)
    t0 = time.perf_counter()
    nngp, ntk = numpy_baseline(phi, X, depth)
    t_np = time.perf_counter() - t0
    diff = max(np.max(np.abs(res["NNGP"].value - nngp)) / np.max(np.abs(nngp)),
               np.max(np.abs(res["NTK"].value - ntk)) / np.max(np.abs(ntk)))
    return dict(parse=parse, derive=derive, evaluate=ev, e2e=e2e, alone=alone, numpy=t_np, diff=diff,
                rate=N * N * depth / alone / 1e6)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000,8000")
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for N in sizes:
            for phi in ("relu", "erf"):
                r = rows[phi, N] = case(phi, N, args.depth, args.repeat, Path(tmp))
                print(f"{phi:4s} N={N:5d}: parse {r['parse']:.3f} s, derive {r['derive']:.3f} s, evaluate "
                      f"{r['evaluate']:.3f} s = end to end {r['e2e']:.3f} s; evaluate alone {r['alone']:.3f} s "
                      f"({r['rate']:.0f} M entries*layers/s); numpy {r['numpy']:.3f} s; "
                      f"end to end vs numpy x{r['numpy'] / r['e2e']:.1f}; max rel. difference {r['diff']:.1e}",
                      flush=True)
    lo, hi = min(sizes), max(sizes)
    for phi in ("relu", "erf"):
        r = rows[phi, hi]
        print(f"{phi}: parse share of end to end at N={hi}: {100 * r['parse'] / r['e2e']:.1f}% (target < 10%); "
              f"end to end / evaluate alone at N={lo}: {rows[phi, lo]['e2e'] / rows[phi, lo]['alone']:.2f}x "
              f"(target <= 1.5x)")
    for N in sizes:
        print(f"erf / relu evaluate throughput at N={N}: "
              f"{rows['erf', N]['rate'] / rows['relu', N]['rate']:.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
