"""The kernel cache trusts nothing it did not write (issue 17) and never breaks a run (issue 18).

A planted module or bytecode file is never executed; a directory other users can write is not used
(kernels are compiled into a private temporary directory, with a warning); numba's cache files, of
generated and of static kernels, live in the tensorprog cache directory, never in the package's
folder; a corrupted numba index and an uncreatable cache directory cost a recompilation, not the run.
"""
import hashlib
import os
import stat
import subprocess
import sys
import warnings


from tensorprog.numeric import cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_KERNEL = """\
from numba import njit


@njit(cache=True)
def cube(x):
    return x * x * x
"""


def _child(code, cache_path, timeout=300):
    env = dict(os.environ, TENSORPROG_CACHE_DIR=str(cache_path), PYTHONWARNINGS="always")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done


def test_new_cache_directory_is_user_only(cache_path):
    assert cache.cache_dir() == cache_path
    assert stat.S_IMODE(cache_path.stat().st_mode) & 0o077 == 0


def test_planted_module_and_bytecode_are_never_executed(cache_path, tmp_path):
    source = "VALUE = 6 * 7\n"
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    marker = tmp_path / "pwned"
    evil = f"open({str(marker)!r}, 'w').write('x')\nVALUE = -1\n"
    cache_path.mkdir(mode=0o700)
    (cache_path / f"kernel_{digest}.py").write_text(evil)               # a modified cached module
    pyc = cache_path / "__pycache__"
    pyc.mkdir()
    code = compile(evil, str(cache_path / f"kernel_{digest}.py"), "exec")
    import importlib.util
    import marshal
    for name in (f"kernel_{digest}.cpython-{sys.version_info[0]}{sys.version_info[1]}.pyc",):
        (pyc / name).write_bytes(importlib.util.MAGIC_NUMBER + b"\0" * 12 + marshal.dumps(code))
    module = cache.load_generated(source)
    assert module.VALUE == 42 and not marker.exists()
    assert (cache_path / f"kernel_{digest}.py").read_text() == source   # the foreign content was replaced


def test_loaded_module_runs_the_source_given_even_if_the_file_changes_later(cache_path, tmp_path):
    marker = tmp_path / "pwned"
    source = "VALUE = 1\n"
    first = cache.load_generated(source, stem="twice")
    path = cache_path / os.path.basename(first.__file__)
    path.write_text(f"open({str(marker)!r}, 'w').write('x')\nVALUE = -1\n")
    # a fresh process loads the same source: the tampered file is detected and rewritten, not run
    done = _child(f"from tensorprog.numeric import cache\nprint(cache.load_generated({source!r}, stem='twice').VALUE)",
                  cache_path)
    assert done.stdout.strip() == "1" and not marker.exists()


def test_directory_writable_by_others_is_refused(cache_path):
    cache_path.mkdir()
    os.chmod(cache_path, 0o777)
    assert "writable by other users" in cache.untrusted_reason(cache_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        used = cache.cache_dir()
        module = cache.load_generated(_KERNEL, stem="cube")
    assert used != cache_path and module.cube(3.0) == 27.0
    assert not list(cache_path.iterdir())                                # nothing written there
    assert any("not using the kernel cache" in str(w.message) and "writable by other users" in str(w.message)
               for w in caught)


def test_ancestor_writable_by_others_without_sticky_bit_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    (shared / "mine").mkdir(mode=0o700)
    assert "writable by other users" in cache.untrusted_reason(shared / "mine")
    os.chmod(shared, 0o1777)                                            # sticky, like /tmp: fine
    assert cache.untrusted_reason(shared / "mine") is None


def test_uncreatable_cache_directory_compiles_in_a_private_directory(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TENSORPROG_CACHE_DIR", str(blocker / "cache"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = cache.load_generated(_KERNEL, stem="cube")
    assert module.cube(2.0) == 8.0
    assert any("cannot create" in str(w.message) for w in caught)


def test_corrupted_numba_index_is_recompiled_not_fatal(cache_path):
    code = f"from tensorprog.numeric import cache\nprint(cache.load_generated({_KERNEL!r}, stem='cube').cube(4.0))"
    assert _child(code, cache_path).stdout.strip() == "64.0"
    (index,) = list((cache_path / "numba").rglob("cube_*.nbi"))
    index.write_bytes(index.read_bytes()[:20] + b"\xff" * 40)          # truncated and garbled
    done = _child(code, cache_path)
    assert done.stdout.strip() == "64.0"
    assert "could not be read" in done.stderr
    assert _child(code, cache_path).stdout.strip() == "64.0"           # and the entry is healthy again


def test_static_kernels_cache_into_the_tensorprog_directory(cache_path):
    package = os.path.join(REPO, "tensorprog")

    def package_cache_files():
        return {os.path.join(d, f) for d, _, fs in os.walk(package) for f in fs if f.endswith((".nbi", ".nbc"))}

    before = package_cache_files()
    code = ("import tensorprog\n"
            "r = tensorprog.evaluate('vector x ~ N(0, 1)\\nout s = mean(tanh(x)^2)\\n', method='mc', samples=4096)\n"
            "print(float(r['s'].value))")
    value = float(_child(code, cache_path).stdout.strip())
    assert abs(value - 0.394294) < 0.05                                  # E tanh(z)^2 = 0.394294...
    assert package_cache_files() == before                               # nothing new in the package
    static = [p for p in (cache_path / "numba").rglob("*.nbi") if "montecarlo" in p.name]
    assert static, "the Monte Carlo module's static kernels cache into the tensorprog directory"
