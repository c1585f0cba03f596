"""Tests for tensorprog.numeric.montecarlo against closed forms, the Random123 reference vectors,
simple statistical checks of the random stream, and exact reproducibility."""
import itertools
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from tensorprog.numeric import montecarlo as mc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One kernel (d = 2, two parameters) serves most tests, so the suite compiles few kernels.
# p1 is set to the mean of z0, so the relu term sees the centred pair.
PAIR_EXPRS = ["z0 * z1", "max(z0 - p1, 0.0) * max(z1, 0.0)", "math.exp(p0 * z0)"]


def pair_truth(a, b, c, mu0, p0):
    """Closed forms for (u, v) ~ N((mu0, 0), [[a, c], [c, b]]): E[u v] = c + mu0 * 0;
    E[relu(u - mu0) relu v] = sqrt(ab)/(2 pi) (sin t + (pi - t) cos t), t = arccos(c / sqrt(ab))
    (docs/theory.md, "Moment: closed forms"; zero when a or b is 0); E exp(p u) = exp(p mu0 + p^2 a / 2)."""
    scale = math.sqrt(a * b)
    t = math.acos(min(1.0, max(-1.0, c / scale))) if scale > 0 else 0.0
    relu = scale / (2 * math.pi) * (math.sin(t) + (math.pi - t) * math.cos(t))
    return np.array([c, relu, math.exp(p0 * mu0 + 0.5 * p0 ** 2 * a)])


# (a, b, c, mu0, p0); the third and fourth covariances are singular (identical inputs, and a
# perfectly anti-correlated pair), the last has a zero-variance coordinate.
PAIR_CASES = [(1.0, 2.0, 0.7, 0.3, 0.8), (0.5, 0.5, -0.1, -1.0, 1.5), (1.3, 1.3, 1.3, 0.0, -0.7),
              (2.0, 0.5, -1.0, 0.5, 0.4), (0.0, 1.0, 0.0, 0.2, 1.0)]


def pair_inputs(cases):
    Sigma = np.array([[[a, c], [c, b]] for a, b, c, _, _ in cases])
    mu = np.array([[m, 0.0] for _, _, _, m, _ in cases])
    params = np.array([[p, m] for _, _, _, m, p in cases])
    return mc.cholesky_psd(Sigma), mu, params


def test_philox_matches_random123_known_answers():
    # Known-answer vectors from Random123's kat_vectors file for philox4x32 with 10 rounds:
    # (counter words, key words) -> output words.
    m = 0xFFFFFFFF
    kat = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
           ((m, m, m, m), (m, m), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
           ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for counter, key, expected in kat:
        assert tuple(int(w) for w in mc.philox4x32_10(*counter, *key)) == expected


def test_random_words_are_keyed_by_seed_and_index():
    seed = 0x0123456789ABCDEF
    words = mc.random_words(seed, 5, first=(1 << 32) - 2, group=3)
    for b in range(5):
        i = (1 << 32) - 2 + b
        ref = mc.philox4x32_10(i & 0xFFFFFFFF, i >> 32, 3, 0, seed & 0xFFFFFFFF, seed >> 32)
        assert tuple(words[b]) == tuple(int(w) for w in ref)


def test_random_words_look_uniform_and_independent():
    n = 1 << 16
    u = (mc.random_words(7, n).astype(np.float64) + 0.5) / 2.0 ** 32
    for c in range(4):
        counts = np.bincount((u[:, c] * 64).astype(int), minlength=64)
        assert stats.chisquare(counts).pvalue > 1e-4
    bits = (mc.random_words(8, n)[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 5 * 0.5 / math.sqrt(n))
    # Correlations between the four words of a call, and between consecutive counters.
    x = u - 0.5
    corr = np.corrcoef(np.hstack([x[1:], x[:-1]]).T)
    off_diagonal = corr[~np.eye(8, dtype=bool)]
    assert np.all(np.abs(off_diagonal) < 5 / math.sqrt(n))


def test_normals_follow_documented_box_muller_mapping():
    n, d, seed = 1000, 7, 99
    xi = mc.standard_normals(seed, n, d)
    expected = np.empty((n, 8))
    for q in range(2):
        u = (mc.random_words(seed, n, group=q).astype(np.float64) + 0.5) * 2.0 ** -32
        for pair in range(2):
            r = np.sqrt(-2.0 * np.log(u[:, 2 * pair]))
            angle = 2.0 * np.pi * u[:, 2 * pair + 1]
            expected[:, 4 * q + 2 * pair] = r * np.cos(angle)
            expected[:, 4 * q + 2 * pair + 1] = r * np.sin(angle)
    np.testing.assert_allclose(xi, expected[:, :d], rtol=1e-13, atol=1e-13)
    # Counter-based: a sample's normals depend only on (seed, index, dimension).
    np.testing.assert_array_equal(mc.standard_normals(seed, 10, 3, first=500), xi[500:510, :3])


def test_normals_moments_and_correlations():
    n, d = 1 << 17, 6
    xi = mc.standard_normals(2024, n, d)
    other = mc.standard_normals(2025, n, d)
    se = 1.0 / math.sqrt(n)
    # Standard errors of the sample mean, variance, third and fourth moments of N(0, 1):
    # sqrt(1/n), sqrt(2/n), sqrt(15/n), sqrt(96/n).
    assert np.all(np.abs(xi.mean(0)) < 5 * se)
    assert np.all(np.abs((xi ** 2).mean(0) - 1) < 5 * math.sqrt(2) * se)
    assert np.all(np.abs((xi ** 3).mean(0)) < 5 * math.sqrt(15) * se)
    assert np.all(np.abs((xi ** 4).mean(0) - 3) < 5 * math.sqrt(96) * se)
    for j in range(d):
        assert stats.kstest(xi[:, j], "norm").pvalue > 1e-4
    # Across dimensions, across consecutive samples (lag 1 and 2), and across adjacent seeds.
    blocks = np.hstack([xi[2:], xi[1:-1], xi[:-2], other[2:]])
    corr = np.corrcoef(blocks.T)
    assert np.all(np.abs(corr[~np.eye(4 * d, dtype=bool)]) < 5 * se)


def test_pair_closed_forms():
    L, mu, params = pair_inputs(PAIR_CASES)
    mean, se = mc.mc_expectation(PAIR_EXPRS, L, mu, params, n_samples=400_000, seed=11)
    truth = np.array([pair_truth(*case) for case in PAIR_CASES])
    assert np.all(np.isfinite(mean)) and np.all(se >= 0)
    assert np.all(np.abs(mean - truth) <= 4 * se + 1e-14)
    # Variance zero in a coordinate: z0 == mu0 exactly, so exp(p0 z0) is a constant (its se is
    # rounding noise only) and relu(z0 - mu0) is exactly zero.
    assert se[4, 1] == 0.0 and mean[4, 1] == 0.0 and se[4, 2] < 1e-15
    assert mean[4, 2] == pytest.approx(math.exp(0.2), rel=1e-15)


def test_standard_error_matches_theory_and_scales():
    # Var(u v) = ab + c^2 for a centred Gaussian pair (Isserlis), so se = sqrt((ab + c^2) / n).
    a, b, c = 1.0, 2.0, 0.7
    L, mu, params = pair_inputs([(a, b, c, 0.0, 1.0)])
    ses = []
    for n in (1 << 14, 1 << 18):
        _, se = mc.mc_expectation(PAIR_EXPRS, L, mu, params, n_samples=n, seed=5)
        assert se[0, 0] == pytest.approx(math.sqrt((a * b + c * c) / n), rel=0.05)
        ses.append(se[0, 0])
    assert ses[0] / ses[1] == pytest.approx(4.0, rel=0.05)


def test_kernel_uses_the_documented_normals():
    L, mu, params = pair_inputs(PAIR_CASES[:2])
    n = 3000
    mean, se = mc.mc_expectation(PAIR_EXPRS, L, mu, params, n_samples=n, seed=77)
    xi = mc.standard_normals(77, n, 2)
    for g in range(2):
        z = mu[g] + xi @ L[g].T
        f = np.stack([z[:, 0] * z[:, 1], np.maximum(z[:, 0] - mu[g, 0], 0) * np.maximum(z[:, 1], 0),
                      np.exp(params[g, 0] * z[:, 0])], axis=1)
        np.testing.assert_allclose(mean[g], f.mean(0), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(se[g], f.std(0, ddof=1) / math.sqrt(n), rtol=1e-10)


def test_cosine_products_in_eight_dimensions():
    """prod_i cos z_i = 2^-d sum_{s in {-1,1}^d} exp(i s.z) (expand each cosine into two
    exponentials; the imaginary parts cancel), and E exp(i s.z) = exp(i s.mu - s'Sigma s / 2), so
    E prod_i cos z_i = 2^-d sum_s cos(s.mu) exp(-s'Sigma s / 2). Likewise
    E cos(sum_i z_i) = cos(1.mu) exp(-1'Sigma 1 / 2)."""
    d = 8
    rng = np.random.default_rng(3)
    Sigma = np.empty((2, d, d))
    A = rng.standard_normal((d, d)) * 0.25
    Sigma[0] = A @ A.T + 0.2 * np.eye(d)
    B = rng.standard_normal((d, 3)) * 0.3
    Sigma[1] = B @ B.T  # rank 3: five zero pivots
    mu = rng.uniform(-1, 1, size=(2, d))
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=d)))
    ones = np.ones(d)
    truth = np.array([[np.mean(np.cos(signs @ m) * np.exp(-0.5 * np.einsum("si,ij,sj->s", signs, S,
                                                                           signs))),
                       math.cos(ones @ m) * math.exp(-0.5 * ones @ S @ ones),
                       math.cosh(m[7]) * math.exp(0.5 * S[7, 7])]
                      for S, m in zip(Sigma, mu)])
    # The second integrand goes through tensorprog.numeric.special, as fast integrands do, the
    # third through a helper defined in a prelude (E cosh z = cosh(mu) exp(Sigma / 2)).
    exprs = ["*".join(f"math.cos(z{i})" for i in range(d)),
             "special.cos(" + "+".join(f"z{i}" for i in range(d)) + ")", "_cosh(z7)"]
    prelude = "@njit(cache=True)\ndef _cosh(x):\n    return 0.5 * (math.exp(x) + math.exp(-x))\n"
    mean, se = mc.mc_expectation(exprs, mc.cholesky_psd(Sigma), mu, n_samples=300_000, seed=1,
                                 prelude=prelude)
    assert np.all(np.abs(mean - truth) <= 4 * se)


def test_seed_changes_stream_and_same_seed_repeats():
    L, mu, params = pair_inputs(PAIR_CASES[:1])
    first = mc.mc_expectation(PAIR_EXPRS, L, mu, params, n_samples=5000, seed=1)
    again = mc.mc_expectation(PAIR_EXPRS, L, mu, params, n_samples=5000, seed=1)
    other = mc.mc_expectation(PAIR_EXPRS, L, mu, params, n_samples=5000, seed=2)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert np.all(first[0] != other[0])


def test_grid_entries_do_not_affect_each_other():
    # Common random numbers and per-entry reductions: an entry's estimate is the same bits
    # whatever else is on the grid. n spans two items and ends inside a block.
    L, mu, params = pair_inputs(PAIR_CASES)
    n = mc.ITEM + 3 * mc.block_length(2) + 17
    alone = mc.mc_expectation(PAIR_EXPRS, L[:1], mu[:1], params[:1], n_samples=n, seed=4)
    reps = np.repeat(np.arange(len(PAIR_CASES)), 60)
    crowd = mc.mc_expectation(PAIR_EXPRS, L[reps], mu[reps], params[reps], n_samples=n, seed=4)
    np.testing.assert_array_equal(crowd[0][0], alone[0][0])
    np.testing.assert_array_equal(crowd[1][-1], crowd[1][-2])


_THREADS_CHILD = """\
import numba
import numpy as np
from tensorprog.numeric import montecarlo as mc
Sigma = np.array([[[1.0, 0.7], [0.7, 2.0]], [[1.3, 1.3], [1.3, 1.3]], [[0.5, -0.1], [-0.1, 0.5]]])
mean, se = mc.mc_expectation({exprs!r}, mc.cholesky_psd(Sigma), np.full((3, 2), 0.25),
                             np.full((3, 2), 0.5), n_samples={n}, seed=123456789)
bits = [float(x).hex() for x in np.concatenate([mean.ravel(), se.ravel()])]
print(numba.get_num_threads(), " ".join(bits))
"""


def test_bit_identical_for_one_and_two_threads():
    # More items than one parallel pass takes (64), and a partial last block.
    n = 70 * mc.ITEM + 12345
    outputs = []
    for threads in (1, 2):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        done = subprocess.run([sys.executable, "-c", _THREADS_CHILD.format(exprs=PAIR_EXPRS, n=n)],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.split())
    assert [out[0] for out in outputs] == ["1", "2"]
    assert len(outputs[0]) == 19
    assert outputs[0][1:] == outputs[1][1:]


def test_cholesky_psd_definite_and_singular():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 5, 5))
    definite = A @ np.transpose(A, (0, 2, 1)) + 0.1 * np.eye(5)
    np.testing.assert_allclose(mc.cholesky_psd(definite), np.linalg.cholesky(definite),
                               rtol=1e-12, atol=1e-12)
    B = rng.standard_normal((3, 6, 2))
    singular = B @ np.transpose(B, (0, 2, 1))
    L = mc.cholesky_psd(singular)
    assert np.all(np.isfinite(L)) and np.all(np.triu(L, 1) == 0)
    np.testing.assert_allclose(L @ np.transpose(L, (0, 2, 1)), singular, atol=1e-12)
    assert np.all(np.count_nonzero(np.abs(np.diagonal(L, axis1=1, axis2=2)) > 0, axis=1) == 2)
    # Identical inputs and an all-zero covariance.
    np.testing.assert_array_equal(mc.cholesky_psd(np.full((2, 2), 4.0)), [[2.0, 0.0], [2.0, 0.0]])
    np.testing.assert_array_equal(mc.cholesky_psd(np.zeros((3, 3))), np.zeros((3, 3)))


def test_cholesky_psd_rejects_indefinite():
    with pytest.raises(ValueError, match="not positive semi-definite"):
        mc.cholesky_psd(np.array([[1.0, 2.0], [2.0, 1.0]]))


def test_invalid_integrands_are_rejected():
    with pytest.raises(ValueError, match="out of range"):
        mc.mc_kernel_source("k", 2, ["z2"])
    with pytest.raises(ValueError, match="out of range"):
        mc.mc_kernel_source("k", 2, ["z0 * p0"])
    with pytest.raises(ValueError, match="unknown name"):
        mc.mc_kernel_source("k", 2, ["os.getcwd()"])
    with pytest.raises(ValueError, match="not a Python expression"):
        mc.mc_kernel_source("k", 2, ["z0 +"])
    with pytest.raises(ValueError, match="redefines"):
        mc.mc_kernel_source("k", 2, ["z0"], prelude="B = 3\n")
    assert "helper(z0)" in mc.mc_kernel_source("k", 2, ["helper(z0)"], prelude="helper = abs\n")
    with pytest.raises(ValueError):
        mc.mc_expectation(["z0"], np.eye(1), n_samples=1)
