"""Shared fixtures: where the repository's examples, grammar and docs are; finite-width simulations of the
examples that several test files compare with the limit, computed once per session."""
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository checkout the tests run from."""
    return ROOT


@pytest.fixture(scope="session")
def example_paths(repo_root):
    """Every program in examples/, sorted by name."""
    paths = sorted((repo_root / "examples").glob("*.tp"))
    assert paths, "examples/ holds no .tp programs"
    return paths


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A working directory holding the data files the documentation's examples load."""
    np.save(tmp_path / "points.npy", np.array([[1.0, 2.0], [3.0, 4.0]]))
    (tmp_path / "points.csv").write_text("1, 2\n3, 4\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def cache_path(tmp_path, monkeypatch):
    """A fresh kernel-cache directory (not yet created) that TENSORPROG_CACHE_DIR points to."""
    path = tmp_path / "cache"
    monkeypatch.setenv("TENSORPROG_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def example_convergence():
    """``get(name, defines=None, width=2048, seeds=20)``: ``convergence`` of examples/<name> at one width
    (limit evaluated by tensorprog, ``seeds`` simulations from seed 0), computed once per session.

    test_simulate_examples.py and test_examples_library.py both compare several examples with their
    simulation at width 2048 (gru.tp alone takes minutes); each still asserts its own check on the result."""
    from tensorprog import parse
    from tensorprog.simulate import convergence

    done = {}

    def get(name, defines=None, width=2048, seeds=20):
        key = (name, tuple(sorted((defines or {}).items())), int(width), int(seeds))
        if key not in done:
            done[key] = convergence(parse(ROOT / "examples" / name, defines=defines), [width], seeds=seeds)
        return done[key]

    return get
