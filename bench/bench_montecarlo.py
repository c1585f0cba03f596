"""Monte Carlo engine throughput: samples per second for E prod_k tanh(z_k), z ~ N(0, Sigma).

Usage: python bench/bench_montecarlo.py [--samples N] [--dims 4 16] [--grid G] [--repeat R]
                                        [--tanh special math]
Each configuration runs in a fresh subprocess per thread count (NUMBA_NUM_THREADS is read once at
numba import), after a warm-up call that compiles or loads the cached kernel. Reported: the best
of R timed calls in wall-clock time, and samples per CPU-second of the process (on a machine shared
with other jobs the wall-clock figure for 2 threads is only as good as the scheduler lets it be).
Targets on the 2-core reference machine, 2 threads: >= 30 M samples/s at d = 4, ~12 M samples/s
at d = 16.
"""
import argparse
import json
import os
import subprocess
import sys

_CHILD = r"""
import json, sys, time
import numpy as np
from tensorprog.numeric import cache, montecarlo

d, n, grid, repeat = (int(a) for a in sys.argv[1:5])
module_name = sys.argv[5]
rng = np.random.default_rng(0)
A = rng.standard_normal((grid, d, d)) / np.sqrt(d)
L = montecarlo.cholesky_psd(A @ np.transpose(A, (0, 2, 1)) + 0.1 * np.eye(d))
mu = np.zeros((grid, d))
params = np.zeros((grid, 0))
expr = "*".join(f"{module_name}.tanh(z{k})" for k in range(d))
t0 = time.perf_counter()
module = cache.load_generated(montecarlo.mc_kernel_source("bench", d, [expr]), stem="bench")
out_mean = np.empty((grid, 1)); out_se = np.empty((grid, 1))
module.bench(np.uint64(1), 4096, L, mu, params, out_mean, out_se)
warm = time.perf_counter() - t0
wall, cpu = [], []
for r in range(repeat):
    t, c = time.perf_counter(), time.process_time()
    module.bench(np.uint64(1), n, L, mu, params, out_mean, out_se)
    wall.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
print(json.dumps({"warmup_s": warm, "wall_s": min(wall), "cpu_s": min(cpu)}))
"""


def run(d, n, grid, repeat, threads, tanh_module):
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    args = [str(d), str(n), str(grid), str(repeat), tanh_module]
    out = subprocess.run([sys.executable, "-c", _CHILD, *args], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--grid", type=int, default=1, help="grid entries (covariances) per call")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tanh", nargs="+", default=["special"], choices=["special", "math"],
                        help="module providing tanh in the integrand")
    args = parser.parse_args()
    print(f"{'d':>3} {'grid':>5} {'tanh':>8} {'threads':>7} {'warm-up s':>9} {'call s':>8} "
          f"{'M samples/s':>11} {'M samples/cpu-s':>15}")
    for d in args.dims:
        for tanh_module in args.tanh:
            for threads in (1, 2):
                r = run(d, args.samples, args.grid, args.repeat, threads, tanh_module)
                rate = args.samples / r["wall_s"] / 1e6
                per_cpu = args.samples / r["cpu_s"] / 1e6
                print(f"{d:>3} {args.grid:>5} {tanh_module:>8} {threads:>7} {r['warmup_s']:>9.2f} "
                      f"{r['wall_s']:>8.3f} {rate:>11.1f} {per_cpu:>15.1f}", flush=True)


if __name__ == "__main__":
    main()
