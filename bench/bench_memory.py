"""Memory model vs measured peak RSS (issue 16): the printed estimate against what a process uses.

Usage: python bench/bench_memory.py [--sizes 2000,3000,4000] [--examples relu,erf,tanh,ntk,nngp]

Each case runs in a fresh child process (``measure`` below): the child first parses, derives and
evaluates the same program over 700 points (imports, compilation of the same generated kernels,
caches: the baseline), records
its resident set (VmRSS), resets the high-water mark (``/proc/self/clear_refs``), then parses,
derives and evaluates the program over N points and reports VmHWM - baseline. The prediction is
``tensorprog.memory.estimate_run`` on the parsed program and derived limit, made before evaluating.
Target: measured within 25% of predicted for 5 examples x 3 sizes.
"""
import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from mlp_truths import mlp_program, ntk_mlp_program  # noqa: E402

#: name -> function of the data text giving the program: the five examples of the comparison.
EXAMPLES = {
    "relu": lambda data: mlp_program("relu", 10, 2.0, 0.1, data),      # closed forms, tiled kernel
    "erf": lambda data: mlp_program("erf", 10, 2.0, 0.1, data),        # closed forms (arcsin)
    "tanh": lambda data: mlp_program("tanh", 3, 2.0, 0.1, data),       # Hermite series, error arrays
    "ntk": lambda data: ntk_mlp_program("relu", 4, 2.0, 0.1, data),    # generated backward pass
    "nngp": lambda data: mlp_program("relu", 3, 2.0, 0.1, data).split("out NTK")[0],   # one plain output
}

_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    sys.path.insert(0, {bench!r})
    from bench_memory import EXAMPLES
    import tensorprog
    from tensorprog.memory import estimate_run

    def status(key):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024

    def run(points, folder):
        path = f"{{folder}}/X{{points}}.npy"
        np.save(path, np.random.default_rng(0).standard_normal((points, 16)))
        prog = tensorprog.parse(EXAMPLES[{name!r}](f'load("{{path}}")'), name="{name}.tp")
        limit = tensorprog.derive(prog)
        estimate = estimate_run(prog, limit)
        tensorprog.evaluate(limit)
        return estimate

    run(700, {folder!r})   # above fused.FUSE_MIN_POINTS and the PSD check's dense limit: same kernels, BLAS buffers
    import gc; gc.collect()
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    estimate = run({points}, {folder!r})
    print(json.dumps({{"measured": status("VmHWM") - base, "predicted": estimate["peak"],
                      "parse": estimate["parse"], "evaluate": estimate["evaluate"]}}))
""")


def measure(name, points, folder, env=None):
    """{'measured', 'predicted', ...} in bytes for example ``name`` over ``points`` points (child process)."""
    code = _CHILD.format(tests=str(ROOT / "tests"), bench=str(ROOT / "bench"), name=name, points=points,
                         folder=str(folder))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000,3000,4000")
    ap.add_argument("--examples", default=",".join(EXAMPLES))
    args = ap.parse_args()
    worst = 0.0
    print(f"{'example':8s} {'N':>6s} {'predicted':>10s} {'measured':>10s} {'meas/pred':>9s}  (MiB)")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.examples.split(","):
            for n in map(int, args.sizes.split(",")):
                r = measure(name, n, tmp)
                ratio = r["measured"] / r["predicted"]
                worst = max(worst, abs(ratio - 1))
                print(f"{name:8s} {n:6d} {r['predicted'] / 2**20:10.0f} {r['measured'] / 2**20:10.0f} {ratio:9.2f}",
                      flush=True)
    print(f"largest deviation {100 * worst:.0f}% (target <= 25%)")


if __name__ == "__main__":
    main()
