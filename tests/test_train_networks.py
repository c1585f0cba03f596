"""Checks of tests/train_networks.py, the numpy networks trained by gradient descent that serve as the
finite-width truth for `gd(...)` (issue 12). Truths: central finite differences of the loss (the
hand-written backprop), the first-order Taylor expansion of the loss (the update rule with its rates),
a closed form for a linear network (the whole trajectory), and the muP width scaling (conventions).
"""
import numpy as np
import pytest

from train_networks import (MLP, RNN, loss_and_gradients, parametrization, train, train_mlp,
                            train_rnn)

D, N_TRAIN = 3, 4
X_MLP = np.random.default_rng(11).standard_normal((N_TRAIN + 2, D))       # 4 training + 2 test rows
X_RNN = np.random.default_rng(12).standard_normal((N_TRAIN + 1, 3, 2))   # sequences of T = 3 tokens


def labels(loss, classes, n_rows=N_TRAIN, seed=5):
    rng = np.random.default_rng(seed)
    if loss == "softmax_ce":
        return rng.integers(0, classes, n_rows)
    return rng.standard_normal((n_rows, classes))


def finite_difference_gradient(net, params, X, Y, loss, name, rows=None, step=1e-5):
    """Central differences (L(theta + h e) - L(theta - h e)) / 2h, entry by entry."""
    out = np.empty_like(params[name])
    for idx in np.ndindex(out.shape):
        values = []
        for sign in (1, -1):
            moved = {k: v.copy() for k, v in params.items()}
            moved[name][idx] += sign * step
            values.append(loss_and_gradients(net, moved, X, Y, loss, rows)[0])
        out[idx] = (values[0] - values[1]) / (2 * step)
    return out


def assert_gradients_match_finite_differences(net, params, X, Y, loss, rows=None):
    _, grads = loss_and_gradients(net, params, X, Y, loss, rows)
    assert set(grads) == set(net.names)
    for name in net.names:
        dense = grads[name].dense()
        fd = finite_difference_gradient(net, params, X, Y, loss, name, rows)
        err = np.linalg.norm(dense - fd) / np.linalg.norm(fd)
        assert err < 1e-6, (name, err)
        assert np.isclose(grads[name].sqnorm(), np.sum(dense ** 2), rtol=1e-12, atol=0)


def relu_seed_away_from_kinks(net, X, margin=1e-3):
    """The first seed whose pre-activations all have |h| > margin (finite differences of step 1e-5
    in standard coordinates move them by far less, so no kink is crossed)."""
    for seed in range(100):
        params = net.init(np.random.default_rng(seed))
        _, cache = net.forward(params, X)
        if min(np.abs(h).min() for h in cache[1]) > margin:
            return params
    raise AssertionError("no seed keeps the relu pre-activations away from 0")


MLP_CASES = [(act, loss) for act in ("tanh", "relu", "erf") for loss in ("squared", "softmax_ce")]


def initial_parameters(net, X, activation, seed):
    """Standard-normal parameters; for relu a draw with every pre-activation away from the kink (finite
    differences across a kink are not derivatives)."""
    return relu_seed_away_from_kinks(net, X) if activation == "relu" else net.init(np.random.default_rng(seed))


@pytest.mark.parametrize("activation,loss", MLP_CASES, ids=[f"{a}-{l}" for a, l in MLP_CASES])
def test_mlp_gradients_equal_finite_differences(activation, loss):
    classes = 3 if loss == "softmax_ce" else 2
    net = MLP(D, 6, 3, activation, classes, {"U": 0.7, "W2": 0.5, "W3": 0.4, "v": 0.6}, None)
    Y = labels(loss, classes)
    params = initial_parameters(net, X_MLP, activation, seed=1)
    assert_gradients_match_finite_differences(net, params, X_MLP, Y, loss)
    assert_gradients_match_finite_differences(net, params, X_MLP, Y, loss, rows=[3, 1])   # a mini-batch


@pytest.mark.parametrize("activation,loss", [("tanh", "squared"), ("relu", "squared"), ("tanh", "softmax_ce")])
def test_rnn_gradients_equal_finite_differences(activation, loss):
    """Backprop through time: W is used at t = 2, 3 (h_0 = 0), U at every t."""
    classes = 3 if loss == "softmax_ce" else 1
    net = RNN(2, 5, activation, classes, {"W": 0.6, "U": 0.8, "v": 0.5}, None)
    Y = labels(loss, classes)
    params = initial_parameters(net, X_RNN, activation, seed=2)
    assert_gradients_match_finite_differences(net, params, X_RNN, Y, loss)


# ------------------------------------------------------------------ (b) one step, first order

def first_order_defect(net, X, Y, loss, eta, batch=None):
    """The loss after one step versus its first-order prediction, relative to the step's size:
    |L_1 - L_0 + eta sum_theta n r_theta <dL/dtheta, dL_B/dtheta>| / (eta S_B),
    S_B = sum_theta n r_theta ||dL_B/dtheta||^2 (B the step's batch; L over all training rows).
    Also returns S_B and the first-order drop."""
    params = net.init(np.random.default_rng(3))
    _, full = loss_and_gradients(net, params, X, Y, loss)
    _, step = loss_and_gradients(net, params, X, Y, loss, batch)
    drop = sum(net.n * net.r[k] * np.sum(full[k].dense() * step[k].dense()) for k in net.names)
    size = sum(net.n * net.r[k] * step[k].sqnorm() for k in net.names)
    run = train(net, X, Y, eta=eta, steps=1, loss=loss, init=params,
                batches=None if batch is None else [batch])
    return abs(run.loss[1] - run.loss[0] + eta * drop) / (eta * size), size, drop


STEP_CASES = [
    ("mlp-squared", lambda: MLP(D, 16, 2, "tanh", 2, *parametrization("mup", D, 16)), "squared", None),
    ("mlp-rates", lambda: MLP(D, 16, 3, "erf", 1, {"U": 0.5, "W": 0.3, "v": 0.2},
                              {"U": 0.5, "W2": 2.0, "W3": 0.0, "v": 1.5}), "squared", None),
    ("mlp-softmax", lambda: MLP(D, 16, 2, "tanh", 3, *parametrization("ntk", D, 16)), "softmax_ce", None),
    ("mlp-batch", lambda: MLP(D, 16, 2, "relu", 1, *parametrization("sp", D, 16)), "squared", [0, 2]),
    ("rnn", lambda: RNN(2, 16, "tanh", 1, *parametrization("mup", 2, 16)), "squared", None),
]


@pytest.mark.parametrize("make,loss,batch", [c[1:] for c in STEP_CASES], ids=[c[0] for c in STEP_CASES])
def test_one_step_decreases_the_loss_by_the_first_order_amount(make, loss, batch):
    """L(theta - n r eta g_B) = L - eta sum n r <g, g_B> + O(eta^2) (g_B = g for full batch: the drop is
    eta sum n r ||g||^2): the defect is O(eta^2), falling a hundredfold when eta falls tenfold."""
    net = make()
    X = X_RNN if isinstance(net, RNN) else X_MLP
    Y = labels(loss, net.classes)
    _, size, drop = first_order_defect(net, X, Y, loss, 1.0, batch)
    assert size > 0 and drop > 0
    if batch is None:
        assert np.isclose(drop, size, rtol=1e-12)
    eta = 1e-4 / size                                   # a loss change of about 1e-4
    big = first_order_defect(net, X, Y, loss, eta, batch)[0]
    small = first_order_defect(net, X, Y, loss, eta / 10, batch)[0]
    assert small < 1e-4 and 5 < big / small < 20, (big, small)


def test_ntk_rates_are_plain_gradient_descent_on_standard_coordinates():
    """parametrization('ntk') has r = 1/n: theta <- theta - eta dL/dtheta, every parameter."""
    net = MLP(D, 8, 2, "tanh", 1, *parametrization("ntk", D, 8))
    Y = labels("squared", 1)
    params = net.init(np.random.default_rng(4))
    _, grads = loss_and_gradients(net, params, X_MLP, Y, "squared")
    run = train(net, X_MLP, Y, eta=0.3, steps=1, init=params)
    for k in net.names:
        np.testing.assert_allclose(run.params[k], params[k] - 0.3 * grads[k].dense(), rtol=0, atol=1e-13)


def test_a_schedule_is_steps_with_their_own_rates():
    """Two steps at rates (e1, e2) = one step at e1, then one step at e2 from where it ended."""
    kw = dict(width=12, depth=2, activation="tanh", multipliers=parametrization("mup", D, 12)[0])
    Y = labels("squared", 1)
    both = train_mlp(X_MLP, Y, eta=[0.5, 2.0], steps=2, seed=9, kernels=True, **kw)
    first = train_mlp(X_MLP, Y, eta=0.5, steps=1, seed=9, **kw)
    second = train_mlp(X_MLP, Y, eta=2.0, steps=1, init=first.params, **kw)
    np.testing.assert_allclose(both.f[1], first.f[1], rtol=0, atol=1e-14)
    np.testing.assert_allclose(both.f[2], second.f[1], rtol=0, atol=1e-14)
    assert both.f.shape == (3, len(X_MLP), 1) and both.kernels.shape == (3, 2, len(X_MLP), len(X_MLP))
    # the feature kernel at initialisation, from its definition phi(h_l) . phi(h_l') / n
    U = np.random.default_rng(9).standard_normal((12, D))
    x1 = np.tanh(X_MLP @ U.T / np.sqrt(D))
    np.testing.assert_allclose(both.kernels[0, 0], x1 @ x1.T / 12, rtol=0, atol=1e-14)


def test_rnn_feature_kernels_and_mini_batches():
    """Kernels of h_1..h_T by their definition h_t . h_t' / n at initialisation (h_1 = tanh(a_U U x_1),
    h_2 = tanh(a_W W h_1 + a_U U x_2)); a step on the batch [2] moves f as a full-batch step on the
    training set made of that row alone."""
    a = {"W": 0.5, "U": 0.7, "v": 0.1}
    Y = labels("squared", 1)
    run = train_rnn(X_RNN, Y, width=10, multipliers=a, eta=0.2, steps=1, seed=4, batches=[[2]], kernels=True)
    assert run.kernels.shape == (2, 3, len(X_RNN), len(X_RNN))
    rng = np.random.default_rng(4)
    W, U = rng.standard_normal((10, 10)), rng.standard_normal((10, 2))
    h1 = np.tanh(0.7 * X_RNN[:, 0] @ U.T)
    h2 = np.tanh(0.5 * h1 @ W.T + 0.7 * X_RNN[:, 1] @ U.T)
    np.testing.assert_allclose(run.kernels[0, 0], h1 @ h1.T / 10, rtol=0, atol=1e-14)
    np.testing.assert_allclose(run.kernels[0, 1], h2 @ h2.T / 10, rtol=0, atol=1e-14)
    order = [2, 0, 1, 3, 4]
    alone = train_rnn(X_RNN[order], Y[2:3], width=10, multipliers=a, eta=0.2, steps=1, seed=4)
    np.testing.assert_allclose(alone.f[1], run.f[1][order], rtol=0, atol=1e-13)


# ------------------------------------------------------------------ (c) a closed form

@pytest.mark.parametrize("schedule", ["constant", "varying"])
def test_linear_network_with_trained_readout_follows_the_closed_form(schedule):
    """f = a_v v . (a_U U x), only v trained (r_U = 0, r_v = r). With Phi the fixed features (rows
    a_U U x_i), each step is f <- f - eta_s Kb[:, tr] chi_s on every row, Kb = n r a_v^2 Phi Phi^T,
    chi_s = f_s[tr] - Y. On the training rows chi_{s+1} = (I - eta_s K) chi_s (K = Kb[tr, tr]), so with
    K = Q diag(lam) Q^T:  chi_T = Q diag(prod_s (1 - eta_s lam)) Q^T chi_0, and summing the updates,
    f_T = f_0 - Kb[:, tr] K^-1 (chi_0 - chi_T); for a constant eta the sum is the geometric series
    eta sum_{s<T} (1 - eta lam)^s = (1 - (1 - eta lam)^T) / lam."""
    n, d, N, ntr, classes, T = 40, 6, 7, 4, 2, 25
    a_U, a_v, r = 0.4, 1 / n, 1.3
    rng = np.random.default_rng(21)
    X = rng.standard_normal((N, d))
    Y = rng.standard_normal((ntr, classes))
    U, v = rng.standard_normal((n, d)), rng.standard_normal((classes, n))
    Phi = a_U * X @ U.T
    Kb = n * r * a_v ** 2 * Phi @ Phi.T
    lam, Q = np.linalg.eigh(Kb[:ntr, :ntr])
    eta = 0.9 / lam.max() if schedule == "constant" else 0.9 / lam.max() * (1 + 0.5 * np.sin(np.arange(T)))
    f0 = a_v * Phi @ v.T
    chi0 = f0[:ntr] - Y
    if schedule == "constant":
        sum_eta_chi = Q @ np.diag((1 - (1 - eta * lam) ** T) / lam) @ Q.T @ chi0
    else:
        chiT = Q @ np.diag(np.prod(1 - np.outer(eta, lam), axis=0)) @ Q.T @ chi0
        sum_eta_chi = Q @ np.diag(1 / lam) @ Q.T @ (chi0 - chiT)
    fT = f0 - Kb[:, :ntr] @ sum_eta_chi
    run = train_mlp(X, Y, width=n, depth=1, activation="identity", classes=classes,
                    multipliers={"U": a_U, "v": a_v}, rates={"U": 0.0, "v": r}, eta=eta, steps=T,
                    init={"U": U, "v": v})
    np.testing.assert_allclose(run.f[0], f0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(run.f[-1], fT, rtol=0, atol=1e-10)
    assert np.array_equal(run.params["U"], U)                          # rate 0: untouched
    assert np.abs(fT[:ntr] - Y).max() < 0.5 * np.abs(chi0).max()       # it did train


# ------------------------------------------------------------------ (d) muP at growing width

def test_mup_network_after_one_step_concentrates_as_width_grows():
    """2-hidden-layer tanh muP (gd's rate-1 conventions), one step at eta = 1 on 3 points: f at all 5
    rows is O(1) and deterministic in the limit, so its RMS deviation over 10 seeds from the widest
    runs' mean shrinks with the width (about n^-1/2)."""
    X = np.random.default_rng(31).standard_normal((5, D))
    Y = np.array([1.0, -0.5, 0.3])
    widths, seeds = (64, 256, 1024), 10

    def runs(n):
        a, r = parametrization("mup", D, n)
        return np.array([train_mlp(X, Y, width=n, depth=2, activation="tanh", multipliers=a, rates=r,
                                   eta=1.0, steps=1, seed=[n, s]).f[1, :, 0] for s in range(seeds)])

    reference = runs(2048).mean(axis=0)
    rms = [np.sqrt(np.mean((runs(n) - reference) ** 2)) for n in widths]
    slope = np.polyfit(np.log(widths), np.log(rms), 1)[0]
    assert rms[0] > rms[1] > rms[2] and -0.8 < slope < -0.25, (rms, slope)
    assert np.abs(reference).max() > 0.05          # the step moved f: at init f = O(n^-1/2)


def test_bad_input_is_refused():
    kw = dict(width=4, depth=2, activation="tanh", multipliers={"U": 1, "W": 1, "v": 1}, eta=0.1, steps=1)
    Y = labels("squared", 1)
    cases = [(dict(activation="sigmoid"), "activation"), (dict(multipliers={"U": 1, "v": 1}), "missing"),
             (dict(multipliers={"U": 1, "W": 1, "v": 1, "b": 1}), "unknown"), (dict(loss="hinge"), "loss"),
             (dict(eta=[0.1, 0.2]), "learning rates"), (dict(batches=[[0, 9]]), "batches"),
             (dict(loss="softmax_ce", classes=3), "integer labels")]
    for change, message in cases:
        with pytest.raises(ValueError, match=message):
            train_mlp(X_MLP, Y, **{**kw, **change})
    with pytest.raises(ValueError, match="shape"):
        train_rnn(X_MLP, Y, width=4, multipliers={"W": 1, "U": 1, "v": 1}, eta=0.1, steps=1)


def test_divergence_is_an_error_not_a_nan():
    """A learning rate far beyond the stability edge of a linear network: f overflows within steps."""
    with pytest.raises(FloatingPointError, match="diverged"):
        with np.errstate(over="ignore", invalid="ignore"):
            train_mlp(X_MLP, labels("squared", 1), width=8, depth=1, activation="identity",
                      multipliers={"U": 1.0, "v": 1.0}, eta=1e3, steps=200)
