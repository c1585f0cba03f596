"""Behaviour-preservation check: every example's evaluated outputs against values recorded earlier.

    python bench/compare_examples.py --record     # write bench/reference_outputs.npz (+ .json methods)
    python bench/compare_examples.py              # compare; exit 1 if any value differs by > 1e-14 rel.

A refactor must leave every output of every example unchanged: the values to 1e-14 relative
(|new - old| <= 1e-14 * max(|old|, 1e-300), elementwise; absolute 1e-14 near zero), the method labels
exactly, and error estimates to 1e-10 relative (they are reported, not exact).  The recorded file names
the commit it was made from.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REFERENCE = os.path.join(HERE, "reference_outputs")
RTOL, ATOL, ERR_RTOL = 1e-14, 1e-14, 1e-10


def _examples():
    return sorted(glob.glob(os.path.join(ROOT, "examples", "*.tp")))


def evaluate_all():
    """{example: {output: (value, error, method)}} for every example with method auto."""
    sys.path.insert(0, ROOT)
    import tensorprog

    out = {}
    for path in _examples():
        name = os.path.splitext(os.path.basename(path))[0]
        res = tensorprog.evaluate(path)
        out[name] = {o.name: (np.asarray(o.value, float), np.asarray(o.error, float), o.method) for o in res}
        print(f"  {name}: {', '.join(out[name])}", flush=True)
    return out


def record(values):
    arrays, methods = {}, {}
    for ex, outs in values.items():
        for k, (v, e, m) in outs.items():
            arrays[f"{ex}/{k}"] = v
            arrays[f"{ex}/{k}/error"] = e
            methods[f"{ex}/{k}"] = m
    np.savez_compressed(REFERENCE + ".npz", **arrays)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    with open(REFERENCE + ".json", "w") as fh:
        json.dump({"commit": commit, "methods": methods}, fh, indent=1, sort_keys=True)
    print(f"recorded {len(methods)} outputs from {commit[:10]}")


def compare(values) -> int:
    ref = np.load(REFERENCE + ".npz")
    with open(REFERENCE + ".json") as fh:
        meta = json.load(fh)
    bad, worst = 0, 0.0
    seen = set()
    for ex, outs in values.items():
        for k, (v, e, m) in outs.items():
            key = f"{ex}/{k}"
            seen.add(key)
            if key not in meta["methods"]:
                print(f"NEW    {key} (not in the reference)")
                continue
            old, olderr, oldm = ref[key], ref[key + "/error"], meta["methods"][key]
            if old.shape != v.shape:
                print(f"SHAPE  {key}: {old.shape} -> {v.shape}")
                bad += 1
                continue
            dev = np.abs(v - old)
            tol = np.maximum(RTOL * np.abs(old), ATOL)
            rel = float(np.max(dev / np.maximum(np.abs(old), 1e-300), initial=0.0))
            worst = max(worst, float(np.max(dev / tol, initial=0.0)) * RTOL)
            if not np.all(dev <= tol) or np.isnan(v).any() != np.isnan(old).any():
                print(f"VALUE  {key}: max relative deviation {rel:.2e}")
                bad += 1
            if m != oldm:
                print(f"METHOD {key}: {oldm!r} -> {m!r}")
                bad += 1
            if not np.allclose(e, olderr, rtol=ERR_RTOL, atol=0.0):
                print(f"ERROR  {key}: error estimate changed (max {np.max(olderr):.2e} -> {np.max(e):.2e})")
                bad += 1
    for key in sorted(set(meta["methods"]) - seen):
        print(f"GONE   {key}")
        bad += 1
    print(f"{len(seen)} outputs compared with the reference from {meta['commit'][:10]}: "
          f"{bad} differences; worst deviation {worst:.1e} (scaled to rtol {RTOL:g})")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true", help="record the reference instead of comparing")
    args = ap.parse_args()
    values = evaluate_all()
    if args.record:
        record(values)
        return 0
    return compare(values)


if __name__ == "__main__":
    sys.exit(main())
