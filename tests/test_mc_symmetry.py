"""Monte Carlo families over pairs are exactly symmetric (issue 10 item 6).

E[f(g_i) f(g_j)] is symmetric in (i, j); the Monte Carlo estimate used to be asymmetric by a few
standard errors because the Gaussian of (j, i) is that of (i, j) with its two variables swapped, so
the same normals xi entered the integrand in the other roles.  Interchangeable variables are now
put in a canonical order per grid point, so (i, j) and (j, i) are the same integral bit for bit.
Truths: the nested Gauss-Legendre integral of tests/gaussian_truths.py (shares no code with the
package) and the arcsine kernel of erf."""
import os
import subprocess
import sys

import numpy as np
import pytest
import sympy

import tensorprog
from tensorprog.numeric import integrals as I

from gaussian_truths import erf_erf, integrate2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ROWS = [[1, 0, 0], [0.6, 0.8, 0], [2, 0, 0], [-1, 0.5, 0], [0.3, -1.2, 0.4], [0, 0.2, 1.5],
        [0.7, 0.7, 0.7], [-0.4, 0.1, -2]]


def _program(rows, phi="tanh"):
    data = ", ".join("[" + ", ".join(map(str, r)) + "]" for r in rows)
    return (f"data X = [{data}]\n"
            "vector g[i] ~ N(0, dot(X[i], X[i'])/dim(X) + 0.1)\n"
            f"out K[i, j] = mean({phi}(g[i]) * {phi}(g[j]))\n")


def _kernel_inputs(rows):
    X = np.array(rows, dtype=float)
    return X @ X.T / X.shape[1] + 0.1


@pytest.mark.parametrize("rows,samples", [(ROWS[:5], 1 << 18), (ROWS, 1 << 20)],
                         ids=["numpy-path", "numba-kernel-path"])
def test_pair_family_is_exactly_symmetric_and_right(rows, samples):
    # 5 points x 2^18 samples run in numpy; 64 grid points x 2^20 samples exceed MC_NUMPY_MAX_WORK
    # and run in the generated numba kernel.
    assert (len(rows) ** 2 * samples > I.MC_NUMPY_MAX_WORK) == (len(rows) == len(ROWS))
    K = tensorprog.evaluate(_program(rows), method="mc", samples=samples, seed=3)["K"]
    assert K.method == "Monte Carlo"
    val, err = np.asarray(K.value), np.asarray(K.error)
    np.testing.assert_array_equal(val, val.T)
    np.testing.assert_array_equal(err, err.T)
    S = _kernel_inputs(rows)
    truth = np.array([[integrate2(np.tanh, np.tanh, S[i, i], S[j, j], S[i, j]) for j in range(len(rows))]
                      for i in range(len(rows))])
    assert np.all(err > 0)
    assert np.all(np.abs(val - truth) <= 4 * err), np.max(np.abs(val - truth) / err)


_THREADS_CHILD = """\
import numba, numpy as np, tensorprog
K = tensorprog.evaluate({src!r}, method="mc", samples={n}, seed=7)["K"]
print(numba.get_num_threads(), " ".join(float(x).hex() for x in np.concatenate(
    [np.ravel(K.value), np.ravel(K.error)])))
"""


def test_same_bits_for_one_and_two_threads():
    outputs = []
    for threads in (1, 2):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        done = subprocess.run([sys.executable, "-c", _THREADS_CHILD.format(src=_program(ROWS), n=1 << 20)],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.split())
    assert [out[0] for out in outputs] == ["1", "2"]
    assert len(outputs[0]) == 1 + 2 * len(ROWS) ** 2
    assert outputs[0][1:] == outputs[1][1:]


def test_interchangeable_classes():
    u = sympy.symbols("u0:4")
    t = sympy.tanh
    assert I.interchangeable_classes(t(u[0]) * t(u[1]), u[:2]) == [[0, 1]]
    assert I.interchangeable_classes(t(u[0]) * u[1], u[:2]) == []
    assert I.interchangeable_classes(t(u[0]) * t(u[1]) * t(u[2]) * u[3] ** 2, u) == [[0, 1, 2]]
    assert I.interchangeable_classes(t(u[0]) * t(u[2]) + u[1] * u[3], u) == [[0, 2], [1, 3]]


def _random_gaussians(G, d, rng):
    A = rng.standard_normal((G, d, d))
    return rng.standard_normal((G, d)), A @ np.transpose(A, (0, 2, 1))


@pytest.mark.parametrize("classes,d", [([[0, 1, 2]], 4), ([[0, 1, 2, 3, 4, 5]], 6), ([[0, 2], [1, 3]], 4)],
                         ids=["exhaustive", "sorted-by-moments", "two-classes"])
def test_canonical_order_identifies_permuted_gaussians(classes, d):
    """Every Gaussian and its images under permutations within the classes map to one (mean, cov);
    the result is the input's own law permuted within the classes."""
    rng = np.random.default_rng(1)
    mean, cov = _random_gaussians(5, d, rng)
    base_m, base_c = I.canonical_order(mean, cov, classes)
    for _ in range(6):
        perm = np.arange(d)
        for cls in classes:
            perm[cls] = rng.permutation(cls)
        m, c = I.canonical_order(mean[:, perm], cov[:, perm][:, :, perm], classes)
        np.testing.assert_array_equal(m, base_m)
        np.testing.assert_array_equal(c, base_c)
    for g in range(5):
        # base is a permutation within the classes of the input: find it from the means
        order = [int(np.flatnonzero(mean[g] == x)[0]) for x in base_m[g]]
        assert all(set(order[k] for k in cls) == set(cls) for cls in classes)
        np.testing.assert_array_equal(base_c[g], cov[g][np.ix_(order, order)])


def test_erf_pair_mc_matches_arcsine_kernel():
    """An erf pair forced to Monte Carlo through numeric.integrals (the limit pass would use the
    closed form): symmetric bits and the arcsine kernel within 4 standard errors."""
    u = sympy.symbols("u0:2")
    integral = type("Integral", (), {"integrand": sympy.erf(u[0]) * sympy.erf(u[1]), "variables": u,
                                     "dim": 2})()
    S = _kernel_inputs(ROWS[:4])
    idx = [(i, j) for i in range(4) for j in range(4)]
    cov = np.array([[[S[i, i], S[i, j]], [S[j, i], S[j, j]]] for i, j in idx])
    val, err = I.integrate(integral, np.zeros((16, 2)), cov, np.zeros((16, 0)), "mc",
                           {"samples": 1 << 18, "seed": 5})
    val, err = val.reshape(4, 4), err.reshape(4, 4)
    np.testing.assert_array_equal(val, val.T)
    truth = erf_erf(np.diag(S)[:, None], np.diag(S)[None, :], S)
    assert np.all(np.abs(val - truth) <= 4 * err)
