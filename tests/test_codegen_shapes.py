"""Generated code for every plan shape (issue 18): families of random sizes around each chunking
threshold -- the fusion threshold FUSE_MIN_POINTS (2-d and 3-d grids), the tile length TILE of the
last axis and the CHUNKS of the outer axes -- including groups whose every moment is zero by
symmetry (an empty generated loop body was an IndentationError).  Values against closed forms
written here: for centred Gaussians with covariance S,
  E[sin a sin b] = exp(-(S_aa + S_bb)/2) sinh(S_ab),  E[cos a cos b] = exp(-(S_aa + S_bb)/2) cosh(S_ab),
  E[cos a cos b cos c] = 1/4 sum_{s, t = +-1} exp(-Var(a + s b + t c)/2),
  E[sin a cos b] = E[tanh a tanh b tanh c] = 0 (odd integrands).
"""
import numpy as np
import pytest

import tensorprog
from tensorprog.numeric.fused import FUSE_MIN_POINTS
from tensorprog.numeric.rowpool import CHUNKS
from tensorprog.numeric.tiled import TILE

RNG = np.random.default_rng(18)


def _sizes(center, spread, count):
    return sorted({int(center + d) for d in RNG.integers(-spread, spread + 1, size=count)} | {int(center)})


def _family(tmp_path, n, name="X"):
    X = np.random.default_rng(n).standard_normal((n, 3))
    path = tmp_path / f"{name}{n}.npy"
    np.save(path, X)
    return X, X @ X.T / 3 + 0.1, path.as_posix()


ROOT2 = int(np.ceil(np.sqrt(FUSE_MIN_POINTS)))
ROOT3 = int(np.ceil(FUSE_MIN_POINTS ** (1 / 3)))


@pytest.mark.parametrize("n", _sizes(ROOT2, 3, 3) + [215, 300])
def test_pairs_around_fusion_threshold(tmp_path, n):
    X, S, path = _family(tmp_path, n)
    res = tensorprog.evaluate(f"""data X = load("{path}")
vector g[i] ~ N(0, dot(X[i], X[i'])/dim(X) + 0.1)
out Z[i, j] = mean(sin(g[i]) * cos(g[j]))
out SS[i, j] = mean(sin(g[i]) * sin(g[j]))
out CC[i, j] = mean(cos(g[i]) * cos(g[j]))
""")
    # alone, the zero moment makes a generated group with nothing to compute
    alone = tensorprog.evaluate(f"""data X = load("{path}")
vector g[i] ~ N(0, dot(X[i], X[i'])/dim(X) + 0.1)
out Z[i, j] = mean(sin(g[i]) * cos(g[j]))
""")
    np.testing.assert_array_equal(alone["Z"].value, 0.0)
    d = np.diag(S)
    damp = np.exp(-(d[:, None] + d[None, :]) / 2)
    np.testing.assert_array_equal(res["Z"].value, 0.0)
    np.testing.assert_allclose(res["SS"].value, damp * np.sinh(S), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res["CC"].value, damp * np.cosh(S), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n", _sizes(ROOT3, 2, 2) + [41])
def test_triples_around_fusion_threshold(tmp_path, n):
    X, S, path = _family(tmp_path, n)
    res = tensorprog.evaluate(f"""data X = load("{path}")
vector g[i] ~ N(0, dot(X[i], X[i'])/dim(X) + 0.1)
out T[i, j, k] = mean(tanh(g[i]) * tanh(g[j]) * tanh(g[k]))
out C[i, j, k] = mean(cos(g[i]) * cos(g[j]) * cos(g[k]))
""")
    np.testing.assert_array_equal(res["T"].value, 0.0)
    alone = tensorprog.evaluate(f"""data X = load("{path}")
vector g[i] ~ N(0, dot(X[i], X[i'])/dim(X) + 0.1)
out T[i, j, k] = mean(tanh(g[i]) * tanh(g[j]) * tanh(g[k]))
""")
    np.testing.assert_array_equal(alone["T"].value, 0.0)
    d = np.diag(S)
    truth = 0.0
    for s in (1, -1):
        for t in (1, -1):
            var = (d[:, None, None] + d[None, :, None] + d[None, None, :] + 2 * s * S[:, :, None]
                   + 2 * t * S[:, None, :] + 2 * s * t * S[None, :, :])
            truth = truth + np.exp(-var / 2) / 4
    np.testing.assert_allclose(res["C"].value, truth, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n", _sizes(TILE, 2, 2) + [2 * TILE + 1])
def test_rectangular_grids_around_tile_and_chunks(tmp_path, n):
    """Two families: rows around CHUNKS (the parallel runs), columns around TILE (the tile loop)."""
    rows = int(CHUNKS + RNG.integers(-1, 2))
    X, SX, px = _family(tmp_path, rows, "X")
    Y, SY, py = _family(tmp_path, n, "Y")
    res = tensorprog.evaluate(f"""data X = load("{px}")
data Y = load("{py}")
vector g[i] ~ N(0, dot(X[i], X[i'])/dim(X) + 0.1)
vector h[j] ~ N(0, dot(Y[j], Y[j'])/dim(Y) + 0.1)
out Z[i, j] = mean(sin(g[i]) * cos(h[j]))
out CC[i, j] = mean(cos(g[i]) * cos(h[j]))
""")
    alone = tensorprog.evaluate(f"""data X = load("{px}")
data Y = load("{py}")
vector g[i] ~ N(0, dot(X[i], X[i'])/dim(X) + 0.1)
vector h[j] ~ N(0, dot(Y[j], Y[j'])/dim(Y) + 0.1)
out Z[i, j] = mean(sin(g[i]) * cos(h[j]))
""")
    np.testing.assert_array_equal(alone["Z"].value, 0.0)
    # g and h are independent (no covariance between families): E[cos g] E[cos h]
    np.testing.assert_array_equal(res["Z"].value, 0.0)
    truth = np.exp(-np.diag(SX))[:, None] ** 0.5 * np.exp(-np.diag(SY))[None, :] ** 0.5
    np.testing.assert_allclose(res["CC"].value, truth, rtol=1e-12, atol=1e-14)
