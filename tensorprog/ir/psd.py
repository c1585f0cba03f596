"""Positive semi-definiteness of a (large) covariance matrix without an N^3 factorisation.

A data family's covariance is usually built from a Gram matrix of d-dimensional points,
e.g. ``sw2 * dot(X[i], X[i']) / d + sb2``: numerically of rank <= d + 1, far below N.  For such a
matrix a *certificate* costs O(N^2 r) with r the numerical rank:

* Q = orth(C Omega) for a Gaussian probe Omega with r columns (randomized range finder),
  B = Q^T C Q (r x r), R = C - Q B Q^T.
* Weyl's inequality: lambda_min(C) >= lambda_min(B) - ||R||_2 >= lambda_min(B) - ||R||_F,
  because C = Q B Q^T + R and lambda_min(Q B Q^T) >= min(lambda_min(B), 0).
* Cauchy interlacing: lambda_min(C) <= lambda_min(B) (B is a compression of C), so a clearly
  negative lambda_min(B) proves that C is not PSD.

Both bounds are rigorous up to floating-point rounding of the products (relative ~1e-15 * r).
The rank is doubled until R is small (tolerance ``tol``) or r would exceed n / 8; only a
covariance of high numerical rank falls back to a dense test (the caller's choice).
"""

from __future__ import annotations

import numpy as np


def low_rank_min_eigenvalue_bounds(C: np.ndarray, tol: float, rank0: int = 32, seed: int = 0):
    """(lower, upper) bounds on lambda_min(C) of a symmetric C, or None when C is not of low rank.

    ``lower = lambda_min(B) - ||C - Q B Q^T||_F`` (Weyl) and ``upper = lambda_min(B)`` (interlacing),
    returned once ``||C - Q B Q^T||_F <= tol`` or ``lambda_min(B) < -tol`` with r <= n / 8 columns.
    """
    n = C.shape[0]
    rng = np.random.default_rng(seed)  # fixed seed: the same answer on every run
    r = min(rank0, n)
    while r <= max(n // 8, 1):
        Q, _ = np.linalg.qr(C @ rng.standard_normal((n, r)))
        CQ = C @ Q
        B = Q.T @ CQ
        B = (B + B.T) / 2
        lam_b = float(np.linalg.eigvalsh(B)[0])
        if lam_b < -tol:
            return -np.inf, lam_b
        # R = C - Q B Q^T, its Frobenius norm accumulated by row blocks (no second N x N array).
        resid2 = 0.0
        step = max(1, 2 ** 19 // max(n, 1))     # 4 MiB blocks: a front-end thread's malloc arena keeps what it frees
        QB = Q @ B
        for s in range(0, n, step):
            blk = C[s:s + step] - QB[s:s + step] @ Q.T
            resid2 += float(np.einsum("ij,ij->", blk, blk))
        resid = resid2 ** 0.5
        if resid <= tol:
            return lam_b - resid, lam_b
        r *= 2
    return None


# Tables certified positive semi-definite by construction (frontend/terms.py: a Gram matrix
# dot(X[i], X[i']) of one set of points, combined by non-negative scaling, sums and Schur products
# with other such tables and non-negative constants), by the id of the array that owns their memory,
# with a weak reference that confirms it is the same live array. Data tables are never written in
# place, so the certificate stays true while the array lives.
_CERTIFIED = {}


def _owner(arr):
    while isinstance(arr.base, np.ndarray):
        arr = arr.base
    return arr


def certify(arr):
    """Record that ``arr`` (a square table, as laid out) is PSD by construction."""
    import weakref

    owner = _owner(arr)
    for k in [k for k, (ref, _) in _CERTIFIED.items() if ref() is None]:
        del _CERTIFIED[k]
    _CERTIFIED[id(owner)] = (weakref.ref(owner), arr.shape)


def is_certified(C) -> bool:
    """Whether the square matrix ``C`` is a whole certified table (same memory, same size)."""
    owner = _owner(C)
    hit = _CERTIFIED.get(id(owner))
    return (hit is not None and hit[0]() is owner and C.ndim == 2 and C.shape[0] == C.shape[1]
            and C.size == owner.size and C.flags.c_contiguous and owner.flags.c_contiguous)


def psd_by_construction(formula) -> bool:
    """Whether a data formula (frontend/terms.py's key: (op, left key, left tags, right key, right
    tags), tags numbered by first appearance) is a PSD matrix over its two tags (0, 1):
    dot(X[i], X[i']) of one X; c * P, P * c, P / c, P + c, c + P with a number c >= 0 (> 0 to divide);
    P + Q and P * Q (Schur product) of two such matrices."""
    if not isinstance(formula, tuple) or len(formula) != 5 or formula[0] not in ("dot", "+", "*", "/"):
        return False
    op, ka, ta, kb, tb = formula
    if op == "dot":
        return ta == (0,) and tb == (1,) and ka == kb and ka[0] == "id"

    def psd(k, t):
        return t == (0, 1) and psd_by_construction(k)

    def number(k, t):
        if t != () or not isinstance(k, tuple) or k[0] != "v" or k[2] != ():
            return None
        return float(np.frombuffer(k[3], dtype=np.dtype(k[1]))[0])

    ca, cb = number(ka, ta), number(kb, tb)
    if op == "/":
        return psd(ka, ta) and cb is not None and cb > 0
    if op == "*" and ((ca is not None and ca >= 0 and psd(kb, tb)) or (cb is not None and cb >= 0 and psd(ka, ta))):
        return True
    if op == "+" and ((ca is not None and ca >= 0 and psd(kb, tb)) or (cb is not None and cb >= 0 and psd(ka, ta))):
        return True
    return op in ("+", "*") and psd(ka, ta) and psd(kb, tb)
