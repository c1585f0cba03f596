"""Tests for tensorprog.numeric.cache: file naming, memoisation, numba cache reuse, concurrency."""
import hashlib
import json
import os
import subprocess
import sys
import threading

import numba
import pytest

from tensorprog._version import __version__
from tensorprog.numeric import cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_child(code, cache_path, *args):
    """Run ``code`` in a fresh interpreter with the given cache directory; return its stdout."""
    env = dict(os.environ, TENSORPROG_CACHE_DIR=str(cache_path))
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cache_dir_honours_environment(cache_path):
    assert not cache_path.exists()
    assert cache.cache_dir() == cache_path
    assert cache_path.is_dir()


def test_default_cache_dir_is_keyed_by_versions(tmp_path, monkeypatch):
    monkeypatch.delenv("TENSORPROG_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = tmp_path / ".cache" / "tensorprog" / __version__ / numba.__version__
    assert cache.cache_dir() == expected
    assert expected.is_dir()


def test_file_named_by_sha256_and_module_memoised(cache_path):
    source = "VALUE = 41 + 1\n"
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    module = cache.load_generated(source, stem="answer")
    path = cache_path / f"answer_{digest}.py"
    assert module.VALUE == 42
    assert module.__file__ == str(path)
    assert path.read_text() == source
    assert cache.load_generated(source, stem="answer") is module


def test_different_sources_give_different_files(cache_path):
    a = cache.load_generated("VALUE = 1\n", stem="k")
    b = cache.load_generated("VALUE = 2\n", stem="k")
    assert (a.VALUE, b.VALUE) == (1, 2)
    assert a.__file__ != b.__file__
    assert sorted(p.name for p in cache_path.glob("k_*.py")) == sorted(
        os.path.basename(m.__file__) for m in (a, b))


def test_corrupted_file_is_replaced(cache_path):
    source = "VALUE = 7\n"
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    cache_path.mkdir(parents=True)
    (cache_path / f"kernel_{digest}.py").write_text("VALUE = (\n")
    assert cache.load_generated(source).VALUE == 7


def test_rejects_bad_stem(cache_path):
    with pytest.raises(ValueError):
        cache.load_generated("X = 1\n", stem="not a name")


_NUMBA_SOURCE = """\
from numba import njit


@njit(cache=True)
def poly(x):
    return 3.0 * x * x + 2.0 * x + 1.0
"""

_NUMBA_CHILD = """\
import json, os
from tensorprog.numeric import cache
source = open(os.environ["SOURCE_FILE"]).read()
module = cache.load_generated(source, stem="poly")
value = module.poly(2.0)
stats = module.poly.stats
print(json.dumps({"value": value, "hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values()),
                  "mtime": os.stat(module.__file__).st_mtime_ns}))
"""


def test_fresh_process_reuses_numba_cache(cache_path, tmp_path, monkeypatch):
    source_file = tmp_path / "source.py"
    source_file.write_text(_NUMBA_SOURCE)
    monkeypatch.setenv("SOURCE_FILE", str(source_file))
    first = json.loads(_run_child(_NUMBA_CHILD, cache_path))
    second = json.loads(_run_child(_NUMBA_CHILD, cache_path))
    assert first["value"] == second["value"] == 3.0 * 4 + 2.0 * 2 + 1.0
    assert (first["hits"], first["misses"]) == (0, 1)
    assert (second["hits"], second["misses"]) == (1, 0)
    assert first["mtime"] == second["mtime"]
    # numba's files live inside the tensorprog cache directory (its numba/ folder)
    assert list((cache_path / "numba").rglob("poly_*.nbi"))
    assert list((cache_path / "numba").rglob("poly_*.nbc"))


_WRITER_CHILD = """\
import pathlib, sys, time
from tensorprog.numeric import cache
barrier = pathlib.Path(sys.argv[1])
(barrier / sys.argv[2]).touch()
while not (barrier / "go").exists():
    time.sleep(0.001)
module = cache.load_generated("VALUE = 'shared'\\n" + "# padding\\n" * 20000, stem="race")
print(module.__file__, module.VALUE)
"""


def test_concurrent_processes_and_threads_agree(cache_path, tmp_path):
    """Writers released together (file barrier) all import the same, complete file."""
    import time
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER_CHILD, str(barrier), f"ready{k}"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(3)]
    deadline = time.time() + 120
    while len(list(barrier.glob("ready*"))) < len(procs) and time.time() < deadline:
        time.sleep(0.005)
    (barrier / "go").touch()
    source = "VALUE = 'threads'\n" + "# padding\n" * 20000
    modules = []
    threads = [threading.Thread(target=lambda: modules.append(cache.load_generated(source)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outputs.append(out.split())
    assert len({id(m) for m in modules}) == 1 and modules[0].VALUE == "threads"
    assert len({path for path, _ in outputs}) == 1
    assert all(value == "shared" for _, value in outputs)
    assert len(list(cache_path.glob("race_*.py"))) == 1
    assert not list(cache_path.glob("*.tmp"))
