"""Finite-width simulation speed: seconds per seed of examples/mlp_ntk.tp (2 matrices of n x n,
4 matrix-vector products over a family of 4 inputs, 7 Nonlins, 6 Moments).

Usage: python bench/bench_simulate.py [--widths 1024 4096] [--seeds 5] [--threads 1 2]
Each thread count runs in a fresh subprocess (OpenBLAS reads OPENBLAS_NUM_THREADS at import),
with NUMBA_NUM_THREADS / OMP_NUM_THREADS / OPENBLAS_NUM_THREADS set to it. Reported per width: the
median wall-clock and CPU seconds per seed after one warm-up seed, the estimated peak memory, and
the time for the normal deviates of the matrices alone (the floor: 2 n^2 draws per seed).
"""
import argparse
import json
import os
import subprocess
import sys

_CHILD = r"""
import json, sys, time
import numpy as np
import tensorprog
from tensorprog.simulate import Simulator, simulator as S

prog = tensorprog.parse(sys.argv[1])
widths = [int(w) for w in sys.argv[2].split(",")]
seeds = int(sys.argv[3])
sim = Simulator(prog)
pool = S._pool()
rows = []
for n in widths:
    sim.run(n, 0, 0, pool=pool)
    wall, cpu = [], []
    for s in range(seeds):
        t, c = time.perf_counter(), time.process_time()
        sim.run(n, 0, s + 1, pool=pool)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    rng = np.random.Generator(np.random.PCG64(1))
    t = time.perf_counter()
    for _ in range(2):
        S._sample_matrix(rng, n, n, 1.0, pool)
    draws = time.perf_counter() - t
    rows.append({"width": n, "wall": float(np.median(wall)), "cpu": float(np.median(cpu)),
                 "memory": sim.estimate_memory(n), "matrix_draws": draws})
print(json.dumps(rows))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    program = os.path.join(repo, "examples", "mlp_ntk.tp")
    print(f"{'threads':>7} {'width':>6} {'s/seed (wall)':>14} {'s/seed (cpu)':>13} {'2 n^2 draws':>12} {'peak MiB':>9}")
    for threads in args.threads:
        env = dict(os.environ, PYTHONPATH=repo, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   OPENBLAS_NUM_THREADS=str(threads))
        out = subprocess.run([sys.executable, "-c", _CHILD, program, ",".join(map(str, args.widths)),
                              str(args.seeds)], env=env, capture_output=True, text=True, check=True)
        for row in json.loads(out.stdout):
            print(f"{threads:>7} {row['width']:>6} {row['wall']:>14.4f} {row['cpu']:>13.4f} "
                  f"{row['matrix_draws']:>12.4f} {row['memory'] / 2 ** 20:>9.1f}")


if __name__ == "__main__":
    main()
