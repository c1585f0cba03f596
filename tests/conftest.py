"""Shared fixtures: where the repository's examples, grammar and docs are."""
from pathlib import Path

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
