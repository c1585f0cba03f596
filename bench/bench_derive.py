"""Speed of the symbolic limit pass (issue 3): derive large unrolled programs.

Usage: python bench/bench_derive.py [--depth 100] [--steps 3] [--repeat 3]
       python bench/bench_derive.py --examples [examples/*.tp ...]

1. A depth-100 relu MLP with its NNGP and NTK (forward and backward pass; per-layer kernels
   as outputs): >= 1,000 instructions.
2. examples/mup_three_steps.tp: three steps of gradient descent of a two-hidden-layer tanh MLP
   in muP (every Zdot term of the training steps is derived).
Each is derived once to warm up (imports, closed-form table), then timed; the median wall time
of fresh derivations is reported. Target: under 5 s each.

--examples: the derivation templates (tensorprog/limit/templates.py) on the examples, CPU seconds
and ratios in one run. For each program, each in a fresh process (no sympy or template caches from
earlier programs): the derivation with templates off (TENSORPROG_DERIVE_TEMPLATES=0, the engine's
direct path); with templates on (cold: each structure derived once, then replayed); and the same
program derived again in that process (warm: as for a second evaluation with new data or -D values
through the API). The printed limit programs are checked equal.
"""
import argparse
import glob
import json
import os
import pathlib
import statistics
import subprocess
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


CHILD = r"""
import hashlib, json, sys, time
import tensorprog
tensorprog.derive("const L = 2\nvector x ~ N(0, 1)\nout s = mean(x * x)\n")       # imports
times, texts = [], []
for _ in range(int(sys.argv[2])):
    t = time.process_time()
    limit = tensorprog.derive(sys.argv[1])
    times.append(time.process_time() - t)
    texts.append(hashlib.sha256(str(limit).encode()).hexdigest())
print(json.dumps({"times": times, "texts": texts}))
"""


def child(path, templates, repeats):
    env = dict(os.environ, TENSORPROG_DERIVE_TEMPLATES="1" if templates else "0")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(repeats)], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_examples(paths):
    """Direct vs templates (cold) vs templates (warm) per example, each in a fresh process."""
    paths = paths or sorted(glob.glob(str(ROOT / "examples" / "*.tp")))
    total = [0.0, 0.0, 0.0]
    print(f"{'program':28s} {'direct s':>9} {'templates s':>12} {'warm s':>8} {'direct/templates':>17} "
          f"{'direct/warm':>12}")
    for path in paths:
        try:
            off = child(path, False, 1)
            on = child(path, True, 2)
        except RuntimeError as e:
            print(f"{pathlib.Path(path).name:28s} error: {e}")
            continue
        same = len(set(off["texts"] + on["texts"])) == 1
        row = (off["times"][0], on["times"][0], on["times"][1])
        for k, t in enumerate(row):
            total[k] += t
        print(f"{pathlib.Path(path).name:28s} {row[0]:9.2f} {row[1]:12.2f} {row[2]:8.2f} {row[0] / row[1]:16.2f}x "
              f"{row[0] / row[2]:11.2f}x" + ("" if same else "   DIFFERENT RESULT"), flush=True)
        if not same:
            sys.exit(1)
    print(f"{'total':28s} {total[0]:9.2f} {total[1]:12.2f} {total[2]:8.2f} {total[0] / total[1]:16.2f}x "
          f"{total[0] / total[2]:11.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--examples", nargs="*", default=None, metavar="PATH",
                    help="compare derivations with and without templates on these examples (default: all)")
    args = ap.parse_args()
    if args.examples is not None:
        compare_examples(args.examples)
        return

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
