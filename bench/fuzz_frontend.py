"""Fuzz the front end: mutated example programs through parse + check, in-process.

Each input is an example (examples/*.tp) with 1-3 seeded mutations at the byte or token level
(insert, delete, swap, duplicate).  Every input must give a Program or a TPError; any other exception
is a bug and is printed with its seed.  Prints the count, the failures and the rate.

    python bench/fuzz_frontend.py --count 100000 --seed 0
"""
import argparse
import random
import re
import time
from pathlib import Path

import tensorprog
from tensorprog.errors import TPError

EXAMPLES = [p.read_text() for p in sorted((Path(__file__).parents[1] / "examples").glob("*.tp"))]
TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*'*|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|\.\.|\.T|\s+|.", re.S)
BYTES = list("()[]{},:=+-*/^@'#\n\t \\\"0123456789.eE") + ["\r\n", "\0", "\xff", "\u00e9", "for ", "out "]


def mutate(text: str, rng: random.Random) -> str:
    """One to three byte- or token-level insert/delete/swap/duplicate edits of ``text``."""
    for _ in range(rng.randint(1, 3)):
        units = TOKEN.findall(text) if rng.random() < 0.5 else list(text)
        if not units:
            units = [""]
        i, j = rng.randrange(len(units)), rng.randrange(len(units))
        op = rng.choice(("insert", "delete", "swap", "duplicate"))
        if op == "insert":
            units.insert(i, rng.choice(BYTES + units))
        elif op == "delete":
            del units[i]
        elif op == "swap":
            units[i], units[j] = units[j], units[i]
        else:
            units.insert(i, units[i])
        text = "".join(units)
    return text


def inputs(count: int, seed: int):
    """``count`` (case seed, program text) pairs, reproducible from ``seed``."""
    for k in range(count):
        case = seed * 1_000_003 + k
        rng = random.Random(case)
        yield case, mutate(rng.choice(EXAMPLES), rng)


def run(count: int, seed: int, verbose=True):
    """(accepted, refused with TPError, [(case, exception)] of other exceptions)."""
    ok, refused, failures = 0, 0, []
    for case, text in inputs(count, seed):
        try:
            tensorprog.parse(text)
            ok += 1
        except TPError:
            refused += 1
        except Exception as e:  # noqa: BLE001 - any other exception is the finding
            failures.append((case, e))
            if verbose:
                print(f"case {case}: {type(e).__name__}: {e}")
    return ok, refused, failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.perf_counter()
    ok, refused, failures = run(a.count, a.seed)
    dt = time.perf_counter() - t0
    print(f"{a.count} inputs: {ok} accepted, {refused} TPError, {len(failures)} other exceptions; "
          f"{dt:.1f} s, {a.count / dt:.0f} inputs/s")


if __name__ == "__main__":
    main()
