"""Generated-kernel scheduling: a busy core, and the cost of the first (compiling) run.

Usage: python bench/bench_schedule.py [--points 2000] [--depth 10] [--repeat 3]

The program is the relu MLP NNGP + NTK of examples/mlp_ntk.tp at the given depth over ``--points``
random inputs (one tiled kernel over points^2 pairs). Two measurements, each a ratio within this run:

* busy / quiet: the evaluation (derived once; best of ``--repeat``) with both threads, first on a
  quiet machine, then while this script keeps one core busy with a spinning process. Row ranges are
  taken from a queue by the threads (numeric/rowpool.py), so the slowed thread does less of the
  work: the target is busy / quiet <= 1.6 (a static half-and-half split gives ~2).
* cold / warm: ``tpc eval`` in a fresh process with an empty kernel cache (compiles the generated
  kernel and the package's static kernels) against the same command with the cache filled.
On a machine shared with other jobs the "quiet" figure is only as quiet as the machine is.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_program(folder, points, depth):
    np.save(folder / "X.npy", np.random.default_rng(0).standard_normal((points, 16)))
    text = (ROOT / "examples" / "mlp_ntk.tp").read_text()
    lines = []
    for line in text.splitlines():
        if line.startswith("const L ="):
            line = line.replace("L = 3", f"L = {depth}")
        if line.startswith("data X ="):
            line = f'data X = load("{folder / "X.npy"}")'
        lines.append(line)
    path = folder / "ntk.tp"
    path.write_text("\n".join(lines) + "\n")
    return path


def best_eval(limit, repeat):
    import tensorprog

    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        tensorprog.evaluate(limit)
        times.append(time.perf_counter() - t0)
    return min(times)


def cli_seconds(path, cache):
    env = dict(os.environ, TENSORPROG_CACHE_DIR=str(cache))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tensorprog", "eval", str(path)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=2000)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import tensorprog

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write_program(folder, args.points, args.depth)
        limit = tensorprog.derive(path)
        tensorprog.evaluate(limit)                      # compile once
        quiet = best_eval(limit, args.repeat)
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.5)
            busy = best_eval(limit, args.repeat)
        finally:
            spinner.kill()
        cold = cli_seconds(path, folder / "cold-cache")
        warm = cli_seconds(path, folder / "cold-cache")
    print(f"relu depth-{args.depth} NNGP+NTK, {args.points} points ({args.points ** 2:,} pairs)")
    print(f"  evaluate, quiet       {quiet:8.3f} s")
    print(f"  evaluate, one core busy {busy:6.3f} s   busy / quiet = {busy / quiet:.2f}  (target <= 1.6)")
    print(f"  tpc eval, empty cache {cold:8.3f} s")
    print(f"  tpc eval, warm cache  {warm:8.3f} s   cold / warm = {cold / warm:.2f}")


if __name__ == "__main__":
    main()
