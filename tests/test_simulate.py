"""Unit tests of the finite-width simulator against exact finite-n facts derived in the tests:
chi-square laws of Gaussian matrix products (non-square, transposed), moments of the declared
initial Gaussians (singular covariances included), every value of a run recomputed with plain
numpy from the sampled matrices and vectors, reproducibility, memory refusal and clear errors;
then the convergence statistics and the ``tpc simulate`` command."""
import io
import json
import math

import numpy as np
import pytest
from scipy import stats

import tensorprog
from tensorprog.errors import TPError
from tensorprog.simulate import Progress, Simulator, convergence, estimate_memory, fit_exponent, simulate, trace


def parse(text):
    return tensorprog.parse(text)


# ---------------------------------------------------------------------- matrix products

PRODUCTS = """
width m = 3/2*n
matrix A : (m, n) ~ N(0, 2/n)
vector x ~ N(0.5, 1.5)
vector z : m ~ N(0, 1)
h = A @ x
k = A.T @ z
out HH = mean(h * h)
out XX = mean(x * x)
out KK = mean(k * k)
out ZZ = mean(z * z)
out ZH = mean(z * h)
out XK = mean(x * k)
"""


@pytest.fixture(scope="module")
def products():
    return simulate(parse(PRODUCTS), 64, seeds=400, seed=3)


def _check_chi2_ratio(r, dof):
    """r_s iid ~ chi^2_dof / dof: mean 1 within 4 exact standard errors, and the sample variance
    consistent with 2/dof (chi-square test on the variance, two-sided 1e-4)."""
    s = r.size
    assert abs(r.mean() - 1) < 4 * math.sqrt(2 / dof / s)
    stat = (s - 1) * r.var(ddof=1) / (2 / dof)
    assert stats.chi2.ppf(5e-5, s - 1) < stat < stats.chi2.ppf(1 - 5e-5, s - 1)


def test_matmul_by_nonsquare_matrix_has_the_chi_square_law(products):
    # Given x, (A x)_a are iid N(0, sigma^2 mean(x^2)) over the m = 96 rows, sigma^2 = 2 (fan-in n):
    # mean(h^2) / (2 mean(x^2)) ~ chi^2_96 / 96.
    _check_chi2_ratio(products["HH"] / (2 * products["XX"]), 96)


def test_transposed_matmul_has_the_chi_square_law(products):
    # (A^T z)_b = sum_a A_ab z_a: iid N(0, (2/n) sum_a z_a^2) = N(0, 2 (m/n) mean(z^2)) over n = 64.
    _check_chi2_ratio(products["KK"] / (2 * 1.5 * products["ZZ"]), 64)


def test_transpose_uses_the_same_matrix(products):
    # z^T (A x) = (A^T z)^T x exactly: m mean(z h) = n mean(x k) in every run.
    np.testing.assert_allclose(96 * products["ZH"], 64 * products["XK"], rtol=1e-10, atol=1e-12)


def test_initial_vector_mean_and_variance(products):
    # x ~ N(0.5, 1.5) coordinatewise: E mean(x^2) = 1.75, Var mean(x^2) = (2 s^4 + 4 mu^2 s^2) / n.
    se = math.sqrt((2 * 1.5 ** 2 + 4 * 0.25 * 1.5) / 64 / products.seeds)
    assert abs(products.mean["XX"] - 1.75) < 4 * se


# ---------------------------------------------------------------------- initial Gaussian blocks

BLOCKS = """
data X = [[1, 0], [0.6, 0.8], [-1, 0.5]]
vector x[i], y[i] ~ N([1, -0.5], [[dot(X[i], X[i']), 0.5 * dot(X[i], X[i'])], \\
                                   [0.5 * dot(X[i], X[i']), 2 * dot(X[i], X[i'])]])
vector a, b ~ N(0, [[1, 2], [2, 4]])
out XY[i, j] = mean(x[i] * y[j])
out YY[i, j] = mean(y[i] * y[j])
out MY[i] = mean(y[i])
out AA = mean(a * a)
out AB = mean(a * b)
out BB = mean(b * b)
"""


def test_block_moments_match_the_declared_covariance_and_means():
    sim = simulate(parse(BLOCKS), 64, seeds=300, seed=1)
    X = np.array([[1, 0], [0.6, 0.8], [-1, 0.5]])
    G = X @ X.T
    truth = {"XY": 0.5 * G + 1 * -0.5, "YY": 2 * G + 0.25, "MY": np.full(3, -0.5)}
    for name, t in truth.items():
        z = (sim.mean[name] - t) / sim.stderr[name]
        assert np.max(np.abs(z)) < 4.5, (name, z)


def test_singular_block_covariance_is_sampled_exactly():
    # Cov [[1, 2], [2, 4]] has rank 1: b = 2 a coordinate by coordinate.
    sim = simulate(parse(BLOCKS), 64, seeds=5)
    np.testing.assert_allclose(sim["AB"], 2 * sim["AA"], rtol=1e-12)
    np.testing.assert_allclose(sim["BB"], 4 * sim["AA"], rtol=1e-12)


# ---------------------------------------------------------------------- every value, recomputed

FAMILIES = """
width m = 2*n
data X = [[1, 0], [0.5, 1], [0, 2]]
matrix W ~ N(0, 1.5/n)
matrix B : (m, n) ~ N(0, 1/n)
vector g[i] ~ N(0.2, dot(X[i], X[i']))
vector v : m ~ N(0, 1)
h[i] = W @ tanh(g[i])
r[i] = B.T @ (v * (B @ h[i]))
K[i, j] = mean(h[i] * r[j])
y[i] = sin(K[i, i] * g[i] + K[0, 2] * r[i])
out P[i, j] = mean(y[j] * h[i]^2)
out F = mean(h[0] * r[2])
out D[j, i] = K[i, i] * K[j, 1] + 1
for t in 0..1: out Q[t][k] = mean(g[k]^(t + 1))
"""


def test_trace_agrees_with_plain_numpy_loops():
    n, prog = 16, parse(FAMILIES)
    tr = trace(prog, n, seed=7)
    W, B, g, v = tr["W"], tr["B"], tr["g"], tr["v"]
    assert W.shape == (n, n) and B.shape == (2 * n, n) and g.shape == (3, n) and v.shape == (2 * n,)
    h = np.array([[sum(W[a, b] * np.tanh(g[i, b]) for b in range(n)) for a in range(n)] for i in range(3)])
    r = np.array([[sum(B[a, b] * v[a] * (B[a] @ h[i]) for a in range(2 * n)) for b in range(n)]
                  for i in range(3)])
    K = np.array([[np.mean(h[i] * r[j]) for j in range(3)] for i in range(3)])
    y = np.array([np.sin(K[i, i] * g[i] + K[0, 2] * r[i]) for i in range(3)])
    for name, want in [("h", h), ("r", r), ("K", K), ("y", y)]:
        np.testing.assert_allclose(tr[name], want, rtol=1e-11, atol=1e-12, err_msg=name)
    out = Simulator(prog).run(n, seed=7)
    np.testing.assert_allclose(out["P"], [[np.mean(y[j] * h[i] ** 2) for j in range(3)] for i in range(3)],
                               rtol=1e-12)
    assert out["F"] == pytest.approx(np.mean(h[0] * r[2]), rel=1e-12)
    np.testing.assert_allclose(out["D"], [[K[i, i] * K[j, 1] + 1 for i in range(3)] for j in range(3)], rtol=1e-12)
    np.testing.assert_allclose(out["Q"], [[np.mean(g[k] ** (t + 1)) for k in range(3)] for t in range(2)],
                               rtol=1e-12)


def test_width_dependent_scalars_are_evaluated_at_n():
    n = 40
    tr = trace(parse("vector x ~ N(0, 1)\ns = mean(x * x)\nout S = s * (1 + 1/n)\n"
                     "y = x * (1 - 2/n)\nout M = mean(y)\n"), n, seed=4)
    x = tr["x"]
    assert tr["S"] == pytest.approx(np.mean(x * x) * (1 + 1 / n), rel=1e-13)
    assert tr["M"] == pytest.approx(np.mean(x) * (1 - 2 / n), rel=1e-12)


def test_matrix_entries_have_the_declared_variance():
    # 2n^2 = 20000 entries of B ~ N(0, 1/n): n * mean(B^2) ~ chi^2_20000 / 20000.
    n = 100
    B = trace(parse(FAMILIES), n, seed=2)["B"]
    assert abs(n * np.mean(B ** 2) - 1) < 4 * math.sqrt(2 / B.size)
    assert abs(np.mean(B)) < 4 / math.sqrt(n * B.size)


# ---------------------------------------------------------------------- reproducibility

def test_same_seed_same_arrays_and_runs_keyed_by_seed_index():
    prog = parse(FAMILIES)
    a = simulate(prog, 32, seeds=3, seed=11)
    b = simulate(prog, 32, seeds=3, seed=11)
    c = simulate(prog, 32, seeds=2, seed=12)
    d = simulate(prog, 32, seeds=2, seed=11)
    for name in a.names:
        assert np.array_equal(a[name], b[name])
        assert np.array_equal(a[name][:2], d[name])      # run s depends only on (seed, width, s)
        assert not np.any(a[name][:2] == c[name])
        assert not np.any(a[name][0] == a[name][1])


def test_mean_and_stderr_are_over_seeds():
    sim = simulate(parse(BLOCKS), 32, seeds=6)
    s = sim["XY"]
    assert sim.seeds == 6 and s.shape == (6, 3, 3)
    np.testing.assert_allclose(sim.mean["XY"], s.sum(axis=0) / 6, rtol=1e-14)
    np.testing.assert_allclose(sim.stderr["XY"], np.sqrt(((s - s.mean(0)) ** 2).sum(0) / 5 / 6), rtol=1e-12)


# ---------------------------------------------------------------------- memory and errors

def test_memory_estimate_counts_matrices_and_live_vectors():
    n = 1000
    prog = parse("matrix W ~ N(0, 1/n)\nvector x ~ N(0, 1)\nh = W @ x\nout S = mean(h * h)\n")
    est = estimate_memory(prog, n)
    matrix, vec = 8 * n * n, 8 * n
    assert matrix + 2 * vec <= est <= matrix + 10 * vec


def test_refuses_when_the_estimate_exceeds_the_memory_limit():
    prog = parse(PRODUCTS)
    with pytest.raises(TPError, match=r"needs about .* but only .* is available"):
        simulate(prog, 64, seeds=1, memory_limit=1000)


def test_dirac_delta_is_a_clear_error():
    with pytest.raises(TPError, match="Dirac delta"):
        simulate(parse("vector x ~ N(0, 1)\nout D = mean(step'(x))\n"), 16, seeds=1)


def test_non_integer_width_is_a_clear_error():
    with pytest.raises(TPError, match=r"3/2 \* 5 = 15/2 coordinates, not an integer"):
        simulate(parse(PRODUCTS), 5, seeds=1)


# ---------------------------------------------------------------------- convergence statistics

SQUARE = "vector x ~ N(0, 2)\nout S = mean(x * x)\n"


@pytest.fixture(scope="module")
def square_sweep():
    return convergence(parse(SQUARE), [64, 256, 1024, 4096], seeds=200, limit={"S": 2.0})


def test_rms_deviation_matches_the_exact_finite_width_value(square_sweep):
    # mean(x^2) - 2 has variance 2 * 2^2 / n, so the RMS deviation is exactly sqrt(8 / n).
    for p in square_sweep.points["S"]:
        assert abs(p.rms - math.sqrt(8 / p.width)) < 4 * p.rms_error
        assert p.rms_error < 0.2 * p.rms


def test_fitted_exponent_is_minus_one_half(square_sweep):
    b, eb = square_sweep.exponents["S"]
    assert abs(b + 0.5) < 4 * eb and eb < 0.05


def test_z_is_the_deviation_of_the_mean_in_standard_errors(square_sweep):
    for sim, p in zip(square_sweep.simulations, square_sweep.points["S"]):
        s = sim["S"]
        assert p.z == pytest.approx((s.mean() - 2.0) / (s.std(ddof=1) / math.sqrt(s.size)), rel=1e-12)


def test_limit_error_enters_the_z_statistic():
    class Item:
        def __init__(self, value, error):
            self.value, self.error = value, error

    prog = parse(SQUARE)
    conv = convergence(prog, [128], seeds=10, limit={"S": Item(2.5, 0.3)})
    p, s = conv.points["S"][0], conv.simulations[0]["S"]
    se = s.std(ddof=1) / math.sqrt(10)
    assert p.z == pytest.approx((s.mean() - 2.5) / math.sqrt(se ** 2 + 0.09), rel=1e-12)


def test_fit_exponent_recovers_a_power_law():
    w = np.array([100.0, 400.0, 1600.0, 6400.0])
    b, eb = fit_exponent(w, 3.0 * w ** -0.7, 0.01 * 3.0 * w ** -0.7)
    assert b == pytest.approx(-0.7, abs=1e-12)
    # Four points of relative error 1% on a log-width span of ln 64: formal se = 0.01 / sqrt(sum (x - xbar)^2).
    x = np.log(w)
    assert eb == pytest.approx(0.01 / math.sqrt(np.sum((x - x.mean()) ** 2)), rel=1e-9)


def test_missing_limit_output_is_a_clear_error():
    with pytest.raises(TPError, match="no value for output 'S'"):
        convergence(parse(SQUARE), [16], seeds=2, limit={"T": 1.0})


def test_progress_bar_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress(4, stream=stream, delay=0.0)
        bar.advance(2, "width 64 seed 1/2")
        bar.close()
    assert "50.0%" in tty.getvalue() and tty.getvalue().endswith("\n")
    assert pipe.getvalue() == ""


# ---------------------------------------------------------------------- tpc simulate

def test_cli_simulate_json_and_plot(tmp_path, monkeypatch, capsys):
    from tensorprog.cli import main

    class Item:
        def __init__(self, value):
            self.value, self.error = np.asarray(value), np.zeros(np.shape(value))

    # The limit of mean(x * x) for x ~ N(0, s2) is s2 (a closed form, stands in for evaluate).
    monkeypatch.setattr(tensorprog, "evaluate", lambda prog, **kw: {"S": Item(float(prog.consts["s2"]))},
                        raising=False)
    path = tmp_path / "sq.tp"
    path.write_text("const s2 = 2\nvector x ~ N(0, s2)\nout S = mean(x * x)\n")
    png = tmp_path / "conv.png"
    code = main(["simulate", str(path), "--widths", "64,256", "--seeds", "8", "-D", "s2=3", "--json",
                 "--plot", str(png)])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    out = data["outputs"]["S"]
    assert data["widths"] == [64, 256] and data["seeds"] == 8
    assert out["limit"] == 3.0
    assert [p["width"] for p in out["widths"]] == [64, 256]
    assert all(abs(p["mean"] - 3.0) < 5 * p["stderr"] for p in out["widths"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["simulate", str(path), "--widths", "64,256", "--seeds", "8"]) == 0
    text = capsys.readouterr().out
    assert "output S (scalar)" in text and "RMS deviation ~ width^(" in text


def test_the_package_is_callable_as_simulate():
    import tensorprog.simulate as package

    a = package(parse(SQUARE), 16, seeds=2, seed=9)
    b = simulate(parse(SQUARE), 16, seeds=2, seed=9)
    assert np.array_equal(a["S"], b["S"])
