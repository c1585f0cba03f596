"""Deep programs: parse, derive and evaluate time against depth (relu MLP NNGP + NTK, 4 inputs).

Usage: python bench/bench_deep.py [--depths 250,1000,5000,10000] [--baseline-max 1000]

The derive column uses the derivation templates (tensorprog/limit/templates.py); for depths up to
--baseline-max the derivation is also timed with templates off (TENSORPROG_DERIVE_TEMPLATES=0) in
the same run, and the ratio printed. Times are CPU seconds of this process (less disturbed by other
work on the machine than wall-clock time).

Each stage should grow linearly with the depth: the last column is the time per layer, and the
ratio line compares the deepest run's time per layer with the shallowest one's (1.0 = linear; a
quadratic stage doubles it with every doubling of the depth). Before the evaluation's walks were
made linear (schedule by a heap, one free-symbol pass per summed chunk), evaluating depth 2000
took 73 s against 19 s at depth 1000.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import tensorprog  # noqa: E402
from mlp_truths import inline_data, mlp_program  # noqa: E402

X = np.array([[1.0, 0, 0], [0.6, 0.8, 0], [2, 0, 0], [-1, 0, 0]])


def _derive(program, templates):
    os.environ["TENSORPROG_DERIVE_TEMPLATES"] = "1" if templates else "0"
    t = time.process_time()
    limit = tensorprog.derive(program)
    return limit, time.process_time() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="250,1000,5000,10000")
    ap.add_argument("--baseline-max", type=int, default=1000,
                    help="time the derivation without templates too, up to this depth")
    args = ap.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    tensorprog.evaluate(mlp_program("relu", 3, 2.0, 0.0, inline_data(X)))   # imports, kernels
    rows = []
    print(f"{'depth':>6} {'parse s':>9} {'derive s':>9} {'eval s':>9}   ms per layer (parse, derive, eval)"
          "   derive without templates: s, ratio")
    for L in depths:
        t0 = time.process_time()
        program = tensorprog.parse(mlp_program("relu", L, 2.0, 0.0, inline_data(X)))
        t1 = time.process_time()
        baseline = ""
        if L <= args.baseline_max:
            _, off = _derive(program, False)
        limit, derive_s = _derive(program, True)
        if L <= args.baseline_max:
            baseline = f"   {off:8.2f}, {off / derive_s:.2f}x"
        t2 = time.process_time()
        tensorprog.evaluate(limit)
        t3 = time.process_time()
        row = (t1 - t0, derive_s, t3 - t2)
        rows.append(row)
        print(f"{L:>6} {row[0]:9.2f} {row[1]:9.2f} {row[2]:9.2f}   " + ", ".join(f"{1e3 * t / L:.2f}" for t in row)
              + baseline, flush=True)
    first, last = rows[0], rows[-1]
    ratios = [(b / depths[-1]) / (a / depths[0]) for a, b in zip(first, last)]
    print("per-layer time, depth %d vs %d: parse %.2f, derive %.2f, eval %.2f (1.0 = linear)"
          % (depths[-1], depths[0], *ratios))


if __name__ == "__main__":
    main()
