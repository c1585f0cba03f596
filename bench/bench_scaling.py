"""`tpc scaling` speed: the static coordinate check of a 3-hidden-layer tanh MLP trained for 3 steps.

Usage: python bench/bench_scaling.py

Reports, measured in one run: parsing the program as written for finite widths (the unrolled
training: the baseline, what `tpc check` costs), then the whole `tensorprog.scaling(...)` (parse +
the three passes + the zero tests of the moments), per parametrization; the ratio of the two; and
the issue's target, scaling in under 10 s.
"""
import time

import tensorprog

PROGRAM = """const s = 0, a = 0, b = 0
data X = [[1, 0, 0], [0.6, 0.8, 0], [-1, 0.5, 0.2]]
param(rate = n^a) vector g[1][i] ~ N(0, dot(X[i], X[i']) / dim(X))
param(rate = n^b) matrix W[l] ~ N(0, 1/n) for l in 2..4
param(rate = n^b) vector v ~ N(0, 1)
for l in 2..4: g[l][i] = W[l] @ tanh(g[l-1][i])
f[i] = mean(v * tanh(g[4][i]))
out F[k] = gd(f[k], [1.0, -1.0], 0.5, 3, scale = n^s)
"""
CASES = {"muP": {}, "NTK": {"s": "1/2"}, "SP, eta/n": {"s": "1/2", "a": -1}, "SP, eta": {"s": "1/2", "b": 1}}


def main():
    tensorprog.scaling(PROGRAM)                  # imports, first sympy caches
    print(f"{'parametrization':<12} {'parse s':>8} {'scaling s':>10} {'ratio':>6}   verdict")
    worst = 0.0
    for name, defines in CASES.items():
        t0 = time.perf_counter()
        tensorprog.parse(PROGRAM, defines=defines, width_dependent=True)
        t1 = time.perf_counter()
        report = tensorprog.scaling(PROGRAM, defines=defines)
        t2 = time.perf_counter()
        worst = max(worst, t2 - t1)
        print(f"{name:<12} {t1 - t0:8.2f} {t2 - t1:10.2f} {(t2 - t1) / (t1 - t0):6.1f}   {report.verdict}")
    print(f"slowest tpc scaling: {worst:.2f} s (target < 10 s: {'met' if worst < 10 else 'NOT met'})")


if __name__ == "__main__":
    main()
