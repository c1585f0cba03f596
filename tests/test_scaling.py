"""`tpc scaling` (static width exponents) and `tpc simulate --coord-check` (issue 13).

Truths: the exponents of Tensor Programs IV derived by hand in `hand_mlp` below (in the units of
`ntk`, docs/ntk.md); finite-width simulations of the trained programs (slopes of RMS against width
within 3 standard errors); numpy networks trained by tests/train_networks.py (the exact finite-width
replay of `scale = sqrt(n)`)."""
import json
from fractions import Fraction

import numpy as np
import pytest

import tensorprog
from tensorprog.cli import main
from tensorprog.scaling import scaling
from tensorprog.scaling.coordcheck import coord_check
from train_networks import parametrization, train_mlp

HALF = Fraction(1, 2)
X3 = [[1, 0, 0], [0.6, 0.8, 0], [-1, 0.5, 0.2]]


def mlp(L, scale, r_in, r_w, r_v, steps=2):
    """L hidden tanh layers (depth L + 1) on 3 points, trained on the first 2; rates per standard
    coordinate in the units of ntk (docs/ntk.md)."""
    sc = f", scale = {scale}" if scale != "1" else ""
    return f"""data X = {X3}
param(rate = {r_in}) vector g[1][i] ~ N(0, dot(X[i], X[i']) / dim(X))
param(rate = {r_w}) matrix W[l] ~ N(0, 1/n) for l in 2..{L}
param(rate = {r_v}) vector v ~ N(0, 1)
for l in 2..{L}: g[l][i] = W[l] @ tanh(g[l-1][i])
f[i] = mean(v * tanh(g[{L}][i]))
out F[k] = gd(f[k], [1.0, -1.0], 0.5, {steps}{sc})
"""


def hand_mlp(L, s, e_in, e_w, e_v):
    """Tensor Programs IV for this MLP, one step from initialisation.  With F = n^s f and rates n^e:
    every trained vector moves by n^(e - s) (its gradient n df/dp is Theta(1); chi = F - y is Theta(1)
    when F_0 = O(1)); a hidden matrix's update moves W x by n^(e_W - s) (a sum of outer products whose
    inner products mean(x x') are Theta(1)); a layer inherits the largest change below it (tanh' and W
    keep sizes); f = mean(v x_L) moves by the larger of v's and x_L's change; F by n^s times that.  At
    initialisation every vector is Theta(1) and f = mean(v x) = Theta(n^-1/2) (v centred, independent)."""
    d = {"g[1]": Fraction(e_in) - s}
    for l in range(2, L + 1):
        d[f"g[{l}]"] = max(d[f"g[{l - 1}]"], Fraction(e_w) - s)
    d["v"] = Fraction(e_v) - s
    F0 = s - HALF
    dF = s + max(d["v"], d[f"g[{L}]"])
    return d, F0, dF


# name, output scale (text, exponent), rate exponents (input layer, hidden, readout), verdict
PARAMETRIZATIONS = [
    ("SP, rate independent of width", "sqrt(n)", HALF, (0, 1, 1), "unstable"),
    ("SP at its largest stable rate eta/n", "sqrt(n)", HALF, (-1, 0, 0), "kernel regime"),
    ("NTK", "sqrt(n)", HALF, (0, 0, 0), "kernel regime"),
    ("muP", "1", 0, (0, 0, 0), "feature learning"),
]
RATE_TEXT = {-1: "1/n", 0: "1", 1: "n"}


@pytest.mark.parametrize("L", [1, 2, 3, 4])
@pytest.mark.parametrize("name, scale, s, e, verdict", PARAMETRIZATIONS, ids=[p[0] for p in PARAMETRIZATIONS])
def test_mlp_classification_of_tensor_programs_iv(L, name, scale, s, e, verdict):
    report = scaling(mlp(L, scale, *(RATE_TEXT[k] for k in e)))
    t = report.trainings[0]
    assert t.verdict == verdict, t.summary
    d, F0, dF = hand_mlp(L, s, *e)
    for value, k in d.items():
        assert report.row(value).changes[0] == k, value
        assert report.row(value).init == 0
    F = next(r for r in t.rows if r.name.startswith("F = "))
    assert F.init == F0 and F.changes[0] == dF
    if verdict == "feature learning":       # muP: every hidden layer (and the input layer) learns features
        assert t.learning == [f"g[{l}]" for l in range(1, L + 1)]
    if verdict != "unstable":               # a stable step keeps the exponents (TP IV, by induction)
        for value, k in d.items():
            assert report.row(value).changes[1] == k


def test_mean_field_one_hidden_layer_learns_features():
    """Mean field: f = (1/n) sum_a v_a phi(u_a . x), raw rates Theta(n) = rate 1 per standard coordinate
    in the units of ntk (docs/ntk.md): the same program as muP with one hidden layer."""
    t = scaling(mlp(1, "1", "1", "1", "1")).trainings[0]
    assert t.verdict == "feature learning" and t.learning == ["g[1]"]


def test_broken_parametrization_names_the_value_line_and_step():
    """muP's raw learning rates with SP's readout multiplier 1/sqrt(n): the output F = sqrt(n) f and,
    per standard coordinate, rates n (a raw rate lr gives rate lr n^-2s / n in the units of ntk: muP's
    lr = n at s = 0 is rate 1; at s = 1/2 it is rate n).  F_0 is Theta(1) (stable at initialisation);
    after the first step the input layer g[1] (line 2) moves by n^(1 - 1/2)."""
    t = scaling(mlp(3, "sqrt(n)", "n", "n", "n")).trainings[0]
    assert t.verdict == "unstable"
    assert t.culprit == {"name": "g[1]", "line": 2, "step": 1, "exponent": "1/2"}
    assert "g[1] (line 2) moves by n^1/2 after step 1" in t.summary


def test_program_without_width_dependence_gets_a_plain_report(capsys):
    assert main(["scaling", "examples/mlp_nngp.tp", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (t,) = report["trainings"]
    assert t["verdict"] == "initialisation"
    assert {v["init"] for v in t["values"]} == {"0"}


def test_undecided_exponent_is_reported_with_its_reason():
    """sqrt(n) mean(x) is Theta(1) but random (a central-limit fluctuation): the Master Theorem gives no
    limit for what depends on it, so the order of mean(x tanh(s x)) is not guessed."""
    report = scaling("vector x ~ N(0, 1)\ns = sqrt(n) * mean(x)\nout r = mean(x * tanh(s * x))\n")
    t = report.trainings[0]
    assert report.row("s").init == 0            # sqrt(n) n^-1/2: mean(x) of a centred Gaussian
    assert "whose size depends on n" in report.row("r").note
    assert t.verdict == "undecided"


def block(logit_scale, steps=1):
    """One attention block over 2 tokens (queries = keys = Wqk x, as in examples/ntk_transformer.tp), a
    tanh readout, muP training (rates 1, output scale 1)."""
    return f"""data S = [[[1, 0, 0], [0, 1, 0.5]], [[0.5, -1, 0], [1, 0.2, -0.3]]]
param vector x[t][s] ~ N(0, dot(S[s][t], S[s'][t']) / dim(S)) for t in 0..1
param matrix Wqk ~ N(0, 1/n)
param matrix Wv ~ N(0, 1/n)
param vector v ~ N(0, 1)
for t in 0..1:
    q[t][s] = Wqk @ x[t][s]
    u[t][s] = Wv @ x[t][s]
z[c][s] = {logit_scale}mean(q[1][s] * q[c][s]) for c in 0..1
y[s] = x[1][s] + sum(softmax([z[c][s] for c in 0..1])[c] * u[c][s] for c in 0..1)
f[s] = mean(v * tanh(y[s]))
out F[s] = gd(f[s], [1.0], 1.0, {steps})
"""


def rnn(scale="1"):
    """A tanh RNN over 3 time steps (one recurrent matrix), input layer U xi_t as trained vectors."""
    sc = f", scale = {scale}" if scale != "1" else ""
    return f"""data S = [[[1, 0], [0, 1], [0.5, 0.5]], [[0, 1], [1, -1], [0.3, 0.7]]]
param vector u[t][s] ~ N(0, dot(S[s][t], S[s'][t']) / dim(S)) for t in 0..2
param matrix W ~ N(0, 1/n)
param vector v ~ N(0, 1)
h[0][s] = u[0][s]
for t in 1..2: h[t][s] = W @ tanh(h[t-1][s]) + u[t][s]
f[s] = mean(v * tanh(h[2][s]))
out F[s] = gd(f[s], [1.0], 1.0, 2{sc})
"""


def test_attention_logits_one_over_d_is_mup_one_over_sqrt_d_is_not():
    """Queries and keys of one matrix: mean(q q') -> sigma^2 E[x x'] != 0, so 1/d logits are Theta(1) and
    sqrt(d) mean(q q') (the 1/sqrt(d) convention) grows like n^1/2 from initialisation."""
    mup = scaling(block("")).trainings[0]
    assert mup.verdict == "feature learning"
    sp = scaling(block("sqrt(n) * ")).trainings[0]
    assert sp.verdict == "unstable" and sp.culprit == {"name": "z[0]", "line": 9, "step": 0, "exponent": "1/2"}


WIDTHS = [128, 256, 512, 1024, 2048, 4096]


@pytest.mark.slow
@pytest.mark.parametrize("program", [mlp(2, "sqrt(n)", "1/n", "1", "1"), mlp(2, "1", "1", "1", "1"), block(""),
                                     rnn()], ids=["MLP SP eta/n", "MLP muP", "attention block muP", "RNN muP"])
def test_static_exponents_agree_with_measured_slopes(program):
    """Every vector's RMS size and change after each step, widths 128..4096, 5 seeds: the fitted slope
    within 3 standard errors of the static exponent."""
    check = coord_check(program, WIDTHS, seeds=5)
    vectors = [r for r in check.rows if r.kind == "vector" and r.static is not None and r.static != -np.inf]
    assert len(vectors) >= 10
    bad = [(r.name, r.quantity, r.step, r.slope, r.slope_se, r.static) for r in vectors if r.disagrees]
    assert not bad, bad


def test_coord_check_measures_the_blow_up_of_one_over_sqrt_d_logits():
    check = coord_check(block("sqrt(n) * "), [512, 1024, 2048], seeds=8)
    z0 = next(r for r in check.rows if r.name == "z[0]" and r.quantity == "size" and r.step == 0)
    assert abs(z0.slope - 0.5) < 3 * z0.slope_se and z0.slope_se < 0.1


def test_sqrt_n_output_replay_is_gradient_descent_of_the_ntk_network():
    """`gd(..., scale = sqrt(n))` parsed width-dependent is plain gradient descent at finite width: the mean
    over seeds of F after 2 steps equals that of numpy networks in the NTK parametrization
    (tests/train_networks.py: f = v . phi(U x / sqrt(d)) / sqrt(n), theta <- theta - eta dL/dtheta)."""
    X = np.array(X3)
    width, seeds = 256, 200
    program = tensorprog.parse(f"""data X = {X3}
param vector g[i] ~ N(0, dot(X[i], X[i']) / dim(X))
param vector v ~ N(0, 1)
f[i] = mean(v * tanh(g[i]))
out F[k] = gd(f[k], [1.0, -1.0], 0.5, 2, scale = sqrt(n))
""", width_dependent=True)
    sim = tensorprog.simulate(program, width, seeds=seeds)
    a, r = parametrization("ntk", 3, width)
    nets = np.array([train_mlp(X, np.array([[1.0], [-1.0]]), width=width, depth=1, activation="tanh",
                               multipliers=a, rates=r, eta=0.5, steps=2, seed=s).f[-1][:, 0]
                     for s in range(seeds)])
    se = np.sqrt(sim.stderr["F"] ** 2 + nets.std(axis=0, ddof=1) ** 2 / seeds)
    assert np.all(np.abs(sim.mean["F"] - nets.mean(axis=0)) < 4 * se), (sim.mean["F"], nets.mean(axis=0), se)
    assert np.all(se < 0.05)


def test_cli_scaling_and_coord_check(tmp_path, capsys):
    prog = tmp_path / "rnn.tp"
    prog.write_text(rnn("sqrt(n)"))
    assert main(["scaling", str(prog)]) == 0
    out = capsys.readouterr().out
    assert "verdict: kernel regime" in out and "h[2]" in out
    assert main(["scaling", str(prog), "--latex"]) == 0
    assert r"\begin{tabular}" in capsys.readouterr().out
    png = tmp_path / "cc.png"
    assert main(["simulate", str(prog), "--coord-check", "--widths", "64,128,256", "--seeds", "3",
                 "--plot", str(png)]) == 0
    assert "slopes differ from the static exponent" in capsys.readouterr().out
    assert png.stat().st_size > 10_000
    assert main(["simulate", "examples/mlp_nngp.tp", "--coord-check"]) == 2
    assert "--coord-check needs a training" in capsys.readouterr().err


def test_scale_other_than_sqrt_n_has_no_limit_of_its_own(tmp_path, capsys):
    prog = tmp_path / "p.tp"
    prog.write_text(mlp(1, "n^(1/4)", "1", "1", "1"))
    assert main(["eval", str(prog)]) == 2
    assert "analyse them with `tpc scaling`" in capsys.readouterr().err
    t = scaling(str(prog)).trainings[0]        # features move by n^(0 - 1/4), F by n^(1/4 - 1/4)
    assert t.verdict == "kernel regime" and t.rows[0].changes[0] == Fraction(-1, 4)
