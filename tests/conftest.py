"""Shared fixtures: where the repository's examples, grammar and docs are."""
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
