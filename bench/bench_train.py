"""gd(...) unrolled over T steps: parse and derive time, size of the limit and its integrals, per T.

Usage: python bench/bench_train.py [--steps 1,2,3] [--train 1] [--evaluate]

The network: a 3-hidden-layer tanh MLP in muP (readout mean(v x), every parameter at rate 1) on
--train training points (of 6 points, d = 3; the rest are test points), trained by gd for T steps.  For each T: parse and derive
seconds, the number of quantities of the limit, how many are numeric integrals and their largest
dimension; with --evaluate also the evaluation time (Monte Carlo, 2^16 samples, with its largest
standard error), since quadrature of the higher-dimensional integrals takes minutes from T = 3.
Target (issue 12): derive time of T = 5 under 60 s.
"""
import argparse
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
    ap.add_argument("--steps", default="1,2,3")
    ap.add_argument("--train", type=int, default=1)
    ap.add_argument("--evaluate", action="store_true")
    a = ap.parse_args()
    print(f"{'T':>3} {'parse s':>8} {'derive s':>9} {'quantities':>11} {'integrals':>10} {'max dim':>8}"
          + (f" {'eval s (mc)':>12} {'max SE':>9}" if a.evaluate else ""))
    for T in (int(t) for t in a.steps.split(",")):
        t0 = time.perf_counter()
        labels = str([1, -1, 0.5, 0, 1, -1][: a.train])
        program = tensorprog.parse(PROGRAM.replace("LABELS, 1.0, T)", f"{labels}, 1.0, {T})"))
        t1 = time.perf_counter()
        limit = tensorprog.derive(program)
        t2 = time.perf_counter()
        integrals = [q.definition for q in limit.quantities if isinstance(q.definition, Integral)]
        row = (f"{T:>3} {t1 - t0:8.2f} {t2 - t1:9.2f} {len(limit.quantities):>11} {len(integrals):>10} "
               f"{max((i.dim for i in integrals), default=0):>8}")
        if a.evaluate:
            t3 = time.perf_counter()
            res = tensorprog.evaluate(limit, method="mc", samples=1 << 16)
            row += f" {time.perf_counter() - t3:12.1f} {float(res['F'].error.max()):9.1e}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
