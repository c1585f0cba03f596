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
relu's at every N (best of --repeat interleaved runs: the least disturbed by other processes).
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


def cases(N, depth, repeat, folder, numpy_max):
    """Both functions at one N, their runs interleaved (relu, erf, relu, ...) so that load from other
    processes falls on both alike."""
    import tensorprog

    X = np.random.default_rng(0).standard_normal((N, 16))
    path = folder / f"X{N}.npy"
    np.save(path, X)
    phis = ("relu", "erf")
    text = {phi: mlp_program(phi, depth, 2.0, 0.1, f'load("{path}")') for phi in phis}
    for phi in phis:
        end_to_end(text[phi])                                    # warm-up
    phases = {phi: [] for phi in phis}
    res = {}
    for _ in range(repeat):
        for phi in phis:
            t, res[phi] = end_to_end(text[phi])
            phases[phi].append(t)
    limits = {phi: tensorprog.derive(tensorprog.parse(text[phi], name="mlp.tp")) for phi in phis}
    alone = {phi: [] for phi in phis}
    for _ in range(repeat):
        for phi in phis:
            t0 = time.perf_counter()
            tensorprog.evaluate(limits[phi])
            alone[phi].append(time.perf_counter() - t0)
    rows = {}
    for phi in phis:
        p = phases[phi]
        r = dict(parse=statistics.median(x[0] for x in p), derive=statistics.median(x[1] for x in p),
                 evaluate=statistics.median(x[2] for x in p), e2e=statistics.median(sum(x) for x in p),
                 alone=statistics.median(alone[phi]), best=min(alone[phi]), numpy=float("nan"), diff=float("nan"))
        r["rate"] = N * N * depth / r["best"] / 1e6
        if N <= numpy_max:
            t0 = time.perf_counter()
            nngp, ntk = numpy_baseline(phi, X, depth)
            r["numpy"] = time.perf_counter() - t0
            r["diff"] = max(np.max(np.abs(res[phi]["NNGP"].value - nngp)) / np.max(np.abs(nngp)),
                            np.max(np.abs(res[phi]["NTK"].value - ntk)) / np.max(np.abs(ntk)))
        rows[phi] = r
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000,8000")
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--numpy-max", type=int, default=8000, help="largest N for the numpy baseline "
                    "(~100-200 s per function at N = 8000 on this machine)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for N in sizes:
            for phi, r in cases(N, args.depth, args.repeat, Path(tmp), args.numpy_max).items():
                rows[phi, N] = r
                print(f"{phi:4s} N={N:5d}: parse {r['parse']:.3f} s, derive {r['derive']:.3f} s, evaluate "
                      f"{r['evaluate']:.3f} s = end to end {r['e2e']:.3f} s; evaluate alone {r['alone']:.3f} s "
                      f"(best {r['best']:.3f} s, {r['rate']:.0f} M entries*layers/s); numpy {r['numpy']:.3f} s; "
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
