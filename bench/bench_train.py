"""gd(...) unrolled over T steps: what a user waits for, per T, derived or sampled.

Usage: python bench/bench_train.py [--steps 1,2,3,4,5] [--train 4] [--samples 262144] [--derive-up-to 2]

The network (issue 12): a 3-hidden-layer tanh MLP in muP (readout mean(v x), every parameter at rate 1)
trained by gd for T steps on --train training points (of 6 points, d = 3; the rest are test points).
For each T:
- parse seconds and the number of instructions the compiler wrote;
- up to --derive-up-to steps, the symbolic route: derive seconds, the number of integrals and their
  largest dimension (beyond, the derivation grows too fast: T = 3 on one point takes > 5 minutes);
- the sampled route (tpc eval's default from 2 steps, method "sampled"): seconds for --samples draws,
  the largest standard error, and the standard error the same rate reaches in 60 s
  (SE_60 = SE sqrt(t / 60): the error falls as 1/sqrt(draws)).
Targets (issue 12): derive + evaluate of T = 1..5 on 4 points, time per T and the standard error
reached in 60 s; "derive time of T = 5 under 60 s" is met by the sampled route (parse + sample),
not by the symbolic derivation (see docs/train.md).
"""
import argparse
import math
import time

import tensorprog
from tensorprog.limit.symbols import Integral

PROGRAM = """
data X = [[1, 0.5, -0.5], [0.2, 1, 0.4], [-1, 0, 1], [0.5, 0.5, 0.5], [0, 1, 0], [1, -1, 0]]
param matrix W[l] ~ N(0, 1/n) for l in 2..3
param vector h[1][i] ~ N(0, dot(X[i], X[i']) / dim(X))
param vector v ~ N(0, 1)
for l in 2..3: h[l][i] = W[l] @ tanh(h[l-1][i])
f[i] = mean(v * tanh(h[3][i]))
out F[k] = gd(f[k], LABELS, 1.0, T)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="1,2,3,4,5")
    ap.add_argument("--train", type=int, default=4)
    ap.add_argument("--samples", type=int, default=1 << 18)
    ap.add_argument("--derive-up-to", type=int, default=2)
    a = ap.parse_args()
    print(f"{'T':>3} {'parse s':>8} {'instrs':>7} {'derive s':>9} {'integrals':>10} {'max dim':>8} "
          f"{'sample s':>9} {'max SE':>9} {'SE in 60 s':>11}")
    for T in (int(t) for t in a.steps.split(",")):
        labels = str([1, -1, 0.5, 0, 1, -1][: a.train])
        src = PROGRAM.replace("LABELS, 1.0, T)", f"{labels}, 1.0, {T})")
        t0 = time.perf_counter()
        program = tensorprog.parse(src)
        t1 = time.perf_counter()
        row = f"{T:>3} {t1 - t0:8.2f} {len(program.instructions):>7} "
        if T <= a.derive_up_to:
            limit = tensorprog.derive(program)
            t2 = time.perf_counter()
            integrals = [q.definition for q in limit.quantities if isinstance(q.definition, Integral)]
            row += (f"{t2 - t1:9.2f} {len(integrals):>10} {max((i.dim for i in integrals), default=0):>8} ")
        else:
            row += f"{'-':>9} {'-':>10} {'-':>8} "
        t3 = time.perf_counter()
        res = tensorprog.evaluate(program, method="sampled", samples=a.samples)["F"]
        dt = time.perf_counter() - t3
        se = float(res.error.max())
        row += f"{dt:9.2f} {se:9.1e} {se * math.sqrt(dt / 60):11.1e}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
