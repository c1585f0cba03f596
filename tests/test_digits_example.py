"""The digits example (examples/digits/run.py) on a subset: accuracy well above chance, and the
NNGP t = infinity prediction equal to kernel regression written here with numpy on the kernels of
the same program (independent of tensorprog.predict's linear algebra)."""
import importlib
import importlib.util
import pathlib
import tempfile

import numpy as np
import pytest

import tensorprog

pytest.importorskip("sklearn")
RUN = pathlib.Path(__file__).resolve().parents[1] / "examples" / "digits" / "run.py"


def _example():
    spec = importlib.util.spec_from_file_location("digits_example", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_subset_accuracy_and_kernel_regression(tmp_path):
    ex = _example()
    rows = ex.accuracy_table([1, 2], n_train=200, n_test=100)
    for depth, acc_nngp, acc_ntk in rows:
        assert acc_nngp > 0.8 and acc_ntk > 0.8, rows          # chance is 0.1
    xtr, ytr, xte, yte = ex.digits(200, 100)
    pred = tensorprog.predict(ex.program(2), xtr, ytr, xte, kernel="nngp", noise=1e-6)
    np.save(tmp_path / "points.npy", np.vstack([xtr, xte]))
    res = tensorprog.evaluate(ex.program(2).replace('load("points.npy")', f'load("{tmp_path / "points.npy"}")'))
    K = res["NNGP"].value
    want = K[200:, :200] @ np.linalg.solve(K[:200, :200] + 1e-6 * np.eye(200), ytr)
    np.testing.assert_allclose(pred.mean[-1], want, rtol=1e-10, atol=1e-10)


def _module(name):
    """A sibling module of run.py (examples/digits/<name>.py)."""
    _example()   # puts examples/digits on sys.path
    return importlib.import_module(name)


def _relu_moments(var1, var2, cov):
    """E[relu(u) relu(u')] and E[relu'(u) relu'(u')] for centred Gaussians (arc-cosine kernels, Cho & Saul)."""
    norm = np.sqrt(var1 * var2)
    theta = np.arccos(np.clip(cov / norm, -1.0, 1.0))
    return norm * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi), (np.pi - theta) / (2 * np.pi)


def test_gap_row_kernels_equal_the_hand_recursion():
    """NNGP and NTK of examples/digits/gap_rows.tp on 3 images against the layer recursion written here:
    Sigma_h(t, t') = sw2 x_t.x'_t'/8 + sb2, Sigma_g = sw2 E[relu relu](Sigma_h) + sb2,
    NNGP = sw2/T^2 sum_{t,t'} E[relu relu](Sigma_g) + sb2,
    NTK  = NNGP + sw2/T^2 sum_{t,t'} E[relu' relu'](Sigma_g) (Sigma_g + sw2 E[relu' relu'](Sigma_h) Sigma_h)."""
    ex = _example()
    sw2, sb2, T = 2.0, 0.1, 8
    xtr, _, _, _ = ex.digits(3, 0)
    rows = xtr.reshape(3, 8, 8)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(pathlib.Path(tmp) / "points.npy", rows)
        res = tensorprog.evaluate(ex.gap_program().replace('load("points.npy")',
                                                           f'load("{pathlib.Path(tmp) / "points.npy"}")'))
    tokens = rows.reshape(24, 8)
    sh = sw2 * tokens @ tokens.T / 8 + sb2
    dh = np.diag(sh)
    e_h, d_h = _relu_moments(dh[:, None], dh[None, :], sh)
    sg = sw2 * e_h + sb2
    dg = np.diag(sg)
    e_g, d_g = _relu_moments(dg[:, None], dg[None, :], sg)
    pool = lambda m: m.reshape(3, 8, 3, 8).sum(axis=(1, 3)) / T ** 2   # noqa: E731  sum over row pairs
    nngp = sw2 * pool(e_g) + sb2
    ntk = nngp + sw2 * pool(d_g * (sg + sw2 * d_h * sh))
    np.testing.assert_allclose(res["NNGP"].value, nngp, rtol=1e-9)
    np.testing.assert_allclose(res["NTK"].value, ntk, rtol=1e-9)


def test_finite_width_backprop_matches_finite_differences():
    """finite_width.gradients (hand-written backprop, 2 hidden layers) against central differences of L."""
    fw = _module("finite_width")
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    p = fw.init(2, 6, 4, 3, 1, rng)[0]
    loss = lambda q: 0.5 * np.sum((fw.forward(q, X)[0] - Y) ** 2)   # noqa: E731
    grad = fw.gradients(p, X, Y)
    for name, value in p.items():
        for index in [(0,) * value.ndim, tuple(s - 1 for s in value.shape)]:
            up, down = {k: a.copy() for k, a in p.items()}, {k: a.copy() for k, a in p.items()}
            up[name][index] += 1e-6
            down[name][index] -= 1e-6
            assert abs((loss(up) - loss(down)) / 2e-6 - grad[name][index]) < 1e-6 * (1 + abs(grad[name][index])), name


def test_finite_width_networks_approach_the_ntk_prediction():
    """Trained 1-hidden-layer networks (antithetic pairs) approach predict's NTK flow on digits: RMS ~ n^-1/2."""
    ex, fw = _example(), _module("finite_width")
    xtr, ytr, xte, yte = ex.digits(40, 20)
    time = 0.1
    target = tensorprog.predict(ex.program(1), xtr, ytr, xte, times=[time], kernel="ntk").mean[0]
    rows, slope = fw.width_sweep(1, [32, 128, 512], xtr, ytr, xte, yte, target, time, steps=5, pairs=4)
    assert -0.75 <= slope <= -0.3, (slope, rows)
    assert rows[-1][3] < 0.15 * np.sqrt(np.mean(target ** 2)), rows      # close relative to the predictions
    assert np.sqrt(np.mean(target ** 2)) > 0.1                           # and they moved away from 0


def test_mup_limit_first_step_equals_the_hand_derived_step():
    """gd on the muP network of examples/digits/mup.py (3 vs 8, 4 training + 2 test images): f = 0 at T = 0
    (within the sampled limit's standard error);
    after one step (chi_i = -Y_i, c_mi = sw2 x_m.x_i/64, docs/train.md's update rules)
        v_1 = v + eta sum_i Y_i relu(h_i),   h_1(x_m) = h_m + eta sum_i Y_i c_mi v relu'(h_i),
        f_1(x_m) = E[v_1 relu(h_1(x_m))],
    estimated here by Monte Carlo over (h, v) ~ N(0, c) x N(0, 1) with numpy. eta = 0.5 makes the step's
    nonlinearity visible: f_1 is not the kernel step eta Theta Y (checked too)."""
    mup = _module("mup")
    eta = 0.5
    xtr, ytr, xte, _ = mup.binary_task(n_train=2, n_test=1)
    f0, err0 = mup.mup_limit(0, xtr, ytr, xte, eta=eta, samples=1 << 14)   # E[v relu(h)] = 0, sampled
    assert np.all(np.abs(f0) < 4 * err0) and np.all(err0 < 0.05), (f0, err0)
    f1, err = mup.mup_limit(1, xtr, ytr, xte, eta=eta, samples=1 << 18)
    x = np.vstack([xtr, xte])
    c = 2.0 * x @ x.T / 64
    rng = np.random.default_rng(5)
    draws = 1 << 18
    h = rng.multivariate_normal(np.zeros(len(x)), c, size=draws, method="eigh")
    v = rng.standard_normal(draws)
    n = len(ytr)
    v1 = v + eta * np.maximum(h[:, :n], 0.0) @ ytr
    h1 = h + eta * v[:, None] * (((h[:, :n] > 0) * ytr) @ c[:n, :])
    samples = v1[:, None] * np.maximum(h1, 0.0)
    want, want_err = samples.mean(axis=0), samples.std(axis=0) / np.sqrt(draws)
    tol = 4 * np.sqrt(err ** 2 + want_err ** 2)
    assert np.all(np.abs(f1 - want) < tol), (f1, want, tol)
    # the kernel-regime step eta Theta_{.X} Y differs from it: the check sees the feature learning
    theta = tensorprog.evaluate(mup.mup_program(0, ytr, eta, points=_points_file(x)))["NTK"].value
    assert np.max(np.abs(eta * theta[:, :n] @ ytr - want)) > 3 * np.max(tol)


def _points_file(x):
    path = pathlib.Path(tempfile.mkdtemp(prefix="digits-test-")) / "points.npy"
    np.save(path, x)
    return str(path)
