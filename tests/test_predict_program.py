"""tensorprog.predict / `tpc predict` on a program: kernels from the program, predictions vs the
direct formulas on the closed-form relu kernels (arc-cosine recursion written in test_predict),
learning curves, and the errors for bad input (exit 2)."""
import math

import numpy as np
import pytest

import tensorprog
from tensorprog.cli import main
from tensorprog.predict_curve import curve_from_kernels
from tensorprog.predict_program import kernels_on

from test_predict import direct_flow, relu_kernels

PROGRAM = '''const L = 2, sw2 = 2.0, sb2 = 0.1
data X = load("points.npy")
matrix W[l] ~ N(0, sw2/n) for l in 2..L
vector b[l] ~ N(0, sb2) for l in 2..L
vector g[1][i] ~ N(0, sw2 * dot(X[i], X[i']) / dim(X) + sb2)
vector v ~ N(0, sw2)
for l in 2..L: g[l][i] = W[l] @ relu(g[l-1][i]) + b[l]
dg[L][i] = v * relu'(g[L][i])
for l in reversed(1..L-1): dg[l][i] = relu'(g[l][i]) * (W[l+1].T @ dg[l+1][i])
out NNGP[i, j] = sw2 * mean(relu(g[L][i]) * relu(g[L][j])) + sb2
out NTK[i, j] = (sw2 * mean(relu(g[L][i]) * relu(g[L][j])) + sb2
                 + sum(mean(dg[l][i] * dg[l][j]) * (sw2 * mean(relu(g[l-1][i]) * relu(g[l-1][j])) + sb2)
                       for l in 2..L)
                 + mean(dg[1][i] * dg[1][j]) * (sw2 * dot(X[i], X[j]) / dim(X) + sb2))
'''


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 4))
    y = np.eye(3)[rng.integers(0, 3, 12)]
    (d / "relu.tp").write_text(PROGRAM)
    for name, arr in dict(xtr=x[:8], xte=x[8:], ytr=y[:8], yte=y[8:]).items():
        np.save(d / f"{name}.npy", arr)
    return d, x, y


def test_program_predictions_match_direct_formula(files):
    d, x, y = files
    times = [0.0, 1.0, 10.0, math.inf]
    pred = tensorprog.predict(str(d / "relu.tp"), d / "xtr.npy", d / "ytr.npy", d / "xte.npy", y_test=y[8:],
                              times=times, learning_rate=0.5)
    # the program's kernels are the relu ones: g1 = input layer, g2 = W2 relu(g1) + b2, output from
    # relu(g2): 2 arc-cosine steps (to the evaluator's accuracy: ~3e-8 on the diagonal of the
    # relu' moments, which it integrates numerically); predictions are checked on the
    # program's own kernels at 1e-10
    kernels = kernels_on(str(d / "relu.tp"), x, ["NNGP", "NTK"])
    k, theta = kernels["NNGP"], kernels["NTK"]
    k_closed, theta_closed = relu_kernels(x, depth=2)
    assert np.max(np.abs(k - k_closed)) < 1e-6 * np.max(np.abs(k_closed))
    assert np.max(np.abs(theta - theta_closed)) < 1e-6 * np.max(np.abs(theta_closed))
    tr, te = slice(0, 8), slice(8, 12)
    for i, t in enumerate(times):
        mean, cov = direct_flow(theta, k, tr, te, y[:8], t, 0.5)
        assert np.max(np.abs(pred.mean[i] - mean)) < 1e-10
        assert np.max(np.abs(pred.variance[i] - np.diag(cov))) < 1e-10
        assert pred.test_mse[i] == pytest.approx(np.mean((mean - y[8:]) ** 2), rel=1e-9)
        assert pred.test_accuracy[i] == np.mean(mean.argmax(1) == y[8:].argmax(1))
    assert pred.train_mse[-1] < 1e-20  # t = inf interpolates the training labels
    # NNGP posterior with noise, through the same entry point
    post = tensorprog.predict(PROGRAM.replace("points.npy", "p.npy"), x[:8], y[:8], x[8:], kernel="nngp",
                              noise=0.1)
    want = k[te, tr] @ np.linalg.solve(k[tr, tr] + 0.1 * np.eye(8), y[:8])
    assert np.max(np.abs(post.mean[0] - want)) < 1e-10


def test_learning_curve_blocks_equal_direct_formula_on_subsets(files, tmp_path):
    d, x, y = files
    k, theta = relu_kernels(x, depth=2)
    curve = curve_from_kernels(k, theta, [2, 5, 8], y[:8], y[8:], times=[math.inf])
    for n, p in zip(curve.sizes, curve.predictions):
        idx = list(range(n)) + list(range(8, 12))
        ks, ths = k[np.ix_(idx, idx)], theta[np.ix_(idx, idx)]
        mean, _ = direct_flow(ths, ks, slice(0, n), slice(n, n + 4), y[:n], math.inf, 1.0)
        assert np.max(np.abs(p.mean[0] - mean)) < 1e-10
    out = tmp_path / "curve.png"
    rc = main(["predict", str(d / "relu.tp"), "--train", f"{d}/xtr.npy,{d}/ytr.npy", "--test", str(d / "xte.npy"),
               "--test-labels", str(d / "yte.npy"), "--learning-curve", "2,4,8", "--times", "1,inf",
               "--plot", str(out)])
    assert rc == 0 and out.stat().st_size > 1000


def test_cli_prints_metrics(files, capsys):
    d, x, y = files
    rc = main(["predict", str(d / "relu.tp"), "--train", f"{d}/xtr.npy,{d}/ytr.npy", "--test", str(d / "xte.npy"),
               "--test-labels", str(d / "yte.npy"), "--times", "0,inf"])
    out = capsys.readouterr().out
    assert rc == 0 and "test MSE" in out and "test acc" in out


def _run(args, capsys):
    rc = main(["predict"] + [str(a) for a in args])
    return rc, capsys.readouterr().err


def test_bad_input_exit_2(files, tmp_path, capsys):
    d, x, y = files
    base = [d / "relu.tp", "--test", d / "xte.npy"]
    np.save(tmp_path / "y7.npy", y[:7])
    rc, err = _run(base + ["--train", f"{d}/xtr.npy,{tmp_path}/y7.npy"], capsys)
    assert rc == 2 and "7 labels for 8 training points" in err
    ynan = y[:8].copy()
    ynan[2, 0] = np.nan
    np.save(tmp_path / "ynan.npy", ynan)
    rc, err = _run(base + ["--train", f"{d}/xtr.npy,{tmp_path}/ynan.npy"], capsys)
    assert rc == 2 and "NaN" in err
    xdup = x[:8].copy()
    xdup[3] = xdup[1]
    np.save(tmp_path / "xdup.npy", xdup)
    rc, err = _run(base + ["--train", f"{tmp_path}/xdup.npy,{d}/ytr.npy"], capsys)
    assert rc == 2 and "singular" in err and "condition number" in err
    rc, err = _run(base + ["--train", f"{tmp_path}/xdup.npy,{d}/ytr.npy", "--noise", "1e-3"], capsys)
    assert rc == 0
    (tmp_path / "nokernel.tp").write_text(PROGRAM.replace("out NTK", "out NTK2"))
    rc, err = _run([tmp_path / "nokernel.tp", "--test", d / "xte.npy", "--train", f"{d}/xtr.npy,{d}/ytr.npy"],
                   capsys)
    assert rc == 2 and "no output 'NTK'" in err
    rc, err = _run(["examples/mlp_ntk.tp", "--test", d / "xte.npy", "--train", f"{d}/xtr.npy,{d}/ytr.npy"],
                   capsys)
    assert rc == 2 and 'load("points.npy")' in err
    rc, err = _run(base + ["--train", f"{d}/xtr.npy,{d}/ytr.npy", "--times", "1,x"], capsys)
    assert rc == 2 and "--times" in err
