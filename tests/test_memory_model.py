"""The memory model (tensorprog.memory.estimate_run) against the measured peak RSS of a process.

Independent truth: the kernel's high-water mark of a child process (VmHWM, reset before the run)
less the resident set of the same interpreter after it ran the program over 700 points
(bench/bench_memory.py's ``measure``; the full table: python bench/bench_memory.py).
"""
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

linux_only = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")


@linux_only
def test_predicted_peak_within_25_percent_of_measured(tmp_path):
    # depth-10 relu NNGP + NTK (tiled kernel, an output table) and an NNGP-only program (one
    # plain output, the data table dominating), both at sizes where arrays are >= 150 MiB
    from bench_memory import measure

    cases = [("relu", 2500), ("nngp", 3000)]
    with ThreadPoolExecutor(len(cases)) as ex:
        results = list(ex.map(lambda c: measure(c[0], c[1], tmp_path), cases))
    for (name, n), r in zip(cases, results):
        ratio = r["measured"] / r["predicted"]
        assert 0.75 <= ratio <= 1.25, (name, n, r)
        # the model is not a constant: the prediction holds at least the N x N output tables
        assert r["predicted"] >= 8 * n * n


def test_sixty_thousand_points_refused_with_the_memory_needed(tmp_path, capsys, monkeypatch):
    """N = 60,000 (issue 16): exit 2 naming the memory needed, no traceback, before allocating."""
    import tensorprog.memory
    from tensorprog.cli import main
    from mlp_truths import mlp_program

    monkeypatch.setattr(tensorprog.memory, "available_memory", lambda: 24 << 30)   # this machine's 24 GiB
    np.save(tmp_path / "X.npy", np.random.default_rng(0).standard_normal((60000, 16)))
    path = tmp_path / "p.tp"
    path.write_text(mlp_program("relu", 10, 2.0, 0.1, f'load("{tmp_path / "X.npy"}")'))
    assert main(["eval", str(path)]) == 2
    err = capsys.readouterr().err
    # the 60,000 x 60,000 table of dot products (26.8 GiB) and one more like it: 53.6 GiB
    assert "60000 x 60000 needs about 53.6 GiB" in err and "24.0 GiB is available" in err
    assert "Traceback" not in err and "internal error" not in err
