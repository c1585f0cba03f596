"""`tpc eval` from the command line: output, options, files and errors (values checked by hand)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from gaussian_truths import relu_relu
from tensorprog.cli import main

ONE_LAYER = """
const sw2 = 2.0
data X = [[1, 0], [0, 1], [1, 1]]
matrix W ~ N(0, sw2/n)
vector g[i] ~ N(0, dot(X[i], X[i']))
out K[i, j] = mean(relu(W @ relu(g[i])) * relu(W @ relu(g[j])))
"""


def hand_K():
    """Two relu layers: C = X X^T; S = sw2 E[relu relu](C); K = E[relu relu](S)."""
    X = np.array([[1, 0], [0, 1], [1, 1]], float)
    C = X @ X.T
    S = np.array([[2 * relu_relu(C[p, p], C[q, q], C[p, q]) for q in range(3)] for p in range(3)])
    return np.array([[relu_relu(S[p, p], S[q, q], S[p, q]) for q in range(3)] for p in range(3)])


@pytest.fixture
def prog(tmp_path):
    path = tmp_path / "one.tp"
    path.write_text(ONE_LAYER)
    return path


def test_eval_prints_values_method_and_error(prog, capsys):
    assert main(["eval", str(prog)]) == 0
    out = capsys.readouterr().out
    assert "K  [closed form]  max error estimate 0.0e+00" in out
    assert f"{hand_K()[0, 2]:.8f}" in out


def test_eval_json_and_out_files(prog, tmp_path, capsys):
    assert main(["eval", str(prog), "--json", "--out", str(tmp_path / "r.npz")]) == 0
    data = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(np.array(data["outputs"]["K"]["value"]), hand_K(), rtol=1e-12)
    assert data["outputs"]["K"]["method"] == "closed form"
    npz = np.load(tmp_path / "r.npz")
    np.testing.assert_allclose(npz["K"], hand_K(), rtol=1e-12)
    assert np.all(npz["K_error"] == 0)


def test_eval_define_overrides_a_const(prog, capsys):
    assert main(["eval", str(prog), "-D", "sw2=8", "--json"]) == 0
    K = np.array(json.loads(capsys.readouterr().out)["outputs"]["K"]["value"])
    # The second layer is positively homogeneous: sw2 scales S, and K (relu of a relu) by 4.
    np.testing.assert_allclose(K, 4 * hand_K(), rtol=1e-12)


def test_eval_method_closed_refuses_integrals(tmp_path, capsys):
    path = tmp_path / "t.tp"
    path.write_text("vector x ~ N(0, 1)\nout m = mean(tanh(x)^2)\n")
    assert main(["eval", str(path), "--method", "closed"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2:" in err and "no closed form" in err and "Traceback" not in err


@pytest.mark.parametrize("args,message", [
    (["--samples", "0"], "--samples must be positive"),
    (["--out", "r.txt"], ".npz or .json"),
    (["-D", "nope=1"], "no const named 'nope'"),
    (["--method", "simpson"], "invalid choice"),
])
def test_eval_bad_options_exit_2(prog, capsys, args, message):
    with pytest.raises(SystemExit) if "simpson" in args else _no_raise():
        code = main(["eval", str(prog), *args])
        assert code == 2
    assert message in capsys.readouterr().err


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_eval_in_a_fresh_process_exit_code(prog):
    proc = subprocess.run([sys.executable, "-m", "tensorprog", "eval", str(prog)], capture_output=True, text=True)
    assert proc.returncode == 0 and "closed form" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "tensorprog", "eval", str(prog) + ".missing.tp"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr
