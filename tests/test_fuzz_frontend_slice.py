"""A 2,000-input slice of bench/fuzz_frontend.py: mutated examples give a Program or a TPError, nothing else."""
import importlib.util
from pathlib import Path

SPEC = importlib.util.spec_from_file_location("fuzz_frontend", Path(__file__).parents[1] / "bench" / "fuzz_frontend.py")
fuzz = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(fuzz)


def test_mutations_are_real_edits():
    texts = [t for _, t in fuzz.inputs(50, seed=7)]
    assert sum(t not in fuzz.EXAMPLES for t in texts) >= 45      # nearly all differ from every example


def test_two_thousand_mutated_examples_raise_only_tperror():
    ok, refused, failures = fuzz.run(2000, seed=1, verbose=False)
    assert ok + refused + len(failures) == 2000
    assert refused > 0 and ok > 0                                  # both outcomes occur: the slice bites
    assert failures == [], [(case, f"{type(e).__name__}: {e}") for case, e in failures[:5]]
