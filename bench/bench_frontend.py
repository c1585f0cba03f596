"""Front-end speed: parse + elaborate + check a deep MLP program (NNGP and NTK, forward and backward).

Usage: python bench/bench_frontend.py [--depth 100] [--points 8] [--repeat 5]

Two texts of the same network are timed: the compact one (loops over layers, as a user writes it)
and a fully unrolled one (one statement per layer and per output, as a generator would emit it).
Each is parsed once to warm up (grammar compilation, imports), then timed ``--repeat`` times; the
median is reported, split into the three phases: syntax (text -> syntax tree), elaboration
(syntax tree -> instructions) and checking (dead-code elimination, graph, type checker). CPU time
of the process is the figure to compare (the front end is single-threaded); wall-clock time is
printed too, and on a machine shared with other jobs it is only as good as the scheduler allows.
Target: a program of >= 1,000 instructions (depth 100) in well under one second.
"""
import argparse
import statistics
import time

import numpy as np

from tensorprog.errors import Source
from tensorprog.frontend.load import parse
from tensorprog.frontend.lowering import Elaborator
from tensorprog.frontend.parser import parse_source
from tensorprog.ir.checker import check_program
from tensorprog.ir.program import Program


def data_line(points):
    rng = np.random.default_rng(0)
    X = np.round(rng.standard_normal((points, 4)), 3)
    return "data X = [" + ", ".join("[" + ", ".join(str(v) for v in row) + "]" for row in X) + "]"


def compact_program(depth, points):
    """The MLP program with loops: NNGP, NTK, and per layer its kernel and NTK contribution."""
    return f"""\
# Depth-{depth} relu MLP: NNGP and NTK (forward and backward pass), layer by layer.
const L = {depth}, sw2 = 2.0, sb2 = 0.1
{data_line(points)}
matrix W[l] ~ N(0, sw2/n) for l in 2..L
vector b[l] ~ N(0, sb2) for l in 2..L
vector g[1][i] ~ N(0, sw2 * dot(X[i], X[i']) / dim(X) + sb2)
vector v ~ N(0, sw2)
for l in 2..L: g[l][i] = W[l] @ relu(g[l-1][i]) + b[l]
dg[L][i] = v * relu'(g[L][i])
for l in reversed(1..L-1): dg[l][i] = relu'(g[l][i]) * (W[l+1].T @ dg[l+1][i])
T[1][i, j] = mean(dg[1][i] * dg[1][j]) * (sw2 * dot(X[i], X[j]) / dim(X) + sb2)
for l in 2..L: T[l][i, j] = mean(dg[l][i] * dg[l][j]) * (sw2 * mean(relu(g[l-1][i]) * relu(g[l-1][j])) + sb2)
for l in 1..L: out G[l][i, j] = mean(g[l][i] * g[l][j])
K[i, j] = sw2 * mean(relu(g[L][i]) * relu(g[L][j])) + sb2
out NNGP[i, j] = K[i, j]
out NTK[i, j] = K[i, j] + sum(T[l][i, j] for l in 1..L)
"""


def unrolled_program(depth, points):
    """The same network with every layer written out: no loops, one statement per value."""
    L = depth
    lines = [f"# Depth-{depth} relu MLP, fully unrolled.", "const sw2 = 2.0, sb2 = 0.1", data_line(points)]
    lines += [f"matrix W{l} ~ N(0, sw2/n)" for l in range(2, L + 1)]
    lines += [f"vector b{l} ~ N(0, sb2)" for l in range(2, L + 1)]
    lines += ["vector g1[i] ~ N(0, sw2 * dot(X[i], X[i']) / dim(X) + sb2)", "vector v ~ N(0, sw2)"]
    lines += [f"g{l}[i] = W{l} @ relu(g{l - 1}[i]) + b{l}" for l in range(2, L + 1)]
    lines += [f"dg{L}[i] = v * relu'(g{L}[i])"]
    lines += [f"dg{l}[i] = relu'(g{l}[i]) * (W{l + 1}.T @ dg{l + 1}[i])" for l in range(L - 1, 0, -1)]
    lines += ["T1[i, j] = mean(dg1[i] * dg1[j]) * (sw2 * dot(X[i], X[j]) / dim(X) + sb2)"]
    lines += [f"T{l}[i, j] = mean(dg{l}[i] * dg{l}[j]) * (sw2 * mean(relu(g{l - 1}[i]) * relu(g{l - 1}[j])) + sb2)"
              for l in range(2, L + 1)]
    lines += [f"out G{l}[i, j] = mean(g{l}[i] * g{l}[j])" for l in range(1, L + 1)]
    lines += [f"K[i, j] = sw2 * mean(relu(g{L}[i]) * relu(g{L}[j])) + sb2", "out NNGP[i, j] = K[i, j]"]
    lines += ["out NTK[i, j] = K[i, j] \\"] + [f"    + T{l}[i, j] \\" for l in range(1, L)] + [f"    + T{L}[i, j]"]
    return "\n".join(lines) + "\n"


def declarations_program(count):
    """``count`` independent vector declarations: elaboration must be linear in the program's length."""
    return "\n".join(f"vector x{i} ~ N(0, 1)" for i in range(count)) + "\nout s = mean(x0 * x1)\n"


def linearity(repeat):
    """Time per declaration at 2,000 and 20,000 declarations, as a ratio (1 = linear; was ~10 when
    Source.line split the whole text per lookup)."""
    per = {}
    for count in (2_000, 20_000):
        text = declarations_program(count)
        runs = []
        for _ in range(max(1, repeat // 2)):
            t0 = time.process_time()
            parse(text)
            runs.append(time.process_time() - t0)
        per[count] = statistics.median(runs) / count
        print(f"decls     {count:6d} declarations: {per[count] * count:.3f} s CPU, {per[count] * 1e6:.1f} us each")
    print(f"linearity: time per declaration at 20,000 / at 2,000 = {per[20_000] / per[2_000]:.2f} (1 = linear)")


def timed_phases(text):
    """(wall, CPU) seconds of each phase (syntax, elaboration, check) of one compile, and the program."""
    source = Source("<bench>", text)
    marks = [(time.perf_counter(), time.process_time())]
    module = parse_source(source)
    marks.append((time.perf_counter(), time.process_time()))
    el = Elaborator(source)
    outputs = el.run(module)
    marks.append((time.perf_counter(), time.process_time()))
    prog = Program(source, el.instrs, outputs, consts=el.consts, data=el.data, axes=el.axes, widths=el.widths)
    check_program(prog)
    marks.append((time.perf_counter(), time.process_time()))
    phases = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks, marks[1:])]
    return phases, prog


def bench(name, text, repeat):
    reference = parse(text)  # warm-up; the public entry point gives the same program
    runs = [timed_phases(text) for _ in range(repeat)]
    prog = runs[-1][1]
    assert len(prog.instructions) == len(reference.instructions)
    cpu = [statistics.median(r[0][k][1] for r in runs) for k in range(3)]
    wall = statistics.median(sum(p[0] for p in r[0]) for r in runs)
    total = statistics.median(sum(p[1] for p in r[0]) for r in runs)
    print(f"{name:9s} {text.count(chr(10)):5d} lines {len(prog.instructions):5d} instructions: "
          f"{total:.3f} s CPU (syntax {cpu[0]:.3f}, elaboration {cpu[1]:.3f}, check {cpu[2]:.3f}), "
          f"{wall:.3f} s wall; {len(prog.instructions) / total:,.0f} instructions per CPU second")
    return len(prog.instructions)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    print(f"depth {a.depth}, {a.points} input points, median of {a.repeat} after a warm-up")
    for name, make in (("compact", compact_program), ("unrolled", unrolled_program)):
        bench(name, make(a.depth, a.points), a.repeat)
    linearity(a.repeat)


if __name__ == "__main__":
    main()
