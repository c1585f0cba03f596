"""The library of example architectures (issue 6): each example's limit against an independent truth.

Truths written here: the MLP layer recursions (arc-cosine, arcsine and GELU closed forms of docs/theory.md
"Moment"; tanh and GELU' by a nested Gauss-Legendre integration), for the NTK and the standard
parametrization; the relu RNN NTK recursions with last-state and pooled readouts; the transformer's
Gaussian propagation (softmax over the causal prefix, LayerNorm as a rescaling, relu arc-cosine kernel);
BatchNorm's exact output for identical and for exchangeable batches; the first token of the GRU and
LSTM by Gauss-Hermite quadrature; the muP / NTK-parametrization contrast of Tensor Programs IV
(symbolically zero in the NTK limit; at finite width the feature movement shrinks like n^-1/2).
Tests marked slow compare every example with finite-width simulations.
"""
import math
from pathlib import Path

import numpy as np
import pytest
import sympy
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import erf, ndtr

import tensorprog
from tensorprog.limit.symbols import Integral, qrefs_in
from tensorprog.numeric.npfuncs import compile_numpy
from tensorprog.simulate import convergence
from gaussian_truths import erf_erf, erfp_erfp, gelu_gelu, relu_relu, step_step

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MLP_X = np.array([[1, 0, 0], [0.6, 0.8, 0], [2, 0, 0], [-1, 0, 0]], dtype=float)


def example(name, defines=None):
    return tensorprog.parse(EXAMPLES / name, defines=defines)


def with_data(name, old, new):
    """The example's program text with one data line replaced (the same network on other inputs)."""
    text = (EXAMPLES / name).read_text()
    assert old in text
    return text.replace(old, new)


# ---------------------------------------------------------------------- two-variable kernels

_XL, _WL = np.polynomial.legendre.leggauss(16)
_EDGES = np.linspace(-10.0, 10.0, 27)


def _legendre(edges):
    """Gauss-Legendre nodes and weights (times the N(0, 1) density) on the pieces between sorted
    edges (..., P + 1): arrays (..., 16 P)."""
    lo, hi = edges[..., :-1, None], edges[..., 1:, None]
    z = lo + 0.5 * (hi - lo) * (_XL + 1)
    w = 0.5 * (hi - lo) * _WL * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    return z.reshape(edges.shape[:-1] + (-1,)), w.reshape(edges.shape[:-1] + (-1,))


def expect2(f, g, a, b, c):
    """E[f(u) g(v)], (u, v) ~ N(0, [[a, c], [c, b]]), a > 0: u = sqrt(a) z1, v = m + s z2 with
    m = c z1 / sqrt(a), s^2 = b - c^2/a; piecewise Gauss-Legendre in z1 (pieces of 0.77, split at 0)
    and, for each z1, in z2 (split where v = 0)."""
    z1, w1 = _legendre(np.sort(np.append(_EDGES, 0.0)))
    m = c / math.sqrt(a) * z1
    s = math.sqrt(max(b - c * c / a, 0.0))
    if s == 0.0:
        return float(np.sum(w1 * f(math.sqrt(a) * z1) * g(m)))
    cut = np.clip(-m / s, -10.0, 10.0)[:, None]
    z2, w2 = _legendre(np.sort(np.concatenate([np.broadcast_to(_EDGES, (len(z1), len(_EDGES))), cut], axis=1)))
    inner = np.sum(w2 * g(m[:, None] + s * z2), axis=1)
    return float(np.sum(w1 * f(math.sqrt(a) * z1) * inner))


def dtanh(x):
    return 1 - np.tanh(x) ** 2


def dgelu(x):
    return ndtr(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _numeric(f, g):
    def k(a, b, c):
        return np.vectorize(lambda a_, b_, c_: expect2(f, g, a_, b_, c_))(a, b, c)
    return k


KERNELS = {  # phi -> (E[phi phi], E[phi' phi'])
    "relu": (relu_relu, step_step),
    "erf": (erf_erf, erfp_erfp),
    "gelu": (gelu_gelu, _numeric(dgelu, dgelu)),
    "tanh": (_numeric(np.tanh, np.tanh), _numeric(dtanh, dtanh)),
}
MLP_SW2 = {"relu": 2.0, "erf": 1.5, "tanh": 1.5, "gelu": 2.0}


def on_pairs(kernel, S):
    """kernel(S_ii, S_jj, S_ij) for all pairs."""
    d = np.diag(S)
    return kernel(d[:, None], d[None, :], S)


def mlp_truth(phi, L, sw2, sb2=0.05, X=MLP_X):
    """(NNGP, NTK, NTK_SP) of examples/mlp_<phi>.tp from the layer recursion: Sigma(1) = sw2 K(0) + sb2,
    K(l) = E[phi phi](Sigma(l)), Sigma(l+1) = sw2 K(l) + sb2; P(L) = sw2 E[phi' phi'](Sigma(L)),
    P(l) = sw2 P(l+1) E[phi' phi'](Sigma(l));  NTK = Sigma(L+1) + sum_l P(l) Sigma(l),
    NTK_SP = K(L) + sum_{l>=2} P(l) K(l-1)  (the header's derivation)."""
    k, kd = KERNELS[phi]
    K = {0: X @ X.T / X.shape[1]}
    Sig = {1: sw2 * K[0] + sb2}
    for l in range(1, L + 1):
        K[l] = on_pairs(k, Sig[l])
        Sig[l + 1] = sw2 * K[l] + sb2
    P = {L: sw2 * on_pairs(kd, Sig[L])}
    for l in range(L - 1, 0, -1):
        P[l] = sw2 * P[l + 1] * on_pairs(kd, Sig[l])
    ntk = Sig[L + 1] + sum(P[l] * Sig[l] for l in range(1, L + 1))
    ntk_sp = K[L] + sum(P[l] * K[l - 1] for l in range(2, L + 1))
    return Sig[L + 1], ntk, ntk_sp


def test_independent_integration_reproduces_closed_forms():
    for a, b, c in [(0.7, 1.9, 0.4), (2.0, 2.0, 2.0), (0.5, 3.0, -1.1)]:
        assert abs(expect2(erf, erf, a, b, c) - erf_erf(a, b, c)) < 1e-13
        assert abs(expect2(lambda x: x * ndtr(x), lambda x: x * ndtr(x), a, b, c) - gelu_gelu(a, b, c)) < 1e-13
        relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
        assert abs(expect2(relu, relu, a, b, c) - relu_relu(a, b, c)) < 1e-13


# ---------------------------------------------------------------------- MLPs: NNGP, NTK, standard parametrization

@pytest.mark.parametrize("phi", ["relu", "erf"])
def test_mlp_depth_10_against_closed_form_recursion(phi):
    res = tensorprog.evaluate(example(f"mlp_{phi}.tp", {"L": 10}))
    for name, truth in zip(("NNGP", "NTK", "NTK_SP"), mlp_truth(phi, 10, MLP_SW2[phi])):
        assert res[name].method == "closed form"
        np.testing.assert_allclose(res[name].value, truth, rtol=1e-10, atol=0, err_msg=name)


def test_relu_kernels_on_the_diagonal_at_depth_10_are_exact():
    # On the diagonal rho = 1, E[step step] = 1/2 and E[relu relu] = Sigma_ii / 2: with sw2 = 2,
    # Sigma(l)_ii = s1 + sb2 (l - 1) and P(l)_ii = 1, so NTK_ii = sum_{l=1}^{L+1} Sigma(l)_ii and
    # NTK_SP_ii = (1/2) sum_{l=1}^{L} Sigma(l)_ii -- where acos(rho) turns rounding into errors of 1e-8.
    res = tensorprog.evaluate(example("mlp_relu.tp", {"L": 10}))
    s1 = 2.0 * np.sum(MLP_X ** 2, axis=1) / 3 + 0.05
    np.testing.assert_allclose(np.diag(res["NTK"].value), 11 * s1 + 0.05 * 55, rtol=1e-13, atol=0)
    np.testing.assert_allclose(np.diag(res["NTK_SP"].value), (10 * s1 + 0.05 * 45) / 2, rtol=1e-13, atol=0)


def test_ntk_minus_standard_parametrization_is_the_first_layer_term():
    # L = 1, no biases: NTK = sw2 K(1) + P(1) sw2 K(0) with P(1) = sw2 E[step step](sw2 K(0)),
    # while in SP (rate eta/n) W1's term P(1) <xi, xi'>/n vanishes: NTK_SP = K(1).
    sw2 = 2.0
    res = tensorprog.evaluate(example("mlp_relu.tp", {"L": 1, "sb2": 0}))
    K0 = MLP_X @ MLP_X.T / 3
    first_layer = sw2 * on_pairs(step_step, sw2 * K0) * sw2 * K0
    np.testing.assert_allclose(res["NTK"].value - sw2 * res["NTK_SP"].value, first_layer, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res["NTK_SP"].value, on_pairs(relu_relu, sw2 * K0), rtol=1e-12, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("phi", ["tanh", "gelu"])
def test_mlp_depth_10_against_integrated_recursion(phi):
    res = tensorprog.evaluate(example(f"mlp_{phi}.tp", {"L": 10}))
    for name, truth in zip(("NNGP", "NTK", "NTK_SP"), mlp_truth(phi, 10, MLP_SW2[phi])):
        np.testing.assert_allclose(res[name].value, truth, rtol=1e-8, atol=1e-9, err_msg=name)


# ---------------------------------------------------------------------- RNN NTK (relu: closed forms)

RNN_S = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]],
                  [[0, 1, 0], [1, 0, 0], [1, 1, 1], [-1, 0, 1]]], dtype=float)


def rnn_ntk_truth(T=4, sw2=1.0, su2=1.0, sb2=0.1, sv2=1.0, S=RNN_S):
    """examples/rnn_ntk.tp.  Forward covariance C over (t, s) (row 2(t-1) + s):
    C = su2 <x, x'>/d + sb2 + sw2 [t, t' > 1] E[relu relu](C)(t-1, t'-1), iterated T times.
    Backward (Zdot = 0, W^T's Zhat independent of the forward pass and of v):
    last: D(T, T) = sv2 E[step step](T, T), D(t, t) = sw2 E[step step](t, t) D(t+1, t+1), D(t, t') = 0 else;
    pooled: D(t, t') = E[step step](t, t') (sv2/T^2 + sw2 D(t+1, t'+1)), D(T+1, .) = 0.
    NTK = sv2 E[y y'] + sum_{t,t'} D(t, t') (su2 <x(t), x(t')>/d + sb2 + sw2 [t, t' > 1] E[h(t-1) h(t'-1)])."""
    X = S.transpose(1, 0, 2).reshape(2 * T, -1)
    inp = su2 * X @ X.T / X.shape[1] + sb2
    C = inp.copy()
    for _ in range(T):
        prev = np.zeros_like(C)
        prev[2:, 2:] = on_pairs(relu_relu, C)[:-2, :-2]
        C = inp + sw2 * prev
    R, P = on_pairs(relu_relu, C), on_pairs(step_step, C)

    def blk(M, t, u):
        return M[2 * (t - 1):2 * t, 2 * (u - 1):2 * u]

    last, pool = {}, {}
    for t in range(T, 0, -1):
        for u in range(T, 0, -1):
            if t == u:
                last[t, u] = blk(P, t, u) * (sv2 if t == T else sw2 * last[t + 1, u + 1])
            else:
                last[t, u] = np.zeros((2, 2))
            pool[t, u] = blk(P, t, u) * (sv2 / T ** 2 + (sw2 * pool[t + 1, u + 1] if max(t, u) < T else 0.0))

    def params(t, u):
        return blk(inp, t, u) + (sw2 * blk(R, t - 1, u - 1) if min(t, u) > 1 else 0.0)

    pairs = [(t, u) for t in range(1, T + 1) for u in range(1, T + 1)]
    ntk_last = sv2 * blk(R, T, T) + sum(last[p] * params(*p) for p in pairs)
    ntk_pool = sv2 * sum(blk(R, *p) for p in pairs) / T ** 2 + sum(pool[p] * params(*p) for p in pairs)
    return ntk_last, ntk_pool


def test_rnn_ntk_last_state_and_pooled_against_relu_recursion():
    res = tensorprog.evaluate(example("rnn_ntk.tp"))
    last, pool = rnn_ntk_truth()
    np.testing.assert_allclose(res["NTK_last"].value, last, rtol=1e-12, atol=0)
    np.testing.assert_allclose(res["NTK_pool"].value, pool, rtol=1e-12, atol=0)
    # the backward pass reuses W through W^T: the limit pass finds every Zdot term to be 0
    assert not tensorprog.derive(example("rnn_ntk.tp")).nonzero_zdot()


# ---------------------------------------------------------------------- transformer

TRANSFORMER_DATA = ("data S = [[[1, 0, 0], [0, 1, 0], [1, 1, 0]],\n"
                    "          [[1, 0, 0], [0, 0, 2], [1, -1, 1]]]")


def transformer_truth(S, L, sw2=1.0, eps=1e-5):
    """examples/transformer.tp: every residual stream x(t, s) is Gaussian; with C its covariance over
    (t, s) (row t * 2 + s): A = LN-rescaled C, attention weights M = softmax over u <= t of sw2 A
    (within a sequence), Cov(y) = C + sw2 M A M^T, B = LN-rescaled Cov(y), and
    C' = Cov(y) + sw2 E[relu relu](2 B) (W1 has variance 2/n)."""
    ns, T, d = S.shape
    E = S.transpose(1, 0, 2).reshape(T * ns, d)
    C = E @ E.T / d
    tok, seq = np.repeat(np.arange(T), ns), np.tile(np.arange(ns), T)

    def layernorm(M):
        r = 1 / np.sqrt(np.diag(M) + eps)
        return M * np.outer(r, r)

    for _ in range(L):
        A = layernorm(C)
        M = np.zeros_like(C)
        for p in range(T * ns):
            cols = np.flatnonzero((seq == seq[p]) & (tok <= tok[p]))
            w = np.exp(sw2 * A[p, cols] - np.max(sw2 * A[p, cols]))
            M[p, cols] = w / w.sum()
        Cy = C + sw2 * M @ A @ M.T
        C = Cy + sw2 * on_pairs(relu_relu, 2 * layernorm(Cy))
    return C.reshape(T, ns, T, ns)


@pytest.mark.parametrize("L", [1, 2])
def test_transformer_against_gaussian_propagation(L):
    S = np.array([[[1, 0, 0], [0, 1, 0], [1, 1, 0]], [[1, 0, 0], [0, 0, 2], [1, -1, 1]]], dtype=float)
    res = tensorprog.evaluate(example("transformer.tp", {"L": L}))
    assert res["K"].value.shape == (3, 2, 3, 2)
    np.testing.assert_allclose(res["K"].value, transformer_truth(S, L), rtol=1e-12, atol=1e-13)


def test_transformer_causal_mask_first_token_sees_only_itself():
    base = tensorprog.evaluate(example("transformer.tp"))["K"].value
    other = with_data("transformer.tp", TRANSFORMER_DATA,
                      "data S = [[[1, 0, 0], [0, 1, 0], [1, 1, 0]],\n          [[1, 0, 0], [3, 1, 0], [0, 1, -2]]]")
    changed = tensorprog.evaluate(other)["K"].value
    # the second sequence's later tokens changed: its first token's output did not
    np.testing.assert_array_equal(changed[0, :, 0, :], base[0, :, 0, :])
    assert np.max(np.abs(changed[1:, 1] - base[1:, 1])) > 0.1
    # both sequences start with the same token: the same random variable
    assert np.all(base[0, :, 0, :] == base[0, 0, 0, 0])


# ---------------------------------------------------------------------- feature learning: muP versus NTK

def canonical_limit(limit, expr, memo):
    """``expr`` with closed forms inlined and every integral replaced by a symbol named after its
    (recursively canonical) definition, so that two quantities with the same definition are equal."""
    expr = limit.inline(expr)
    sub = {}
    for r in qrefs_in(expr):
        d = limit.definition(r)
        if isinstance(d, Integral):
            key = sympy.srepr((d.integrand, d.variables, r.args,
                               [canonical_limit(limit, e, memo) for e in list(d.mean) + list(d.cov)]))
            sub[r] = memo.setdefault(key, sympy.Symbol(f"I{len(memo)}"))
    return expr.xreplace(sub)


def test_feature_kernel_change_is_exactly_zero_in_the_ntk_limit_and_not_in_mup():
    limit = tensorprog.derive(example("feature_learning.tp"))
    memo = {}
    ((_, ntk),) = limit.outputs["dK_ntk"]
    ((_, mup),) = limit.outputs["dK_mup"]
    # n^(-1/2) -> 0: x1' = tanh(h1), W x1' has W x1's covariance, so E[x2' x2'] and E[x2 x2] are one integral
    assert sympy.simplify(canonical_limit(limit, ntk, memo)) == 0
    assert sympy.simplify(canonical_limit(limit, mup, memo)) != 0
    # muP's W x1' has a non-zero Zdot term (x1' depends on Zhat^{W^T dh2})
    assert any(t.matmul.arg.value.name == "x1'[0]" for t in limit.nonzero_zdot())


# ---------------------------------------------------------------------- numeric backend: exact constants

def test_numpy_path_evaluates_square_roots_of_large_integers():
    # LayerNorm with eps = 1/100000 produces sqrt(120005400081000810) in a limit expression
    x = sympy.Symbol("x", real=True)
    big = 336026280891018387252722405715309065610
    fn = compile_numpy(sympy.sqrt(big) * x / sympy.sqrt(x + sympy.Rational(1, 100000)), (x,))
    expected = math.sqrt(big) * np.array([1.0, 4.0]) / np.sqrt([1.00001, 4.00001])
    np.testing.assert_allclose(fn(np.array([1.0, 4.0])), expected, rtol=1e-15)


# ---------------------------------------------------------------------- the first token of the GRU and the LSTM

def gauss_hermite_2(f, g, C, deg=60):
    """E[f(u) g(v)], (u, v) ~ N(0, C) (C may be singular), by tensor Gauss-Hermite on C = V diag(lam) V^T."""
    x, w = hermegauss(deg)
    w = w / math.sqrt(2 * math.pi)
    lam, V = np.linalg.eigh(C)
    F = V * np.sqrt(np.clip(lam, 0, None))
    z1, z2 = np.meshgrid(x, x, indexing="ij")
    return float(np.sum(np.outer(w, w) * f(F[0, 0] * z1 + F[0, 1] * z2) * g(F[1, 0] * z1 + F[1, 1] * z2)))


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def first_token_inputs(S, su2=1.0, sb2=0.1):
    """Cov of U x(1) + b over the two sequences' first tokens."""
    X = S[:, 0, :]
    return su2 * X @ X.T / X.shape[1] + sb2


@pytest.mark.slow
def test_gru_first_token_against_gauss_hermite():
    # h(1) = sigmoid(uz) tanh(uh), uz and uh independent: E[h h'] = E[sig sig'] E[tanh tanh']
    S = np.array([[[1, 0, 0]], [[0, 1, 0]]], dtype=float)
    C = first_token_inputs(S)
    res = tensorprog.evaluate(example("gru.tp", {"T": 1}))["K"]
    pair = [[C[np.ix_([p, q], [p, q])] for q in range(2)] for p in range(2)]
    truth = np.array([[gauss_hermite_2(sigmoid, sigmoid, c) * gauss_hermite_2(np.tanh, np.tanh, c) for c in row]
                      for row in pair])
    np.testing.assert_allclose(res.value.reshape(2, 2), truth, rtol=1e-9, atol=1e-11)


@pytest.mark.slow
def test_lstm_first_token_against_gauss_hermite():
    # h(1) = sigmoid(uo) tanh(sigmoid(ui) tanh(ug)), three independent Gaussian pairs:
    # E[h h'] = E[sig(o) sig(o')] * E[tanh(sig(i) tanh(g)) tanh(sig(i') tanh(g'))] (4-d, tensor Gauss-Hermite)
    S = np.array([[[1, 0, 0]], [[0.5, 1, 0]]], dtype=float)
    C = first_token_inputs(S)
    x, w = hermegauss(40)
    w = w / math.sqrt(2 * math.pi)
    Lc = np.linalg.cholesky(C)
    z1, z2 = np.meshgrid(x, x, indexing="ij")
    ww = np.outer(w, w).ravel()
    u1, u2 = (Lc[0, 0] * z1).ravel(), (Lc[1, 0] * z1 + Lc[1, 1] * z2).ravel()   # one pair (seq 0, seq 1)
    res = tensorprog.evaluate(example("lstm.tp", {"T": 1}))["K"]
    cell = [np.tanh(sigmoid(u)[:, None] * np.tanh(u)[None, :]) for u in (u1, u2)]   # (i-node, g-node)
    truth = np.empty((2, 2))
    truth[0, 1] = truth[1, 0] = (np.sum(ww * sigmoid(u1) * sigmoid(u2))
                                 * np.einsum("a,b,ab,ab->", ww, ww, cell[0], cell[1]))
    for p, u in enumerate((u1, u2)):
        truth[p, p] = np.sum(ww * sigmoid(u) ** 2) * np.einsum("a,b,ab->", ww, ww, cell[p] ** 2)
    # the 4-d integral is a tensor Gauss-Hermite rule of modest order: its error estimate must bound the error
    err = np.abs(res.value.reshape(2, 2) - truth)
    assert np.all(err <= res.error.reshape(2, 2)), (err, res.error)
    assert np.max(res.error) < 1e-4


# ---------------------------------------------------------------------- BatchNorm

BN_DATA = "data X = [[1, 0, 0], [0.6, 0.8, 0], [1, 1, 1]]"


@pytest.mark.slow
def test_batchnorm_of_identical_inputs_is_zero():
    # g(xi_1) = g(xi_2) = g(xi_3) at every coordinate: y = 0 / sqrt(0 + eps) = 0, so the output is the bias
    res = tensorprog.evaluate(with_data("batchnorm.tp", BN_DATA, "data X = [[1, 1, 0], [1, 1, 0], [1, 1, 0]]"))
    np.testing.assert_allclose(res["K"].value, np.full((3, 3), 0.1), rtol=0, atol=1e-14)


@pytest.mark.slow
def test_batchnorm_of_an_exchangeable_batch_is_universal():
    # eps = 0, Cov = a I + c 11^T: the centred batch is isotropic in the plane orthogonal to (1, 1, 1), so
    # y_k = sqrt(2) cos(theta - 2 pi k / 3) with theta uniform.  E[relu(y_k)^2] = 1/2 and, for k != k',
    # (1/pi) int_{pi/6}^{pi/2} cos(t) cos(t - 2 pi/3) dt = sqrt(3)/(4 pi) - 1/12.  The next layer's
    # covariance sw2 M + sb2 is exchangeable again: K = sw2 M + sb2 at every depth.
    M = np.full((3, 3), math.sqrt(3) / (4 * math.pi) - 1 / 12)
    np.fill_diagonal(M, 0.5)
    text = with_data("batchnorm.tp", BN_DATA, "data X = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]")
    res = tensorprog.evaluate(text, defines={"eps": 0})["K"]
    err = np.abs(res.value - (2.0 * M + 0.1))
    # within 4 of the reported errors (standard errors where Monte Carlo is used), and those are small
    assert np.all(err <= 4 * res.error + 1e-12), (err, res.error)
    assert np.max(res.error) < 2e-3


# ---------------------------------------------------------------------- finite-width simulations

def assert_limit_within_4_se(conv, outputs=None):
    for name, points in conv.points.items():
        if outputs is None or name in outputs:
            assert points[-1].max_abs_z < 4.0, (name, points[-1].max_abs_z, points[-1].worst)


@pytest.mark.slow
@pytest.mark.parametrize("name,defines", [
    ("mlp_relu.tp", {"L": 10}), ("mlp_erf.tp", {"L": 5}), ("mlp_tanh.tp", {"L": 4}), ("mlp_gelu.tp", None),
    ("rnn_ntk.tp", None), ("gru.tp", None), ("transformer.tp", {"L": 1}), ("batchnorm.tp", None)])
def test_example_limit_within_4_se_of_simulation_at_2048(name, defines, example_convergence):
    assert_limit_within_4_se(example_convergence(name, defines, width=2048, seeds=20))


@pytest.mark.slow
def test_lstm_limit_within_4_se_of_simulation_at_2048(example_convergence):
    assert_limit_within_4_se(example_convergence("lstm.tp", width=2048, seeds=20))


@pytest.mark.slow
def test_mup_feature_kernel_change_within_4_se_of_simulation_at_2048(example_convergence):
    assert_limit_within_4_se(example_convergence("feature_learning.tp", width=2048, seeds=20), outputs={"dK_mup"})


@pytest.mark.slow
def test_ntk_features_move_like_n_to_minus_half_and_mup_features_stay():
    # Added outputs: the RMS movement of the second-layer features, sqrt(mean((x2' - x2)^2)).  In the NTK
    # parametrization every update carries n^(-1/2), so it shrinks like n^(-1/2); in muP it stays O(1).
    # The kernel change dK_ntk is even in the update (v -> -v with chi fixed leaves the law unchanged),
    # so its first order has mean 0 and it shrinks like n^(-1) (its fluctuation and its bias).
    text = (EXAMPLES / "feature_learning.tp").read_text() + (
        "out dx_ntk[i] = sqrt(mean((x2'[1][i] - tanh(h2[i]))^2))\n"
        "out dx_mup[i] = sqrt(mean((x2'[0][i] - tanh(h2[i]))^2))\n")
    zero3, zero33 = np.zeros(3), np.zeros((3, 3))
    conv = convergence(tensorprog.parse(text), [256, 512, 1024, 2048, 4096], seeds=8,
                       limit={"dK_mup": zero33, "dK_ntk": zero33, "dx_ntk": zero3, "dx_mup": zero3})
    b, _ = conv.exponents["dx_ntk"]
    assert -0.7 < b < -0.3, b
    b, _ = conv.exponents["dK_ntk"]
    assert -1.3 < b < -0.7, b
    b, _ = conv.exponents["dx_mup"]
    assert abs(b) < 0.1, b
    # muP: the kernel change at the two largest widths agrees, and is far from 0
    p2048, p4096 = conv.points["dK_mup"][-2:]
    diff = np.abs(p4096.mean - p2048.mean) / np.hypot(p4096.stderr, p2048.stderr)
    assert np.max(diff) < 4.0
    assert np.max(np.abs(p4096.mean) / p4096.stderr) > 20
