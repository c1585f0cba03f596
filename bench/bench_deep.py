"""Deep programs: parse, derive and evaluate time against depth (relu MLP NNGP + NTK, 4 inputs).

Usage: python bench/bench_deep.py [--depths 250,500,1000,2000]

Each stage should grow linearly with the depth: the last column is the time per layer, and the
ratio line compares the deepest run's time per layer with the shallowest one's (1.0 = linear; a
quadratic stage doubles it with every doubling of the depth). Before the evaluation's walks were
made linear (schedule by a heap, one free-symbol pass per summed chunk), evaluating depth 2000
took 73 s against 19 s at depth 1000.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import tensorprog  # noqa: E402
from mlp_truths import inline_data, mlp_program  # noqa: E402

X = np.array([[1.0, 0, 0], [0.6, 0.8, 0], [2, 0, 0], [-1, 0, 0]])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="250,500,1000,2000")
    depths = [int(d) for d in ap.parse_args().depths.split(",")]
    tensorprog.evaluate(mlp_program("relu", 3, 2.0, 0.0, inline_data(X)))   # imports, kernels
    rows = []
    print(f"{'depth':>6} {'parse s':>9} {'derive s':>9} {'eval s':>9}   ms per layer (parse, derive, eval)")
    for L in depths:
        t0 = time.perf_counter()
        program = tensorprog.parse(mlp_program("relu", L, 2.0, 0.0, inline_data(X)))
        t1 = time.perf_counter()
        limit = tensorprog.derive(program)
        t2 = time.perf_counter()
        tensorprog.evaluate(limit)
        t3 = time.perf_counter()
        row = (t1 - t0, t2 - t1, t3 - t2)
        rows.append(row)
        print(f"{L:>6} {row[0]:9.2f} {row[1]:9.2f} {row[2]:9.2f}   " + ", ".join(f"{1e3 * t / L:.1f}" for t in row))
    first, last = rows[0], rows[-1]
    ratios = [(b / depths[-1]) / (a / depths[0]) for a, b in zip(first, last)]
    print("per-layer time, depth %d vs %d: parse %.2f, derive %.2f, eval %.2f (1.0 = linear)"
          % (depths[-1], depths[0], *ratios))


if __name__ == "__main__":
    main()
