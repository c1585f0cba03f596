"""Large kernels: a depth-10 relu MLP's NNGP and NTK (inputs of dimension 32) evaluated out of core
into a zarr store, against the in-memory path at N = 4000 measured in the same run.

Usage: python bench/bench_large.py [--sizes 10000,20000,50000] [--memory 2G] [--baseline 4000]

Each configuration runs in a fresh process (its peak RSS is that process's ru_maxrss).  Reported per
N: wall time, peak RSS, tile side, and the throughput in kernel entries x layers per second as a ratio
against the in-memory evaluation at the baseline N (target >= 0.7); the time exponent between
successive sizes should be about 2.  The machine is shared: the ratio, measured in the same run, is
the figure to read, not the absolute times.

Columns "front end" (the peak RSS when the limit is derived, before any evaluation) and "held" (the
RSS the front end leaves: its data tables) separate the front end's memory from the evaluation's;
"eval peak" is the peak RSS of the evaluation alone (the kernel's high-water mark reset after the
derivation), data tables included.  Peak RSS includes the front end's data tables: the program's input covariances (two N x N float64
tables, dot(X[i], X[j]) terms) are built in memory by the front end before any tiling, 2 x 8 N^2
bytes (1.6 GB at N = 10k, 6.4 GB at 20k, 40 GB at 50k): sizes whose tables do not fit are skipped.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEPTH = 10
DIM = 32

PROGRAM = """
const L = {depth}, sw2 = 2.0, sb2 = 0.1
data X = load("{points}")

param matrix W[l] ~ N(0, sw2/n) for l in 2..L
param vector b[l] ~ N(0, sb2) for l in 2..L
param vector g[1][i] ~ N(0, sw2 * dot(X[i], X[i']) / dim(X) + sb2)
param vector v ~ N(0, sw2)

for l in 2..L: g[l][i] = W[l] @ relu(g[l-1][i]) + b[l]
f[i] = mean(v * relu(g[L][i]))

out NNGP[i, j] = sw2 * mean(relu(g[L][i]) * relu(g[L][j])) + sb2
out NTK[i, j] = ntk(f[i], f[j]) + sb2
"""


def write_program(workdir, n):
    rng = np.random.default_rng(0)
    points = Path(workdir) / f"x{n}.npy"
    np.save(points, rng.standard_normal((n, DIM)) / np.sqrt(DIM))
    path = Path(workdir) / f"mlp{n}.tp"
    path.write_text(PROGRAM.format(depth=DEPTH, points=points.name))
    return path


def one(mode, n, workdir, memory):
    """Run one configuration in this process; print a JSON line."""
    sys.path.insert(0, str(ROOT))
    import tensorprog
    from tensorprog.numeric.outofcore import evaluate_to_store, parse_memory

    import psutil

    path = write_program(workdir, n)
    t0 = time.perf_counter()
    limit = tensorprog.derive(str(path))
    t1 = time.perf_counter()
    front_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # the front end's peak
    held = psutil.Process().memory_info().rss                               # what it leaves (data tables)
    reset = _reset_peak()
    if mode == "memory":
        tensorprog.evaluate(limit)              # compiles (or loads) the kernels: not timed
        t1 = time.perf_counter()
        res = tensorprog.evaluate(limit)
        assert np.all(np.isfinite(res["NTK"].value))
        chunk = n
    else:
        # the tile kernels compiled (or loaded from the cache) on a small run first: not timed
        small = tensorprog.derive(str(write_program(workdir, 512)))
        warm = tempfile.mkdtemp(dir=workdir)
        evaluate_to_store(small, str(Path(warm) / "warm.zarr"), chunk=256, log=lambda s: None)
        t1 = time.perf_counter()
        store = Path(workdir) / f"k{n}.zarr"
        # the budget: the front end's data tables (held throughout) plus MEMORY for the tiles
        tables = sum(q.definition.array.nbytes for q in limit.quantities
                     if type(q.definition).__name__ == "Data" and len(q.axes) >= 2)
        summary = evaluate_to_store(limit, str(store), memory=tables + parse_memory(memory), log=lambda s: None)
        chunk = summary["chunk"]
        fixed = summary["points_time"]
    t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    eval_peak = _peak() if reset else float("nan")     # the peak since the reset: the evaluation's
    print(json.dumps({"mode": mode, "n": n, "derive": t1 - t0, "eval": t2 - t1, "rss": rss, "chunk": chunk,
                      "front_peak": front_peak, "held": held, "eval_peak": eval_peak,
                      "start": fixed if mode != "memory" else 0.0}))


def _reset_peak():
    """Reset the kernel's peak RSS of this process (VmHWM; Linux: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return float("nan")


def run(mode, n, workdir, memory):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, __file__, "--one", mode, str(n), workdir, "--memory", memory],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{mode} N={n} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,20000,50000")
    ap.add_argument("--baseline", type=int, default=4000)
    ap.add_argument("--memory", default="2G", help="the out-of-core budget besides the front end's data tables "
                                                   "(default 2G)")
    ap.add_argument("--one", nargs=3, metavar=("MODE", "N", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one(args.one[0], int(args.one[1]), args.one[2], args.memory)
    sys.path.insert(0, str(ROOT))
    from tensorprog.memory import available_memory

    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"relu MLP depth {DEPTH}, inputs of dimension {DIM}: NNGP + NTK; {os.cpu_count()} cores (shared machine)")
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as workdir:
        base = run("memory", args.baseline, workdir, args.memory)
        base_rate = args.baseline ** 2 * DEPTH / base["eval"]
        print(f"{'N':>7} {'mode':>12} {'tile':>6} {'eval s':>8} {'start s':>8} {'peak RSS':>9} {'front end':>9} "
              f"{'held':>6} {'eval peak':>9} {'entries*layers/s':>17} {'ratio':>6}")
        print(f"{args.baseline:>7} {'in memory':>12} {'-':>6} {base['eval']:8.2f} {'-':>8} {base['rss'] / 2**30:7.2f}G "
              f"{base['front_peak'] / 2**30:7.2f}G {base['held'] / 2**30:5.2f}G {base['eval_peak'] / 2**30:8.2f}G "
              f"{base_rate:17.3e} {1.0:6.2f}")
        prev = None
        for n in sizes:
            tables = 2 * 8 * n * n
            free = available_memory() or 0
            if 5 * tables > free:          # the front end needs several tables at once while building them
                print(f"{n:>7} {'out of core':>12}   skipped: the front end's data tables need "
                      f"{tables / 2**30:.1f} GiB (about x5 while built), {free / 2**30:.1f} GiB available")
                continue
            r = run("outofcore", n, workdir, args.memory)
            rate = n ** 2 * DEPTH / r["eval"]
            slope = ""
            if prev is not None:
                slope = f"  time ~ N^{np.log(r['eval'] / prev[1]) / np.log(n / prev[0]):.2f}"
            print(f"{n:>7} {'out of core':>12} {r['chunk']:>6} {r['eval']:8.2f} {r['start']:8.2f} {r['rss'] / 2**30:7.2f}G "
                  f"{r['front_peak'] / 2**30:7.2f}G {r['held'] / 2**30:5.2f}G {r['eval_peak'] / 2**30:8.2f}G "
                  f"{rate:17.3e} {rate / base_rate:6.2f}{slope}")
            prev = (n, r["eval"])
            for f in Path(workdir).glob(f"k{n}.zarr"):
                import shutil

                shutil.rmtree(f, ignore_errors=True)


if __name__ == "__main__":
    main()
