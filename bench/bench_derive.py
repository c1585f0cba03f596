"""Speed of the symbolic limit pass (issue 3): derive large unrolled programs.

Usage: python bench/bench_derive.py [--depth 100] [--steps 3] [--repeat 3]

1. A depth-100 relu MLP with its NNGP and NTK (forward and backward pass; per-layer kernels
   as outputs): >= 1,000 instructions.
2. examples/mup_three_steps.tp: three steps of gradient descent of a two-hidden-layer tanh MLP
   in muP (every Zdot term of the training steps is derived).
Each is derived once to warm up (imports, closed-form table), then timed; the median wall time
of fresh derivations is reported. Target: under 5 s each.
"""
import argparse
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_frontend import compact_program  # noqa: E402

import tensorprog  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def timed(program, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        limit = tensorprog.derive(program)
        times.append(time.perf_counter() - t)
    return statistics.median(times), limit


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    tensorprog.derive(tensorprog.parse(compact_program(4, 4)))  # warm-up
    mlp = tensorprog.parse(compact_program(args.depth, 8))
    sec, limit = timed(mlp, args.repeat)
    print(f"depth-{args.depth} MLP NNGP+NTK: {len(mlp.instructions)} instructions, "
          f"{len(limit.quantities)} quantities, {len(limit.zdot)} Zdot terms (all zero: "
          f"{not limit.nonzero_zdot()}): derive {sec:.2f} s (target < 5 s)")

    sgd = tensorprog.parse(ROOT / "examples" / "mup_three_steps.tp", defines={"T": args.steps})
    sec, limit = timed(sgd, args.repeat)
    dims = sorted(q.definition.dim for q in limit.quantities if hasattr(q.definition, "dim"))
    print(f"muP {args.steps} SGD steps: {len(sgd.instructions)} instructions, {len(limit.quantities)} "
          f"quantities, {len(limit.nonzero_zdot())} non-zero Zdot terms, integrals of dimension "
          f"{dims[0] if dims else '-'}..{dims[-1] if dims else '-'}: derive {sec:.2f} s (target < 5 s)")


if __name__ == "__main__":
    main()
