"""A parsed Program and a derived limit cross a process boundary: pickled here, evaluated elsewhere.

The truth is the same program evaluated in this process: a worker process (a multiprocess or Dask
backend) that receives the pickle must produce bit-identical outputs, since parse, derive and the
numeric methods are deterministic.
"""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import tensorprog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def _start(argv, env):
    """A child process started now, so that this process's own work overlaps with it (CI has 2 cores)."""
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc, timeout=300):
    """(return code, stdout, stderr) of a child from _start; killed after ``timeout`` seconds."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, stdout, stderr


_CHILD = """
import json, pickle, sys
import tensorprog
program = pickle.loads(open(sys.argv[1], "rb").read())
res = tensorprog.evaluate(program)
print(json.dumps(res.to_dict()))
"""


@pytest.mark.parametrize("example", ["mlp_ntk.tp", "rnn_ntk.tp", "mup_one_step.tp"])
def test_pickled_program_evaluates_identically_in_a_fresh_process(example, tmp_path):
    program = tensorprog.parse(os.path.join(ROOT, "examples", example))
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(program))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    run = _start([sys.executable, "-c", _CHILD, str(tmp_path / "p.pkl")], env)
    here = tensorprog.evaluate(program)      # while the child evaluates the pickle
    returncode, stdout, stderr = _finish(run)
    assert returncode == 0, stderr[-2000:]
    there = json.loads(stdout.strip().splitlines()[-1])
    assert sorted(there) == sorted(here.outputs)
    for name, out in here.outputs.items():
        np.testing.assert_array_equal(np.array(there[name]["value"]), out.value)
        assert there[name]["method"] == out.method


_LIMIT_CHILD = """
import json, pickle, sys
import tensorprog
tensorprog.derive(sys.argv[2])      # a derivation of this process, alive beside the unpickled one
limit = pickle.loads(open(sys.argv[1], "rb").read())
print(json.dumps({"text": str(limit), "outputs": tensorprog.evaluate(limit).to_dict()}))
"""


@pytest.mark.parametrize("example", ["mlp_ntk.tp", "feature_learning.tp"])
def test_pickled_limit_evaluates_identically_in_a_fresh_process(example, tmp_path):
    limit = tensorprog.derive(os.path.join(ROOT, "examples", example))
    (tmp_path / "l.pkl").write_bytes(pickle.dumps(limit))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    run = _start([sys.executable, "-c", _LIMIT_CHILD, str(tmp_path / "l.pkl"),
                  os.path.join(ROOT, "examples", "rnn_ntk.tp")], env)
    here = tensorprog.evaluate(limit).to_dict()      # while the child evaluates the pickle
    returncode, stdout, stderr = _finish(run)
    assert returncode == 0, stderr[-2000:]
    there = json.loads(stdout.strip().splitlines()[-1])
    assert there["text"] == str(limit)
    assert there["outputs"] == here      # values (bit for bit), errors and methods


def test_limit_copied_in_this_process_keeps_its_quantities():
    # An unpickled copy shares its quantities' names with the original (alive at the same time):
    # both print and evaluate as before.
    limit = tensorprog.derive(os.path.join(ROOT, "examples", "mlp_ntk.tp"))
    copy = pickle.loads(pickle.dumps(limit))
    assert str(copy) == str(limit)
    a, b = tensorprog.evaluate(limit), tensorprog.evaluate(copy)
    for name, out in a.outputs.items():
        np.testing.assert_array_equal(b[name].value, out.value)


def test_gaussian_block_covariance_is_exactly_symmetric(tmp_path):
    # The lower blocks of a declared block's joint covariance are the transposes of the upper ones.
    np.save(tmp_path / "X.npy", np.random.default_rng(0).normal(size=(5, 3)))
    src = (f'data X = load("{tmp_path / "X.npy"}")\n'
           "vector g[i], h[i] ~ N(0, [[dot(X[i], X[i']) / 3 + 0.1, dot(X[i], X[i']) / 7],"
           " [(dot(X[i'], X[i]) + 0.3 - 0.3) / 7, dot(X[i], X[i']) / 3 + 0.2]]) for i in X\n"
           "out K[i, j] = mean(g[i] * h[j])\n")
    program = tensorprog.parse(src)
    (block,) = {ins.block for ins in program.instructions if getattr(ins, "block", None) is not None}
    full = block.joint_cov()
    assert np.array_equal(full, full.T)
    assert pickle.loads(pickle.dumps(block)).joint_cov().tobytes() == full.tobytes()


def test_derivation_does_not_depend_on_the_hash_seed():
    # rnn_ntk's held linear combinations were once created in set order: the derivation's terms,
    # and 1-ulp digits of its outputs, changed from run to run.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    code = ("import json, sys, tensorprog\n"
            "limit = tensorprog.derive(sys.argv[1])\n"
            "print(json.dumps({'text': str(limit), 'outputs': tensorprog.evaluate(limit).to_dict()}))\n")
    runs = []
    children = [_start([sys.executable, "-c", code, os.path.join(ROOT, "examples", "rnn_ntk.tp")],
                       dict(env, PYTHONHASHSEED=seed)) for seed in ("1", "2")]      # both at once
    for child in children:
        returncode, stdout, stderr = _finish(child)
        assert returncode == 0, stderr[-2000:]
        runs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert runs[0] == runs[1]
