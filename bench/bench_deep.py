"""Time of the symbolic limit pass (derive) against depth for the relu MLP NNGP+NTK (issue 18).

Usage: python bench/bench_deep.py [--depths 250,500,1000,2000] [--gc-off]

The program is tests/mlp_truths.py's depth-L relu MLP (biases, forward and explicit backward
pass, NNGP and NTK outputs) over two inputs.  For each depth the front end parses once, then
derive is timed once; printed: seconds, seconds per layer, and the ratio of seconds per layer
against the smallest depth of the same run (1.0 everywhere = linear in depth).
"""
import argparse
import gc
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from mlp_truths import mlp_program  # noqa: E402

import tensorprog  # noqa: E402

POINTS = "[[1.0, 0, 0], [0.6, 0.8, 0]]"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depths", default="250,500,1000,2000")
    ap.add_argument("--gc-off", action="store_true", help="disable the cyclic garbage collector while deriving")
    args = ap.parse_args()
    tensorprog.derive(tensorprog.parse(mlp_program("relu", 3, 2.0, 0.0, POINTS)))  # warm-up
    base = None
    print(f"{'depth':>7} {'derive s':>9} {'ms/layer':>9} {'ratio':>6}")
    for L in map(int, args.depths.split(",")):
        program = tensorprog.parse(mlp_program("relu", L, 2.0, 0.0, POINTS))
        if args.gc_off:
            gc.disable()
        t = time.perf_counter()
        tensorprog.derive(program)
        sec = time.perf_counter() - t
        gc.enable()
        per = 1000 * sec / L
        base = base or per
        print(f"{L:>7} {sec:>9.2f} {per:>9.2f} {per / base:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
