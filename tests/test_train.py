"""gd(f[k], Y, eta, t): gradient descent in the infinite-width limit, unrolled by the compiler
(tensorprog/frontend/train.py, docs/train.md).

Truths: the hand-unrolled muP step of examples/mup_one_step.tp, and a numpy network trained by real
gradient descent with its own hand-written backprop, whose output after the step converges to the limit.
"""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tensorprog

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
X = np.array([[1, 0.5, -0.5], [0.2, 1, 0.4]])
ONE_STEP = "\n".join(line for line in (EXAMPLES / "train_mup.tp").read_text().splitlines()
                     if not line.startswith("#")) + "\n"


@pytest.fixture(scope="module")
def one_step():
    return tensorprog.evaluate(tensorprog.parse(ONE_STEP))["F"]


def test_one_step_equals_the_hand_unrolled_example(one_step):
    """mup_one_step.tp writes the step by hand (the rank-one updates of U xi, W and the readout)."""
    hand = tensorprog.evaluate(tensorprog.parse(EXAMPLES / "mup_one_step.tp"))
    assert one_step.value[0].tolist() == [0.0, 0.0]                   # f at initialisation: 0 in muP
    assert abs(one_step.value[1, 1] - hand["f1"].value) <= 1e-10 + one_step.error[1, 1] + hand["f1"].error


def numpy_step(width, rng, eta=1.0, y0=1.0):
    """The network of ONE_STEP at width n, every tensor in standard coordinates (U, w, v ~ N(0, 1)):
    h1 = U xi / sqrt(d), h2 = w x1 / sqrt(n), f = v . tanh(h2) / n.  One step of gradient descent on
    1/2 (f(xi_0) - y0)^2 with learning rate n eta on every coordinate (gd's rate-1 parameters); returns
    f at both inputs after the step.  Backprop by hand."""
    n, d = width, X.shape[1]
    U, w, v = rng.standard_normal((n, d)), rng.standard_normal((n, n)), rng.standard_normal(n)

    def forward(U, w, v, x):
        h1 = U @ x / math.sqrt(d)
        x1 = np.tanh(h1)
        h2 = w @ x1 / math.sqrt(n)
        return h1, x1, h2, np.tanh(h2), np.tanh(h2) @ v / n

    h1, x1, h2, x2, f0 = forward(U, w, v, X[0])
    chi = f0 - y0
    dh2 = v * (1 - x2 ** 2) / n                                   # df/dh2
    gv = x2 / n
    gw = np.outer(dh2, x1) / math.sqrt(n)
    dh1 = (1 - x1 ** 2) * (w.T @ dh2) / math.sqrt(n)              # df/dh1
    gU = np.outer(dh1, X[0]) / math.sqrt(d)
    lr = n * eta
    U, w, v = U - lr * chi * gU, w - lr * chi * gw, v - lr * chi * gv
    return np.array([forward(U, w, v, x)[-1] for x in X])


def test_one_step_matches_a_numpy_network_trained_by_gradient_descent(one_step):
    limit = one_step.value[1]
    widths, draws = (128, 256, 512, 1024, 2048), 10
    rms, last = [], None
    for n in widths:
        samples = np.array([numpy_step(n, np.random.default_rng([7, n, k])) for k in range(draws)])
        rms.append(np.sqrt(np.mean((samples - limit) ** 2)))
        last = samples
    slope = np.polyfit(np.log(widths), np.log(rms), 1)[0]
    assert -0.7 <= slope <= -0.3, (slope, rms)
    mean, se = last.mean(0), last.std(0, ddof=1) / math.sqrt(draws)
    assert np.all(np.abs(mean - limit) <= 4 * se + 4.0 / widths[-1]), (mean, limit, se)


BAD = [
    ("labels-not-numbers", "out F[k] = gd(f[k], X, 1.0, 1)\n", (7, 21, "labels must be a list of numbers")),
    ("too-many-labels", "out F[k] = gd(f[k], [1, 2, 3], 1.0, 1)\n", (7, 21, "expected 1 to 2 finite labels")),
    ("negative-steps", "out F[k] = gd(f[k], [1], 1.0, -1)\n", (7, 31, "non-negative integer")),
    ("zero-rate", "out F[k] = gd(f[k], [1], 0, 1)\n", (7, 26, "learning rate must be a positive number")),
    ("arity", "out F[k] = gd(f[k], [1], 1.0)\n", (7, 12, "gd takes f[k]")),
]


@pytest.mark.parametrize("line,where", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_a_clear_error(tmp_path, line, where):
    text = ONE_STEP.strip().splitlines()[:6]
    path = tmp_path / "prog.tp"
    path.write_text("\n".join(text) + "\n" + line)
    r = subprocess.run([sys.executable, "-m", "tensorprog", "check", str(path)], capture_output=True, text=True)
    row, col, msg = where
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"prog.tp:{row}:{col}: error:" in r.stderr and msg in r.stderr, r.stderr


KEYWORD_BAD = [
    ("unknown-loss", "out F[k] = gd(f[k], [1], 1.0, 1, loss = hinge)\n", (7, 41, "unknown loss 'hinge'")),
    ("loss-not-a-name", "out F[k] = gd(f[k], [1], 1.0, 1, loss = 2)\n", (7, 41, "loss must name a loss")),
    ("loss-arity", "fn ell(f) = f^2\nout F[k] = gd(f[k], [1], 1.0, 1, loss = ell)\n",
     (8, 41, "must take two arguments")),
    ("softmax-one-output", "out F[k] = gd(f[k], [0], 1.0, 1, loss = softmax)\n", (7, 15, "K >= 2 outputs")),
    ("unknown-keyword", "out F[k] = gd(f[k], [1], 1.0, 1, lr = 2)\n", (7, 34, "gd has no keyword argument 'lr'")),
    ("keyword-twice", "out F[k] = gd(f[k], [1], 1.0, 1, loss = squared, loss = squared)\n",
     (7, 50, "given twice")),
    ("keyword-elsewhere", "out F[k] = tanh(f[k], a = 1)\n", (7, 23, "tanh takes no keyword arguments")),
    ("few-batches", "out F[k] = gd(f[k], [1, 2], 1.0, 2, batches = [[0]])\n", (7, 47, "2 steps need 2 batches")),
    ("batch-out-of-range", "out F[k] = gd(f[k], [1], 1.0, 1, batches = [[1]])\n",
     (7, 44, "distinct training points 0..0")),
    ("short-schedule", "out F[k] = gd(f[k], [1], [1.0], 2)\n", (7, 26, "2 steps need 2 learning rates")),
    ("bad-schedule", "out F[k] = gd(f[k], [1], [1.0, -1], 2)\n", (7, 26, "positive number or a list")),
    ("value-outside", "vector z ~ N(0, 1)\nout F = gd(f[0], [1], 1.0, 1, value = z)\n",
     (8, 39, "value must be a vector or scalar of the program that the trained outputs depend on")),
    ("not-a-member", "out F = gd(mean(v), [1], 1.0, 1)\n", (7, 12, "must be a member of a scalar family")),
    ("bad-scale", "out F[k] = gd(f[k], [1], 1.0, 1, scale = 2)\n", (7, 42, "scale must be 1")),
    ("ntk-in-kernel-regime",
     "out T[i, j] = ntk(gd(f[i], [1], 1.0, 1, scale = sqrt(n)), gd(f[j], [1], 1.0, 1, scale = sqrt(n)))\n",
     (7, 15, "the NTK does not move in the limit")),
]


@pytest.mark.parametrize("line,where", [c[1:] for c in KEYWORD_BAD], ids=[c[0] for c in KEYWORD_BAD])
def test_bad_training_options_are_clear_errors(tmp_path, line, where):
    """(In-process: the exit code 2 path is the same TPError, checked by subprocess above.)"""
    path = tmp_path / "prog.tp"
    path.write_text("\n".join(ONE_STEP.strip().splitlines()[:6]) + "\n" + line)
    with pytest.raises(tensorprog.TPError) as e:
        tensorprog.parse(path)
    row, col, msg = where
    assert f"prog.tp:{row}:{col}: error:" in str(e.value) and msg in str(e.value), str(e.value)


def test_feature_learning_short_form_equals_the_hand_written_step():
    """examples/train_features.tp (gd writes the step) against examples/feature_learning.tp (the step by
    hand): the muP feature-kernel change agrees to 1e-10 (the same integrals); with the NTK readout the
    trained kernel is the initial one, the same quantity."""
    short = tensorprog.evaluate(tensorprog.parse(EXAMPLES / "train_features.tp"))
    # (the hand-written program without its dK_ntk output, whose limit is 0: half the integrals)
    hand = "\n".join(line for line in (EXAMPLES / "feature_learning.tp").read_text().splitlines()
                     if not line.startswith("out dK_ntk"))
    hand = tensorprog.evaluate(tensorprog.parse(hand + "\n"))
    assert np.abs(short["dK_mup"].value - hand["dK_mup"].value).max() <= 1e-10
    assert np.abs(short["dK_mup"].value).max() > 0.05
    assert np.array_equal(short["K_ntk"].value, short["K0"].value)


def test_a_rate_under_which_training_diverges_names_the_update(tmp_path):
    """rate = n on the hidden matrix: its update W_1 - W_0 is scaled by n (eta s2 n rho r = n): refused."""
    path = tmp_path / "prog.tp"
    text = ONE_STEP.replace("param matrix W ~ N(0, 1/n)", "param (rate = n) matrix W ~ N(0, 1/n)")
    path.write_text(text)
    with pytest.raises(tensorprog.TPError) as e:
        tensorprog.parse(path)
    assert "training diverges as n grows: an update of" in str(e.value) and "prog.tp:" in str(e.value), str(e.value)


def test_logistic_loss_first_step_is_the_squared_loss_step_with_half_labels():
    """A user loss l(f, y) = log(1 + exp(-y f)) has chi = dl/df = -y / (1 + exp(y f)); in muP f = 0 at
    initialisation, so the first step's chi is -y/2: the squared-loss step with labels y/2 (chi = f - y/2)."""
    res = tensorprog.evaluate(tensorprog.parse(        # a one-hidden-layer (mean-field) network: low dimension
        "data X = [[1, 0.5, -0.5], [0.2, 1, 0.4]]\nparam vector h[i] ~ N(0, dot(X[i], X[i']) / dim(X))\n"
        "param vector v ~ N(0, 1)\nf[i] = mean(v * tanh(h[i]))\nfn ell(f, y) = log(1 + exp(-y * f))\n"
        "out G[k] = gd(f[k], [1], 2.0, 1, loss = ell)\nout F[k] = gd(f[k], [0.5], 2.0, 1)\n"))
    logistic, squared = res["G"], res["F"]
    assert np.all(np.abs(logistic.value - squared.value) <= 1e-10 + logistic.error + squared.error)
    assert np.abs(logistic.value).max() > 0.05                # the step moved f


def test_a_data_element_in_a_program_expression():
    """Regression: Y[1] of 1-D data is a number inside a program expression (was refused as a data scalar
    of the wrong shape)."""
    res = tensorprog.evaluate(tensorprog.parse("data Y = [1.0, -1.0]\nvector x ~ N(0, 1)\n"
                                               "out s[t] = mean(x^2) - Y[t] for t in 0..1\n"))["s"]
    assert res.value.tolist() == [0.0, 2.0]


def test_training_an_output_without_parameters_is_refused(tmp_path):
    path = tmp_path / "prog.tp"
    path.write_text("data X = [[1], [2]]\nvector g[i] ~ N(0, dot(X[i], X[i']))\nf[i] = mean(tanh(g[i]))\n"
                    "out F[k] = gd(f[k], [1], 1.0, 1)\n")
    r = subprocess.run([sys.executable, "-m", "tensorprog", "check", str(path)], capture_output=True, text=True)
    assert r.returncode == 2 and "depends on no trained parameter" in r.stderr, r.stderr


def test_a_param_no_trained_output_depends_on_is_refused(tmp_path, capsys):
    """`param` marks what gd / ntk train: one that no such output reaches would silently stay at its
    initial value.  Two networks in one program, each trained on its own parameters, are fine."""
    from tensorprog.cli import main

    net = ("data X = [[1], [2]]\nparam vector g[i] ~ N(0, dot(X[i], X[i']))\nparam vector v ~ N(0, 1)\n"
           "param vector u ~ N(0, 1)\nf[i] = mean(v * tanh(g[i]))\n")
    with pytest.raises(tensorprog.TPError, match=r"'u' is declared `param` but no gd\(\.\.\.\), ntk"):
        tensorprog.parse(net + "out F[k] = gd(f[k], [1], 1.0, 1)\n")
    two = net + "h[i] = mean(u * sin(g[i]))\nout F[k] = gd(f[k], [1], 1.0, 1)\nout H[i, j] = ntk(h[i], h[j])\n"
    assert tensorprog.parse(two).training_steps == 1
    path = tmp_path / "prog.tp"
    path.write_text(net + "out F[k] = gd(f[k], [1], 1.0, 1)\n")
    assert main(["check", str(path)]) == 2
    assert "prog.tp:4:1: error: 'u' is declared `param`" in capsys.readouterr().err
