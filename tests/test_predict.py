"""tensorprog.predict against a direct numpy implementation of the formulas written here
(matrix exponential by scipy.linalg.expm, inverses by np.linalg.solve) at t in {0, 1, 10, inf}."""
import math

import numpy as np
import pytest
import scipy.linalg

from tensorprog import TPError
from tensorprog.predict import (IllConditionedKernelWarning, accuracy, gradient_flow, is_one_hot, mse,
                                nngp_posterior)


def relu_kernels(x, depth=2, sw2=2.0, sb2=0.1):
    """Closed-form relu NNGP and NTK (arc-cosine recursion, Cho & Saul / Jacot) for rows of x."""
    k = sw2 * x @ x.T / x.shape[1] + sb2
    theta = k.copy()
    for _ in range(depth):
        d = np.sqrt(np.diag(k))
        c = np.clip(k / np.outer(d, d), -1, 1)
        ang = np.arccos(c)
        k_new = sw2 * np.outer(d, d) * (np.sin(ang) + (np.pi - ang) * c) / (2 * np.pi) + sb2
        kdot = sw2 * (np.pi - ang) / (2 * np.pi)
        theta = k_new + kdot * theta
        k = k_new
    return k, theta


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((14, 5))
    y = np.eye(3)[rng.integers(0, 3, 14)]
    k, theta = relu_kernels(x)
    tr, te = slice(0, 9), slice(9, 14)
    return dict(x=x, y_train=y[tr], y_test=y[te], k=k, theta=theta, tr=tr, te=te)


def direct_flow(theta, k, tr, te, y, t, eta):
    """Lee et al. 2019 eq. 16 written out: A = Θ_xX Θ⁻¹ (I − expm(−ηΘt))."""
    th = theta[tr, tr]
    n = th.shape[0]
    e = np.zeros((n, n)) if t == math.inf else scipy.linalg.expm(-eta * th * t)
    a = theta[te, tr] @ np.linalg.solve(th, np.eye(n) - e)
    mean = a @ y
    cov = k[te, te] + a @ k[tr, tr] @ a.T - a @ k[tr, te] - k[te, tr] @ a.T
    return mean, cov


@pytest.mark.parametrize("t", [0.0, 1.0, 10.0, math.inf])
def test_ntk_flow_matches_direct_formula(data, t):
    d = data
    tr, te, k, theta = d["tr"], d["te"], d["k"], d["theta"]
    eta = 0.7
    got = gradient_flow(theta[tr, tr], theta[te, tr], d["y_train"], [t], learning_rate=eta,
                        nngp=(k[tr, tr], k[te, tr], k[te, te]))
    mean, cov = direct_flow(theta, k, tr, te, d["y_train"], t, eta)
    assert np.max(np.abs(got.mean[0] - mean)) < 1e-10
    assert np.max(np.abs(got.cov[0] - cov)) < 1e-10
    if t == 0:
        assert np.all(got.mean[0] == 0)  # prior mean
        assert np.max(np.abs(got.cov[0] - k[te, te])) < 1e-14  # prior covariance


def test_flow_at_infinity_interpolates_training_labels(data):
    d = data
    tr, theta = d["tr"], d["theta"]
    got = gradient_flow(theta[tr, tr], theta[tr, tr], d["y_train"], [1.0, math.inf])
    assert mse(got.mean[1], d["y_train"]) < 1e-20
    assert mse(got.mean[0], d["y_train"]) > 1e-3  # not yet at t = 1


def test_nngp_flow_infinity_is_noiseless_posterior(data):
    d = data
    tr, te, k = d["tr"], d["te"], d["k"]
    flow = gradient_flow(k[tr, tr], k[te, tr], d["y_train"], [math.inf], nngp=(k[tr, tr], k[te, tr], k[te, te]))
    direct_mean = k[te, tr] @ np.linalg.solve(k[tr, tr], d["y_train"])
    direct_cov = k[te, te] - k[te, tr] @ np.linalg.solve(k[tr, tr], k[tr, te])
    assert np.max(np.abs(flow.mean[0] - direct_mean)) < 1e-10
    assert np.max(np.abs(flow.cov[0] - direct_cov)) < 1e-10


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_nngp_posterior_matches_direct_formula(data, noise):
    d = data
    tr, te, k = d["tr"], d["te"], d["k"]
    mean, cov = nngp_posterior(k[tr, tr], k[te, tr], k[te, te], d["y_train"], noise=noise)
    kn = k[tr, tr] + noise * np.eye(k[tr, tr].shape[0])
    assert np.max(np.abs(mean - k[te, tr] @ np.linalg.solve(kn, d["y_train"]))) < 1e-10
    assert np.max(np.abs(cov - (k[te, te] - k[te, tr] @ np.linalg.solve(kn, k[tr, te])))) < 1e-10


def test_gradient_flow_with_noise_is_ridge_regression(data):
    d = data
    tr, te, theta = d["tr"], d["te"], d["theta"]
    got = gradient_flow(theta[tr, tr], theta[te, tr], d["y_train"], [math.inf], noise=0.3)
    want = theta[te, tr] @ np.linalg.solve(theta[tr, tr] + 0.3 * np.eye(9), d["y_train"])
    assert np.max(np.abs(got.mean[0] - want)) < 1e-10


def test_metrics():
    y = np.eye(3)[[0, 1, 2, 1]]
    p = np.array([[0.9, 0.1, 0], [0.2, 0.5, 0.3], [0.6, 0, 0.4], [0, 1, 0]])
    assert is_one_hot(y) and not is_one_hot(p)
    assert accuracy(p, y) == 0.75
    assert mse(p, y) == pytest.approx(np.sum((p - y) ** 2) / 12, rel=1e-15)


def test_singular_kernel_without_noise_is_an_error_naming_the_condition_number(data):
    d = data
    x = np.vstack([d["x"][:5], d["x"][:1]])  # a duplicate point
    y = np.vstack([d["y_train"][:5], d["y_train"][:1]])
    k, theta = relu_kernels(x)
    with pytest.raises(TPError, match="singular.*condition number"):
        gradient_flow(theta, theta, y, [math.inf])
    with pytest.raises(TPError, match="singular.*condition number"):
        nngp_posterior(k, k, k, y)
    # finite times stay defined; a regulariser gives a warning with the condition number, no NaN
    fin = gradient_flow(theta, theta, y, [10.0])
    assert np.all(np.isfinite(fin.mean[0]))
    with pytest.warns(IllConditionedKernelWarning, match="condition number"):
        reg = gradient_flow(theta, theta, y, [math.inf], diag_reg=1e-10)
    assert np.all(np.isfinite(reg.mean[0]))
    assert mse(reg.mean[0], y) < 1e-6


def test_bad_labels_are_errors(data):
    d = data
    tr, te, theta = d["tr"], d["te"], d["theta"]
    with pytest.raises(TPError, match="8 labels for 9 training points"):
        gradient_flow(theta[tr, tr], theta[te, tr], d["y_train"][:8], [1.0])
    y = d["y_train"].copy()
    y[4, 1] = np.nan
    with pytest.raises(TPError, match="NaN.*training point 4"):
        nngp_posterior(d["k"][tr, tr], d["k"][te, tr], None, y, noise=0.1)
    with pytest.raises(TPError, match="times must be >= 0"):
        gradient_flow(theta[tr, tr], theta[te, tr], d["y_train"], [-1.0])
