"""Hermite (dual-activation) series for two-variable Gaussian expectations.

For (u, v) ~ N(0, [[a, c], [c, b]]) and rho = c / sqrt(a b), Mehler's formula gives

    E[phi(u) psi(v)] = sum_{k>=0} c_k(a) d_k(b) rho^k,
    c_k(a) = E[phi(sqrt(a) z) He_k(z)] / sqrt(k!),   d_k(b) = E[psi(sqrt(b) z) He_k(z)] / sqrt(k!),

with z ~ N(0, 1) and He_k the probabilists' Hermite polynomials.  This evaluates the infinite-width
kernel of a smooth activation that has no closed form (tanh, SiLU, GELU, softplus, user functions)
for all N1 x N2 pairs of inputs at once: the coefficients are per row (an N x K matrix, one matrix
product with a fixed projection matrix), and each pair costs one Horner evaluation in rho.

Pipeline (the caller owns phi and evaluates it on the grid with its own compiled function):

    z, w = hermite_grid()                       # E f(z) ~= sum_g w_g f(z_g)
    B = hermite_projection(z, w, K)             # B[g, k] = w_g He_k(z_g) / sqrt(k!)
    F = phi(sqrt(a)[:, None] * z[None, :])      # F[i, g] = phi(sqrt(a_i) z_g)
    C = series_coefficients(F, B)               # C[i, k] = c_k(a_i)
    T = parity_tails(F, w, C)                   # energy of the discarded coefficients
    out = pair_expectation(C, C, T, T, a, a, cov)

Truncation and the tail correction.  By Parseval, sum_k c_k(a)^2 = E[phi(sqrt(a) z)^2], so the
energy of the discarded coefficients of each parity is known exactly:
T_e(a) = E[phi_e(sqrt(a) z)^2] - sum_{k even < K} c_k^2 with phi_e the even part of phi, T_o
likewise.  For the discarded part of one parity (first discarded index K_p) the tail of a row is
modelled as geometric, c_{K_p + 2m} = c_{K_p - 2} r^{(m+1)/2} (the sign of the last kept
coefficient of that parity carried on), with the ratio fixed by the known energy:
sum_{m>=0} c_{K_p-2}^2 r^{m+1} = T  <=>  r = T / (T + c_{K_p-2}^2).  For a pair of rows the
products c_k d_k of two geometric tails are geometric with ratio sqrt(r1 r2), hence

    sum_{k >= K_p, k = K_p mod 2} c_k d_k rho^k
        ~= s A1 A2 rho^{K_p} / (1 - Q1 Q2 rho^2),    A = sqrt(T (1 - r)),  Q = sqrt(r),

with s the sign of c_{K_p-2} d_{K_p-2}.  Properties that fix this choice:
  * phi = psi and a = b: at rho = +-1 the correction is T_e + rho^{K_o} T_o = the discarded
    series exactly (for any r), so the diagonal E[phi(u)^2] and the rho = -1 value are exact;
  * sqrt((1 - r1)(1 - r2)) <= 1 - sqrt(r1 r2), so |correction| <= |rho|^{K_p} sqrt(T1 T2), the
    Cauchy-Schwarz bound on the discarded terms: it never overshoots that bound;
  * the sign of c_k d_k is the one of the last kept pair.  For tanh, erf, GELU, SiLU and
    softplus the sign of c_k(a) depends on k only, not on a (checked for k < 400, a in
    [0.05, 100]), so the products of two rows of one function are positive along the tail.
The Hermite coefficients of tanh decay slower than geometrically (the poles at
+-i pi / (2 sqrt(a)) give c_k^2 ~ exp(-pi sqrt(k / a))), and those of erf, GELU and SiLU are
geometric times a decreasing power of k, so the local ratio creeps towards 1 and the model
over-estimates the tail at |rho| < 1 by ~1/200-1/400 of it.  (Fitting r to a longer stretch of
kept coefficients, or extrapolating the drift of r, was tried and gains at most 30%.)

Error estimate.  err[i, j] = |rho|^{K_e} sqrt((T1e + u1)(T2e + u2)) + |rho|^{K_o} sqrt((T1o + u1)
(T2o + u2)) + K eps ||phi|| ||psi|| / 2, with ||phi||^2 = E phi(u)^2 and u = 64 eps ||phi||^2 the
rounding allowance of T (parity_tails).  The first two terms bound the whole discarded series
(Cauchy-Schwarz, |rho| <= 1); since the correction has the tail's sign and is no larger than
that bound, they also bound the error left after the correction (typically 100x smaller).  The
last term covers rounding in the coefficients and the Horner loop (measured <= 0.2 K eps
||phi|| ||psi||).  Not covered: the quadrature error of the coefficients themselves, which is
at rounding level only if phi(sqrt(a) z) is analytic in a strip |Im z| < d with d >~ 6 h and
grows slowly enough for the cut at zmax (hermite_grid); for kinked phi (relu, abs) use closed
forms instead.

Cost and the choice of K.  The pair loop does 2 K flops per pair (one multiply, one fused
multiply-add per Horner step), ~1e10 pair-terms per second per core; the coefficients cost
N G K flops.  At N = 2000, K = 192 one layer (phi on the grid, coefficients, tails, all pairs
with error estimates, symmetric path) takes ~90 ms on one core and ~55 ms on two
(bench/bench_hermite.py; the pair loop is ~60% of it).  K
trades time against the accuracy at large variance.  Worst error over rho in [-1, 1] for a = b
(measured against a 900-term series):

    phi       a = b    K = 64   K = 128  K = 192
    tanh       1       6e-14    1e-16    6e-17
    tanh       3       2e-9     2e-12    2e-14
    tanh      10       1e-6     3e-8     2e-9
    erf       10       9e-7     4e-9     4e-11
    GELU      10       2e-8     3e-12    7e-15
    SiLU      10       1e-9     9e-13    4e-15
    softplus  10       2e-11    6e-15    2e-15

DEFAULT_K = 192 meets 1e-8 for tanh up to a = 10.  The pair loop drops trailing coefficients
that are negligible for every row (Cauchy-Schwarz bound below eps ||phi||_max ||psi||_max;
e.g. GELU with a <= 1 keeps 47 of 192), so a large K costs only where it is needed.
"""
import functools
import math

import numpy as np
from numba import prange

from .cache import njit

__all__ = [
    "DEFAULT_K", "hermite_grid", "hermite_projection", "series_coefficients", "parity_tails", "row_series",
    "pair_expectation", "diag_expectation", "expect_pair_numpy",
]

DEFAULT_K = 192

_EPS = np.finfo(np.float64).eps
# Caps the geometric ratio of a tail model: a vanishing last kept coefficient (an accidental zero
# of an oscillating sequence) would otherwise give r = 1 and a zero denominator at rho = +-1.
# Any cap keeps the same-row value at rho = +-1 exact.
_RATIO_CAP = 1.0 - 1.0 / 1024.0
# Rounding floor of the error estimate, in units of K eps ||phi|| ||psi|| (the rounding measured is
# <= 0.2 of it; 2.0 made the estimates of smooth kernels 100-350x their real error, issue 16).
_FLOOR = 0.5
# Uncertainty of a parity tail T from parity_tails, in units of eps E[phi^2].
_TAIL_ALLOWANCE = 64.0
# Tile of the pair loop: _ROWS rows share every load of a column coefficient, and the
# _ROWS x _COLS accumulators and correlations stay in L1.
_ROWS = 8
_COLS = 128
_MIRROR = 64

# Rows of the packed per-row parameter array (shape (_NPAR, N)) passed to the kernels.
_INV_SD, _AMP_F, _Q_F, _AMP_S, _Q_S, _BOUND_F, _BOUND_S, _NORM = range(8)
_NPAR = 8

_JIT = dict(cache=True, error_model='numpy', fastmath={'contract'})


def hermite_grid(h=0.02, zmax=12.0):
    """Nodes and weights with sum_g w_g f(z_g) ~= E f(z), z ~ N(0, 1).

    z_g = g h for g = -n..n (n = round(zmax / h)) and w_g = h exp(-z_g^2 / 2) / sqrt(2 pi): the
    trapezoid rule on [-zmax, zmax] with the Gaussian density folded into the weights.

    Why not Gauss-Hermite: for an integrand analytic in the strip |Im z| < d and decaying on R,
    the trapezoid rule converges like exp(-2 pi d / h), with no dependence on the polynomial
    degree; one grid integrates every He_k (k up to a few hundred) times phi(sqrt(a) z) for
    every variance a at once.  Gauss-Hermite with q nodes is exact only up to degree 2q - 1 in
    He_k phi, so it needs q > K nodes and a new node set per accuracy target, and for the steep
    phi(sqrt(a) z) of large a it converges slowly.  h = 0.02 resolves tanh, GELU and SiLU of
    sqrt(a) z to rounding for a up to ~100 (tanh: poles at distance d = pi / (2 sqrt(a)) from
    the real axis); h = 0.04 suffices up to a ~ 30 at half the cost.
    zmax = 12: by Cramer's inequality |He_k(z)| <= 1.09 sqrt(k!) exp(z^2 / 4), so the
    integrand of c_k beyond |z| = 12 is below 1.09 exp(-36) / sqrt(2 pi) |phi| ~ 1e-16 |phi|
    for every k: enough for bounded or polynomially growing phi; exponentially growing phi
    (exp(sqrt(a) z) loses ~1e-16 exp(12 sqrt(a))) needs a larger zmax.
    """
    if h <= 0.0 or zmax <= 0.0:
        raise ValueError("hermite_grid needs h > 0 and zmax > 0")
    n = int(round(zmax / h))
    z = h * np.arange(-n, n + 1, dtype=np.float64)
    w = (h / math.sqrt(2.0 * math.pi)) * np.exp(-0.5 * z * z)
    return z, w


def hermite_projection(z, w, K):
    """B of shape (G, K) with B[g, k] = w_g He_k(z_g) / sqrt(k!), so F @ B gives coefficients.

    The normalised polynomials p_k = He_k / sqrt(k!) follow the three-term recurrence
    p_0 = 1, p_1 = z, p_{k+1} = (z p_k - sqrt(k) p_{k-1}) / sqrt(k + 1),
    which never forms k! (it overflows float64 beyond k = 170) nor He_k itself, and is stable in
    the forward direction for the dominant (oscillating) solution.
    """
    z = np.asarray(z, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if z.ndim != 1 or z.shape != w.shape:
        raise ValueError("z and w must be 1-D arrays of the same length")
    if K < 1:
        raise ValueError("K must be >= 1")
    B = np.empty((z.size, K), dtype=np.float64)
    prev = np.zeros_like(z)
    cur = np.ones_like(z)
    B[:, 0] = w
    for k in range(1, K):
        prev, cur = cur, (z * cur - math.sqrt(k - 1) * prev) / math.sqrt(k)
        B[:, k] = w * cur
    return B


def series_coefficients(fvals, B):
    """C (N, K) with C[i, k] = sum_g fvals[i, g] B[g, k] ~= E[phi(sqrt(a_i) z) He_k(z)] / sqrt(k!)
    when fvals[i, g] = phi(sqrt(a_i) z_g).

    On a grid symmetric about 0 with a node at 0 (hermite_grid's), B[-g, k] = (-1)^k B[g, k], so
    C[:, even] = (F(z) + F(-z)) @ B[even] and C[:, odd] = (F(z) - F(-z)) @ B[odd] over the half
    grid z >= 0 (the node z = 0 once): half the flops of F @ B, and the coefficients of the
    parity an odd or even phi lacks come out exactly 0.  Other grids use F @ B.  The products
    run in a numba kernel rather than BLAS, whose results change with its thread count.
    """
    fvals = np.ascontiguousarray(fvals, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    N, G = fvals.shape
    if B.ndim != 2 or B.shape[0] != G:
        raise ValueError("fvals must have shape (N, G) with G = B.shape[0]")
    K = B.shape[1]
    C = np.empty((N, K))
    mid = G // 2
    symmetric = (G % 2 == 1 and K >= 2 and np.array_equal(B[::-1, 0], B[:, 0])
                 and np.array_equal(B[::-1, 1], -B[:, 1]))
    if not symmetric:
        _matmul_into(fvals, np.ascontiguousarray(B.T), C, 0, 1)
        return C
    even = np.empty((N, G - mid))
    odd = np.empty((N, G - mid))
    _fold(fvals, even, odd)
    _matmul_into(even, np.ascontiguousarray(B[mid:, 0::2].T), C, 0, 2)
    _matmul_into(odd, np.ascontiguousarray(B[mid:, 1::2].T), C, 1, 2)
    return C


@njit(parallel=True, **_JIT)
def _fold(fvals, even, odd):
    """even[i, g] = F[i, mid + g] + F[i, mid - g] (F[i, mid] for g = 0) and
    odd[i, g] = F[i, mid + g] - F[i, mid - g]: twice the parity parts on the half grid z >= 0,
    the node z = 0 counted once."""
    N, G = fvals.shape
    mid = G // 2
    for i in prange(N):
        even[i, 0] = fvals[i, mid]
        odd[i, 0] = 0.0
        for g in range(1, G - mid):
            right = fvals[i, mid + g]
            left = fvals[i, mid - g]
            even[i, g] = right + left
            odd[i, g] = right - left


@njit(parallel=True, cache=True, error_model='numpy', fastmath={'contract', 'reassoc'})
def _matmul_into(A, BT, C, col0, step):
    """C[i, col0 + step k] = sum_g A[i, g] BT[k, g], by tiles of 2 rows x 4 columns.

    'reassoc' lets LLVM vectorise the eight dot products over g; the summation order is fixed
    by the code, so every entry is the same whatever the number of threads.
    """
    N, G = A.shape
    K = BT.shape[0]
    for ib in prange((N + 1) // 2):
        i0 = 2 * ib
        i1 = min(i0 + 1, N - 1)
        for k0 in range(0, K, 4):
            k1 = min(k0 + 1, K - 1)
            k2 = min(k0 + 2, K - 1)
            k3 = min(k0 + 3, K - 1)
            s00 = s01 = s02 = s03 = 0.0
            s10 = s11 = s12 = s13 = 0.0
            for g in range(G):
                a0 = A[i0, g]
                a1 = A[i1, g]
                b0 = BT[k0, g]
                b1 = BT[k1, g]
                b2 = BT[k2, g]
                b3 = BT[k3, g]
                s00 += a0 * b0
                s01 += a0 * b1
                s02 += a0 * b2
                s03 += a0 * b3
                s10 += a1 * b0
                s11 += a1 * b1
                s12 += a1 * b2
                s13 += a1 * b3
            for i, t0, t1, t2, t3 in ((i0, s00, s01, s02, s03), (i1, s10, s11, s12, s13)):
                C[i, col0 + step * k0] = t0
                if k0 + 1 < K:
                    C[i, col0 + step * k1] = t1
                if k0 + 2 < K:
                    C[i, col0 + step * k2] = t2
                if k0 + 3 < K:
                    C[i, col0 + step * k3] = t3


@njit(parallel=True, **_JIT)
def _parity_energies(fvals, w, out):
    """out[i] = (sum_g w_g fe[i, g]^2, sum_g w_g fo[i, g]^2), fe and fo the even and odd parts of
    row i about the centre of the (symmetric, odd-length) grid.  Serial sums: thread-count
    independent."""
    N, G = fvals.shape
    mid = G // 2
    for i in prange(N):
        f0 = fvals[i, mid]
        se = w[mid] * f0 * f0
        so = 0.0
        for g in range(mid):
            right = fvals[i, G - 1 - g]
            left = fvals[i, g]
            fe = 0.5 * (right + left)
            fo = 0.5 * (right - left)
            se += 2.0 * w[g] * fe * fe
            so += 2.0 * w[g] * fo * fo
        out[i, 0] = se
        out[i, 1] = so


def parity_tails(fvals, w, C):
    """T (N, 2): the energy of the coefficients not in C, split by parity.

    T[i, 0] = E[phi_e(sqrt(a_i) z)^2] - sum_{k even < K} C[i, k]^2 = sum_{k even >= K} c_k^2 and
    T[i, 1] the same for the odd part; phi_e(x) = (phi(x) + phi(-x)) / 2, phi_o = phi - phi_e;
    the expectations are taken on the grid of w, which must be symmetric about 0.

    The difference of two O(E phi^2) numbers has an absolute rounding error of up to ~20 eps
    E[phi^2] (measured).  The tail correction uses sqrt(T1 T2), which would turn that noise into
    errors of ~sqrt(eps T2) for a fast-converging row paired with a slow one, so below the
    threshold 32 eps E[phi^2] the difference is replaced by the geometric extrapolation of the
    last two kept coefficients of that parity, c_l^2 q / (1 - q) with q = c_l^2 / c_{l-2}^2, capped
    at the threshold.  Either way the true tail is within 64 eps E[phi^2] of T, the allowance the
    error estimates of pair_expectation add.
    """
    fvals = np.ascontiguousarray(fvals, dtype=np.float64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    N, G = fvals.shape
    K = C.shape[1]
    if w.shape != (G,) or C.shape[0] != N or K < 4:
        raise ValueError("fvals (N, G), w (G,) and C (N, K >= 4) do not match")
    if G % 2 == 0 or not np.array_equal(w, w[::-1]):
        raise ValueError("parity_tails needs a grid symmetric about 0 with a node at 0")
    E = np.empty((N, 2))
    _parity_energies(fvals, w, E)
    C2 = C * C
    threshold = 32.0 * _EPS * (E[:, 0] + E[:, 1])
    T = np.empty((N, 2))
    for parity in range(2):
        kept = C2[:, parity::2]
        T[:, parity] = E[:, parity] - kept.sum(axis=1)
        last, before = kept[:, -1], kept[:, -2]
        q = np.minimum(np.divide(last, before, out=np.zeros(N), where=before > 0.0), _RATIO_CAP)
        extrapolated = np.minimum(last * q / (1.0 - q), threshold)
        T[:, parity] = np.where(T[:, parity] < threshold, extrapolated, T[:, parity])
    return T


def _effective_order(C1, T1, C2, T2):
    """Smallest K' <= K (K' >= 4) whose dropped coefficients are negligible for every pair.

    sum_{k >= K'} |c_k d_k| <= sqrt(S1(K') S2(K')) with S(K') = sum_{k >= K'} c_k^2 (Cauchy-
    Schwarz); K' is accepted when max_i sqrt(S1_i) max_j sqrt(S2_j) <= eps max ||phi|| max ||psi||,
    i.e. below the rounding of the largest entry.
    """
    K = C1.shape[1]

    def suffix_max(C, T):
        # S[:, k] = sum_{l >= k} C[:, l]^2 + T_e + T_o, maximised over rows.
        if C.shape[0] == 0:
            return np.zeros(K + 1)
        # Built transposed (K + 1, N): the running sum then runs along the slow axis, one
        # contiguous row at a time, instead of a strided walk per row.
        S = np.empty((K + 1, C.shape[0]))
        S[K] = T[:, 0] + T[:, 1]
        Q = (C * C).T
        for k in range(K - 1, -1, -1):
            np.add(S[k + 1], Q[k], out=S[k])
        return S.max(axis=1)

    S1 = suffix_max(C1, T1)
    S2 = S1 if C2 is C1 and T2 is T1 else suffix_max(C2, T2)
    limit = (_EPS * _EPS) * S1[0] * S2[0]
    ok = np.nonzero(S1 * S2 <= limit)[0]
    return K if ok.size == 0 else max(int(ok[0]), 4)


def _truncate(C, T, Kp):
    """Coefficients and parity tails of the same rows truncated to Kp < K terms."""
    if Kp == C.shape[1]:
        return C, T
    Cd = C[:, Kp:]
    first = Kp % 2  # parity of column Kp of C
    T = T.copy()
    T[:, first] += (Cd[:, 0::2] ** 2).sum(axis=1)
    T[:, 1 - first] += (Cd[:, 1::2] ** 2).sum(axis=1)
    return np.ascontiguousarray(C[:, :Kp]), T


def _row_parameters(C, T, var):
    """Packed per-row parameters (_NPAR, N) of the pair kernels; see the module docstring.

    For the parity of K ("f", first discarded index K) and of K + 1 ("s", first index K + 1):
    amplitude sign(c_last) sqrt(T (1 - r)), ratio root sqrt(r), bound sqrt(T + u), with
    r = min(T / (T + c_last^2), cap), c_last the last kept coefficient of that parity and
    u = 64 eps ||phi||^2 the rounding allowance of T.
    Also 1 / sqrt(var) (0 for var <= 0: degenerate rows meet every column at rho = 0) and
    ||phi|| = sqrt(sum_k c_k^2 + T_e + T_o).
    """
    N, K = C.shape
    P = np.empty((_NPAR, N), dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    pos = var > 0.0
    P[_INV_SD] = np.where(pos, 1.0 / np.sqrt(np.where(pos, var, 1.0)), 0.0)
    energy = (C * C).sum(axis=1) + T[:, 0] + T[:, 1]
    P[_NORM] = np.sqrt(energy)
    allowance = _TAIL_ALLOWANCE * _EPS * energy
    for first, amp, q, bound in ((K, _AMP_F, _Q_F, _BOUND_F), (K + 1, _AMP_S, _Q_S, _BOUND_S)):
        tail = T[:, first % 2]
        last = C[:, first - 2]
        total = tail + last * last
        r = np.minimum(np.divide(tail, total, out=np.zeros(N), where=total > 0.0), _RATIO_CAP)
        P[amp] = np.where(last < 0.0, -1.0, 1.0) * np.sqrt(tail * (1.0 - r))
        P[q] = np.sqrt(r)
        P[bound] = np.sqrt(tail + allowance)
    return P


@njit(parallel=True, **_JIT)
def _pairs(C1, C2T, P1, P2, cov, out, err, want_err, floor, lower):
    """out[i, j] (and err[i, j] if want_err) for all pairs, or for j <= i only if lower.

    Per tile of _ROWS rows x _COLS columns: acc = rho^K (tail_f + rho tail_s) +
    sum_{k<K} C1[i, k] C2[j, k] rho^k by Horner, started from the tail correction so that no
    power of rho is formed; then, for err, |rho|^K by binary powering (the bit pattern of K is
    shared by all lanes).  Padding rows of the last block repeat row N1 - 1 and are not stored.
    In lower mode row block b has ~b column tiles, so each parallel iteration takes blocks p and
    nblocks - 1 - p to even out the work; the diagonal tiles also fill a few j > i entries,
    which the mirror overwrites.  (One monolithic loop nest: splitting the tile into a helper
    function, even inlined, stopped LLVM from vectorising the Horner loop.)
    """
    N1, K = C1.shape
    N2 = C2T.shape[1]
    nblocks = (N1 + _ROWS - 1) // _ROWS
    niter = (nblocks + 1) // 2 if lower else nblocks
    for p in prange(niter):
        rho = np.empty((_ROWS, _COLS))
        acc = np.empty((_ROWS, _COLS))
        cbuf = np.empty((4, _ROWS))
        dbuf = np.empty((4, _COLS))
        for half in range(2):
            # p may be typed unsigned by the parfor lowering; int64 keeps the index arithmetic
            # integral (mixed signed/unsigned arithmetic is float64 in numba).
            b = np.int64(p) if half == 0 else nblocks - 1 - np.int64(p)
            if half == 1 and (not lower or b == p):
                break
            i0 = b * _ROWS
            m = min(_ROWS, N1 - i0)
            jend = i0 + m if lower else N2
            ntiles = (jend + _COLS - 1) // _COLS
            for jt in range(ntiles):
                j0 = jt * _COLS
                n = min(_COLS, jend - j0)
                for r in range(_ROWS):
                    i = min(i0 + r, N1 - 1)
                    s1 = P1[_INV_SD, i]
                    af1 = P1[_AMP_F, i]
                    qf1 = P1[_Q_F, i]
                    as1 = P1[_AMP_S, i]
                    qs1 = P1[_Q_S, i]
                    for t in range(n):
                        j = j0 + t
                        x = min(max(cov[i, j] * s1 * P2[_INV_SD, j], -1.0), 1.0)
                        x2 = x * x
                        rho[r, t] = x
                        acc[r, t] = (af1 * P2[_AMP_F, j] / (1.0 - qf1 * P2[_Q_F, j] * x2)
                                     + x * (as1 * P2[_AMP_S, j] / (1.0 - qs1 * P2[_Q_S, j] * x2)))
                # Four Horner steps per pass over the tile: one load and one store of acc
                # per four terms (the loop is bound by these memory operations).
                k = K - 1
                while k >= 3:
                    for u in range(4):
                        for r in range(_ROWS):
                            cbuf[u, r] = C1[min(i0 + r, N1 - 1), k - u]
                        for t in range(n):
                            dbuf[u, t] = C2T[k - u, j0 + t]
                    for r in range(_ROWS):
                        c0 = cbuf[0, r]
                        c1 = cbuf[1, r]
                        c2 = cbuf[2, r]
                        c3 = cbuf[3, r]
                        for t in range(n):
                            x = rho[r, t]
                            y = acc[r, t] * x + c0 * dbuf[0, t]
                            y = y * x + c1 * dbuf[1, t]
                            y = y * x + c2 * dbuf[2, t]
                            acc[r, t] = y * x + c3 * dbuf[3, t]
                    k -= 4
                while k >= 0:
                    for r in range(_ROWS):
                        c0 = C1[min(i0 + r, N1 - 1), k]
                        for t in range(n):
                            acc[r, t] = acc[r, t] * rho[r, t] + c0 * C2T[k, j0 + t]
                    k -= 1
                for r in range(m):
                    for t in range(n):
                        out[i0 + r, j0 + t] = acc[r, t]
                if want_err:
                    base = dbuf[0]
                    for r in range(m):
                        for t in range(n):
                            base[t] = abs(rho[r, t])
                            acc[r, t] = 1.0
                        e = K
                        while e > 0:
                            if e & 1:
                                for t in range(n):
                                    acc[r, t] *= base[t]
                            for t in range(n):
                                base[t] *= base[t]
                            e >>= 1
                        i = i0 + r
                        bf1 = P1[_BOUND_F, i]
                        bs1 = P1[_BOUND_S, i]
                        n1 = P1[_NORM, i]
                        for t in range(n):
                            j = j0 + t
                            err[i, j] = (acc[r, t] * (bf1 * P2[_BOUND_F, j]
                                                      + abs(rho[r, t]) * bs1 * P2[_BOUND_S, j])
                                         + floor * n1 * P2[_NORM, j])


@njit(parallel=True, **_JIT)
def _mirror_lower(a):
    """a[i, j] = a[j, i] for all j > i, by square tiles (row blocks paired as in _pairs)."""
    N = a.shape[0]
    nb = (N + _MIRROR - 1) // _MIRROR
    for p in prange((nb + 1) // 2):
        for half in range(2):
            ib = np.int64(p) if half == 0 else nb - 1 - np.int64(p)
            if half == 1 and ib == p:
                break
            i0 = ib * _MIRROR
            i1 = min(N, i0 + _MIRROR)
            for jb in range(ib, nb):
                j0 = jb * _MIRROR
                j1 = min(N, j0 + _MIRROR)
                for i in range(i0, i1):
                    for j in range(max(j0, i + 1), j1):
                        a[i, j] = a[j, i]


def _check_rows(C, T, var, name):
    if C.ndim != 2 or T.shape != (C.shape[0], 2) or np.shape(var) != (C.shape[0],):
        raise ValueError(f"{name}: C must be (N, K), T (N, 2) and the variances (N,)")


def _output(arr, shape, name):
    if arr is None:
        return np.empty(shape, dtype=np.float64)
    if arr.shape != shape or arr.dtype != np.float64 or not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous float64 array of shape {shape}")
    return arr


def pair_expectation(C1, C2, T1, T2, a, b, cov, out=None, err=None):
    """out[i, j] ~= E[phi(u_i) psi(v_j)], (u_i, v_j) ~ N(0, [[a_i, cov_ij], [cov_ij, b_j]]).

    out[i, j] = sum_{k<K'} C1[i, k] C2[j, k] rho_ij^k + tail correction (module docstring),
    rho_ij = cov[i, j] / sqrt(a_i b_j) clamped to [-1, 1]; rho_ij = 0 when a_i <= 0 or b_j <= 0,
    which leaves C1[i, 0] C2[j, 0] = phi(0) E psi(v_j) (or its mirror).  K' <= K drops trailing
    coefficients negligible for every row (see _effective_order).  If err (an (N1, N2) float64
    array) is given it receives the error estimate of the module docstring.

    When C1 is C2, T1 is T2 and a is b (one set of rows, phi = psi), only the lower triangle of
    cov is read, half of the pairs are computed and the result is exactly symmetric.
    Parallel over rows (numba); every entry is computed by the same operations whatever the
    number of threads, so results do not depend on it.  Returns out.
    """
    symmetric = C2 is C1 and T2 is T1 and b is a
    C1 = np.ascontiguousarray(C1, dtype=np.float64)
    C2 = C1 if symmetric else np.ascontiguousarray(C2, dtype=np.float64)
    _check_rows(C1, T1, a, "rows")
    _check_rows(C2, T2, b, "columns")
    if C1.shape[1] != C2.shape[1] or C1.shape[1] < 4:
        raise ValueError("C1 and C2 need the same number K >= 4 of coefficients")
    shape = (C1.shape[0], C2.shape[0])
    cov = np.ascontiguousarray(cov, dtype=np.float64)
    if cov.shape != shape:
        raise ValueError(f"cov must have shape {shape}")
    out = _output(out, shape, "out")
    want_err = err is not None
    err_arr = _output(err, shape, "err") if want_err else np.empty((0, 0))

    Kp = _effective_order(C1, T1, C2, T2)
    C1, T1 = _truncate(C1, T1, Kp)
    P1 = _row_parameters(C1, T1, a)
    if symmetric:
        C2, P2 = C1, P1
    else:
        C2, T2 = _truncate(C2, T2, Kp)
        P2 = _row_parameters(C2, T2, b)
    C2T = np.ascontiguousarray(C2.T)
    floor = _FLOOR * Kp * _EPS
    _pairs(C1, C2T, P1, P2, cov, out, err_arr, want_err, floor, symmetric)
    if symmetric:
        _mirror_lower(out)
        if want_err:
            _mirror_lower(err_arr)
    return out


def diag_expectation(C1, C2, T1, T2, err=None):
    """E[phi(u_i) psi(u_i)], u_i ~ N(0, a_i), from the coefficients of the same rows (rho = 1).

    values[i] = sum_{k<K} C1[i, k] C2[i, k] + A1f A2f / (1 - Q1f Q2f) + A1s A2s / (1 - Q1s Q2s),
    the same tail model as pair_expectation at rho = 1 (exact when C1 is C2: the discarded
    energy T_e + T_o).  err, if given (shape (N,)), receives
    sqrt((T1e + u1)(T2e + u2)) + sqrt((T1o + u1)(T2o + u2)) + K eps ||phi|| ||psi|| / 2, with the
    allowance u = 64 eps ||phi||^2 for the rounding of T (see parity_tails).
    """
    C1 = np.asarray(C1, dtype=np.float64)
    C2 = np.asarray(C2, dtype=np.float64)
    if C1.shape != C2.shape or C1.ndim != 2 or C1.shape[1] < 4:
        raise ValueError("C1 and C2 must both be (N, K) with K >= 4")
    if T1.shape != (C1.shape[0], 2) or T2.shape != (C1.shape[0], 2):
        raise ValueError("T1 and T2 must be (N, 2)")
    ones = np.ones(C1.shape[0])
    P1 = _row_parameters(C1, T1, ones)
    P2 = P1 if C2 is C1 and T2 is T1 else _row_parameters(C2, T2, ones)
    values = (C1 * C2).sum(axis=1)
    for amp, q in ((_AMP_F, _Q_F), (_AMP_S, _Q_S)):
        values += P1[amp] * P2[amp] / (1.0 - P1[q] * P2[q])
    if err is not None:
        err[...] = (P1[_BOUND_F] * P2[_BOUND_F] + P1[_BOUND_S] * P2[_BOUND_S]
                    + _FLOOR * C1.shape[1] * _EPS * P1[_NORM] * P2[_NORM])
    return values


def _row_series(f, var, z, w, B):
    """Coefficients and parity tails of the rows phi(sqrt(var_i) z) for a numpy callable f."""
    sd = np.sqrt(np.maximum(np.asarray(var, dtype=np.float64), 0.0))
    F = np.asarray(f(sd[:, None] * z[None, :]), dtype=np.float64)
    C = series_coefficients(F, B)
    return C, parity_tails(F, w, C)


# The trapezoid step of the coefficient grid by the largest variance of the rows: the error
# exp(-2 pi d / h) (hermite_grid) with the singularities of tanh, GELU and SiLU of sqrt(a) z at
# distance d ~ pi / (2 sqrt(a)) stays at rounding level with h = 0.04 up to a = 25 (d = 0.31), and
# with h = 0.02 up to a ~ 100.  The coarse grid halves the cost of the coefficients.
COARSE_STEP, FINE_STEP, COARSE_MAX_VARIANCE = 0.04, 0.02, 25.0
# Beyond this variance the fine grid no longer resolves tanh of sqrt(a) z (d = 0.16 = 8 h): callers
# integrate such rows by quadrature instead.
MAX_VARIANCE = 100.0


def row_series(f, var, K=DEFAULT_K, zmax=12.0):
    """(C, T): coefficients c_k(var_i) (N, K) and parity tails (N, 2) of the rows
    phi(sqrt(var_i) z), f a numpy-vectorised phi, on the trapezoid grid chosen by max var."""
    var = np.asarray(var, dtype=np.float64)
    h = COARSE_STEP if var.size == 0 or float(np.max(var)) <= COARSE_MAX_VARIANCE else FINE_STEP
    z, w, B = _projection(h, zmax, K)
    return _row_series(f, var, z, w, B)


@functools.lru_cache(maxsize=8)
def _projection(h, zmax, K):
    """hermite_grid(h, zmax) and its hermite_projection, computed once per (h, zmax, K)."""
    z, w = hermite_grid(h, zmax)
    B = hermite_projection(z, w, K)
    for arr in (z, w, B):
        arr.flags.writeable = False
    return z, w, B


def expect_pair_numpy(phi, psi, a, b, cov, K=DEFAULT_K, h=None, zmax=12.0):
    """(values, errors) of E[phi(u_i) psi(v_j)] for all pairs, phi and psi numpy-vectorised.

    a (N1,), b (N2,) variances, cov (N1, N2) covariances; the whole pipeline of this module on
    hermite_grid(h, zmax) with K coefficients (h None: chosen by the variances, see row_series).
    Passing psi is phi and b is a selects the symmetric path (lower triangle of cov read,
    symmetric result).
    """
    symmetric = psi is phi and b is a
    a = np.asarray(a, dtype=np.float64)
    b = a if symmetric else np.asarray(b, dtype=np.float64)

    def rows(f, var):
        if h is None:
            return row_series(f, var, K, zmax)
        z, w, B = _projection(h, zmax, K)
        return _row_series(f, var, z, w, B)

    C1, T1 = rows(phi, a)
    C2, T2 = (C1, T1) if symmetric else rows(psi, b)
    cov = np.asarray(cov, dtype=np.float64)
    err = np.empty((a.size, b.size))
    values = pair_expectation(C1, C2, T1, T2, a, b, cov, err=err)
    return values, err
