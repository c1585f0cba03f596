"""Every example whose data is a family, run with 300 points (issue 18: "a 300-point family of every
example shape runs").

Each example's inline data set is replaced by ``load(...)`` of a 300-point set whose first rows are the
example's own points (the rest seeded standard normals of the same shape).  An output entry that
depends only on the points it is indexed by must then equal the small example's entry exactly; the
script prints, per example, the time, the output shapes, the methods and that deviation.  Examples
without a closed form are run with ``--method mc`` and few samples (the point is that every plan
shape runs; their cost is per pair of points).

    python bench/examples_300.py [--points 300] [--samples 4096] [names...]
"""
from __future__ import annotations

import argparse
import ast as pyast
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def data_literal(text):
    """(start, end, name, array) of the first ``data NAME = [...]`` literal (it may span lines)."""
    m = re.search(r"^data (\w+) = \[", text, re.M)
    if m is None:
        return None
    i, depth = m.end() - 1, 0
    for j in range(i, len(text)):
        depth += {"[": 1, "]": -1}.get(text[j], 0)
        if depth == 0:
            break
    literal = re.sub(r"#[^\n]*", "", text[i:j + 1])
    return m.start(), j + 1, m.group(1), np.array(pyast.literal_eval(literal), float)


def with_points(text, points, directory, stem):
    """The example's text with its data set grown to ``points`` points (its own points first)."""
    start, end, name, arr = data_literal(text)
    rng = np.random.default_rng(0)
    big = np.concatenate([arr, rng.normal(size=(points - len(arr),) + arr.shape[1:])])
    path = Path(directory) / f"{stem}.npy"
    np.save(path, big)
    return text[:start] + f'data {name} = load("{path}")' + text[end:]


def main():
    import tensorprog

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=300)
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted((ROOT / "examples").glob("*.tp")):
            if args.names and path.stem not in args.names:
                continue
            text = path.read_text()
            if data_literal(text) is None:
                continue
            small = tensorprog.evaluate(text)
            method = "auto" if all(o.method.startswith("closed") for o in small) else "mc"
            if method == "mc":
                small = tensorprog.evaluate(text, method="mc", samples=args.samples)
            t0 = time.perf_counter()
            big = tensorprog.evaluate(with_points(text, args.points, tmp, path.stem), method=method,
                                      samples=args.samples)
            seconds = time.perf_counter() - t0
            dev = 0.0
            for o in small:
                b = big[o.name].value
                if b.shape != o.value.shape:
                    b = b[tuple(slice(0, d) for d in o.value.shape)]
                dev = max(dev, float(np.max(np.abs(b - o.value), initial=0.0)))
            finite = all(np.isfinite(o.value).all() for o in big)
            print(f"{path.stem:18s} {seconds:7.1f} s  {method:4s}  shapes {[o.value.shape for o in big]}  "
                  f"finite {finite}  max |entry - small example's| {dev:.1e}", flush=True)


if __name__ == "__main__":
    main()
