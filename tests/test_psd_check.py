"""The covariance PSD check of large data families: a low-rank certificate, no dense factorisation.

Truths: the eigenvalues of the test matrices are computed independently by numpy.linalg.eigvalsh
*before* the factorisations are disabled; the Gram-matrix covariance is PSD by construction.
"""

import numpy as np
import pytest

from tensorprog.ir import checker
from tensorprog.ir.psd import low_rank_min_eigenvalue_bounds


def _gram(n, d=16, seed=0):
    X = np.random.default_rng(seed).standard_normal((n, d))
    return 2.0 * X @ X.T / d + 0.05, X


def _no_dense(monkeypatch):
    """Make any N x N factorisation fail loudly (the small r x r eigvalsh stays allowed)."""
    eigvalsh = np.linalg.eigvalsh

    def small_only(a, *args, **kw):
        assert a.shape[0] <= 256, f"dense eigvalsh of a {a.shape} matrix"
        return eigvalsh(a, *args, **kw)

    def no_cholesky(a, *args, **kw):
        raise AssertionError(f"dense cholesky of a {a.shape} matrix")

    monkeypatch.setattr(np.linalg, "eigvalsh", small_only)
    monkeypatch.setattr(np.linalg, "cholesky", no_cholesky)


def test_gram_covariance_certified_without_factorisation(monkeypatch):
    C, _ = _gram(700)
    lam_true = float(np.linalg.eigvalsh(C)[0])  # ~0 (rank 17): the truth, before disabling
    _no_dense(monkeypatch)
    lam = checker._min_eigenvalue(C)
    scale = float(np.max(np.diag(C)))
    assert -1e-8 * scale <= lam <= 0.0
    assert abs(lam - lam_true) < 1e-8 * scale


def test_negative_eigenvalue_detected_without_factorisation(monkeypatch):
    C, X = _gram(700)
    v = X[:, 0] / np.linalg.norm(X[:, 0])
    C = C - (v @ C @ v + 1.0) * np.outer(v, v)  # then v^T C v = -1, so lambda_min <= -1
    lam_true = float(np.linalg.eigvalsh(C)[0])
    assert lam_true <= -1.0
    _no_dense(monkeypatch)
    lam = checker._min_eigenvalue(C)
    # interlacing: the compression's smallest eigenvalue lies in [lambda_min, 0) and here equals it
    assert lam < -1e-8 * float(np.max(np.diag(C)))
    assert lam == pytest.approx(lam_true, rel=1e-8)


def test_bounds_bracket_the_true_eigenvalue():
    C, _ = _gram(640, d=8, seed=3)
    C = C + 1e-3 * np.eye(640)  # PSD but full rank: no low-rank certificate (caller goes dense)
    assert low_rank_min_eigenvalue_bounds(C, 1e-9) is None
    C2, _ = _gram(640, d=8, seed=3)
    lo, hi = low_rank_min_eigenvalue_bounds(C2, 1e-9 * float(np.max(np.diag(C2))))
    lam = float(np.linalg.eigvalsh(C2)[0])
    assert lo - 1e-12 <= lam <= hi + 1e-12


def test_data_family_parse_skips_dense_check(monkeypatch, tmp_path):
    """A 1200-point data family with a Gram covariance parses with the factorisations disabled."""
    import tensorprog

    _, X = _gram(1200, d=16, seed=5)
    np.save(tmp_path / "X.npy", X)
    src = ('data X = load("X.npy")\n'
           "vector g[i] ~ N(0, 2 * dot(X[i], X[i']) / dim(X) + 0.05)\n"
           "out K[i, j] = mean(relu(g[i]) * relu(g[j]))\n")
    (tmp_path / "p.tp").write_text(src)
    monkeypatch.chdir(tmp_path)
    _no_dense(monkeypatch)
    tensorprog.parse("p.tp")


def test_data_family_non_psd_covariance_still_refused(tmp_path, monkeypatch):
    """<x_i, x_i'>/4 - x_i0 x_i'0 / 2 at N = 700, d = 4: positive variances, not PSD -> the clear error."""
    import tensorprog
    from tensorprog.errors import TPError

    rng = np.random.default_rng(6)
    X = np.column_stack([np.clip(rng.standard_normal(700), -2, 2), 3 + 0.1 * rng.standard_normal(700),
                         rng.standard_normal((700, 2))])
    C = X @ X.T / 4 - 0.5 * np.outer(X[:, 0], X[:, 0])
    assert np.min(np.diag(C)) > 0 and np.linalg.eigvalsh(C)[0] < -1.0  # the truth, independently
    np.save(tmp_path / "X.npy", X)
    src = ('data X = load("X.npy")\n'
           "vector g[i] ~ N(0, dot(X[i], X[i']) / dim(X) - 0.5 * X[i][0] * X[i'][0])\n"
           "out s = mean(g[0])\n")
    (tmp_path / "p.tp").write_text(src)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TPError, match="not positive semi-definite"):
        tensorprog.parse("p.tp")


def test_gram_formula_certified_by_construction(monkeypatch, tmp_path):
    """A data family's covariance written as c1 * dot(X[i], X[i']) / d + c0 (c1, c0 >= 0) is PSD by
    construction (a Gram matrix, non-negatively scaled, plus a non-negative constant): the checker
    does no numeric PSD test of it; a formula that is not of that form (a constant subtracted:
    positive variances, negative eigenvalues) is still tested numerically and refused."""
    import tensorprog

    _, X = _gram(1000, d=8, seed=7)
    np.save(tmp_path / "X.npy", X)
    monkeypatch.chdir(tmp_path)
    C_bad = 2 * X @ X.T / 8 - 0.05      # the second program's covariance: rank 8 minus a constant
    assert float(np.min(np.diag(C_bad))) > 0 and float(np.linalg.eigvalsh(C_bad)[0]) < -1.0
    calls = []
    real = checker._min_eigenvalue
    monkeypatch.setattr(checker, "_min_eigenvalue", lambda C: calls.append(C.shape) or real(C))
    ok = ('data X = load("X.npy")\n'
          "vector g[i] ~ N(0, 2 * dot(X[i], X[i']) / dim(X) + 0.05)\n"
          "out K[i, j] = mean(relu(g[i]) * relu(g[j]))\n")
    tensorprog.parse(ok, name="ok.tp")
    assert (1000, 1000) not in calls
    bad = ok.replace("+ 0.05", "- 0.05")
    with pytest.raises(tensorprog.TPError, match="not positive semi-definite"):
        tensorprog.parse(bad, name="bad.tp")
    assert (1000, 1000) in calls


def test_psd_by_construction_rules():
    """The formula rules on hand-written keys (tags numbered by first appearance)."""
    from tensorprog.ir.psd import psd_by_construction as ok

    X, Y = ("id", 1, (8, 8), (10, 8), "<f8"), ("id", 2, (8, 8), (10, 8), "<f8")

    def num(v):
        return "v", "<f8", (), np.float64(v).tobytes()
    gram = ("dot", X, (0,), X, (1,))
    assert ok(gram)
    assert not ok(("dot", X, (0,), Y, (1,)))                       # two point sets: not symmetric
    assert not ok(("dot", X, (0,), X, (0,)))                       # a vector of norms, not a matrix
    assert ok(("*", num(2.0), (), gram, (0, 1))) and ok(("/", gram, (0, 1), num(3.0), ()))
    assert not ok(("*", num(-2.0), (), gram, (0, 1))) and not ok(("/", gram, (0, 1), num(0.0), ()))
    assert ok(("+", gram, (0, 1), num(0.1), ())) and not ok(("+", gram, (0, 1), num(-0.1), ()))
    assert ok(("*", gram, (0, 1), gram, (0, 1))) and ok(("+", gram, (0, 1), gram, (0, 1)))
    assert not ok(("-", gram, (0, 1), num(0.0), ()))
