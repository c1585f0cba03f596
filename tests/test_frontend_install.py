"""A real, non-editable install must ship the grammar.

A fresh virtual environment gets a copy of the repository installed with
``pip install`` (a wheel build, not an editable install); the installed ``tpc``
then checks an example from a directory outside the repository. To stay fast
and offline, the dependencies (numpy, sympy, lark, ...) are borrowed from the
running interpreter through a ``.pth`` file, and the package is built without
build isolation when the running interpreter has the build backend.
"""
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import tensorprog

# Entries of our site-packages not lent to the new environment: the package under test, and pip
# (the running interpreter's pip drives the install with --python).
NOT_LENT = ("tensorprog", "__editable__", "pip", "__pycache__")


def _can_build_offline() -> bool:
    """setuptools with a bdist_wheel command: built in from 70.1, else from the `wheel` package."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    major, minor = (int(p) for p in importlib.metadata.version("setuptools").split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _run(cmd, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=600, **kw)


@pytest.fixture(scope="module")
def installed(repo_root, tmp_path_factory):
    """(python, tpc) of a fresh venv with tensorprog pip-installed from a copy of the repository."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    shutil.copytree(repo_root, src, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", ".ci"))
    venv = root / "venv"
    r = _run([sys.executable, "-m", "venv", "--without-pip", venv])
    assert r.returncode == 0, r.stderr
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())

    ours = Path(sysconfig.get_paths()["purelib"])
    deps = root / "deps"
    deps.mkdir()
    for entry in ours.iterdir():
        if not entry.name.startswith(NOT_LENT) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    (site / "_borrowed_deps.pth").write_text(f"{deps}\n")
    if (ours / "distutils-precedence.pth").exists():  # setuptools' own distutils, for the build
        shutil.copy(ours / "distutils-precedence.pth", site)

    cmd = [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--quiet", src]
    if _can_build_offline():
        cmd[6:6] = ["--no-build-isolation", "--no-index"]
    r = _run(cmd, cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    return python, venv / "bin" / "tpc", root


@pytest.mark.slow
def test_installed_package_is_not_the_checkout(installed, repo_root):
    python, _, root = installed
    r = _run([python, "-c", "import importlib.resources as r, tensorprog; print(tensorprog.__file__); "
                            "print(r.files('tensorprog.grammar').joinpath('tp.lark').read_text()[:2])"], cwd=root)
    assert r.returncode == 0, r.stderr
    location, head = r.stdout.splitlines()
    assert Path(location).is_relative_to(root / "venv")
    assert not Path(location).is_relative_to(repo_root)
    assert head == "//"


@pytest.mark.slow
def test_installed_tpc_checks_an_example_outside_the_repo(installed, repo_root):
    _, tpc, root = installed
    outside = root / "elsewhere"
    outside.mkdir()
    shutil.copy(repo_root / "examples" / "mlp_ntk.tp", outside)
    r = _run([tpc, "check", "mlp_ntk.tp"], cwd=outside)
    assert r.returncode == 0, r.stderr
    expected = tensorprog.parse(repo_root / "examples" / "mlp_ntk.tp").summary()
    assert r.stdout == f"ok: mlp_ntk.tp: {expected}\n"

    r = _run([tpc, "--version"], cwd=outside)
    assert r.returncode == 0 and r.stdout.strip() == f"tpc (tensorprog) {tensorprog.__version__}"

    (outside / "bad.tp").write_text("vector x ~ N(0, 1)\nout s = mean(x ** 2)\n")
    r = _run([tpc, "check", "bad.tp"], cwd=outside)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("bad.tp:2:17: error: unexpected '*'")


def test_every_subpackage_is_declared_in_setup_cfg():
    """`pip install .` installs only the packages setup.cfg lists: a new subpackage missing there works
    from a checkout and fails installed (tensorprog.scaling once did)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "setup.cfg").read_text()
    block = text.split("packages =", 1)[1].split("package_dir", 1)[0]
    declared = {line.strip() for line in block.splitlines() if line.strip()}
    present = {"tensorprog." + p.parent.name for p in (root / "tensorprog").glob("*/__init__.py")}
    assert present <= declared, sorted(present - declared)
