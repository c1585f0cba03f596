"""Derivation with and without templates on the examples: CPU seconds and ratios in one run.

Usage: python bench/bench_derive.py [examples/*.tp ...]

For each program, each in a fresh process (no sympy or template caches from earlier programs): the
derivation with templates off (TENSORPROG_DERIVE_TEMPLATES=0, the engine's direct path); with
templates on (cold: each structure derived once, then replayed); and the same program derived again
in that process (warm: as for a second evaluation with new data or -D values through the API). The
printed limit programs are checked equal.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*")
    args = ap.parse_args()
    paths = args.paths or sorted(glob.glob(str(ROOT / "examples" / "*.tp")))
    total = [0.0, 0.0, 0.0]
    print(f"{'program':28s} {'direct s':>9} {'templates s':>12} {'warm s':>8} {'direct/templates':>17} "
          f"{'direct/warm':>12}")
    for path in paths:
        try:
            off = child(path, False, 1)
            on = child(path, True, 2)
        except RuntimeError as e:
            print(f"{Path(path).name:28s} error: {e}")
            continue
        same = len(set(off["texts"] + on["texts"])) == 1
        row = (off["times"][0], on["times"][0], on["times"][1])
        for k, t in enumerate(row):
            total[k] += t
        print(f"{Path(path).name:28s} {row[0]:9.2f} {row[1]:12.2f} {row[2]:8.2f} {row[0] / row[1]:16.2f}x "
              f"{row[0] / row[2]:11.2f}x" + ("" if same else "   DIFFERENT RESULT"), flush=True)
        if not same:
            sys.exit(1)
    print(f"{'total':28s} {total[0]:9.2f} {total[1]:12.2f} {total[2]:8.2f} {total[0] / total[1]:16.2f}x "
          f"{total[0] / total[2]:11.2f}x")


if __name__ == "__main__":
    main()
