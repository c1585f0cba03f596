"""The MLP NNGP + NTK program and its layer recursion written out by hand, shared by the tests and
the benchmarks (bench/ imports this module) as the independent truth for tensorprog's results."""
import numpy as np


def mlp_program(phi, L, sw2, sb2, data):
    """A depth-L MLP over the inputs ``data`` (the text after ``data X =``: an inline list or a
    load(...)), biases, forward and explicit backward pass; outputs NNGP[i, j] and NTK[i, j]."""
    return f"""
const L = {L}, sw2 = {sw2}, sb2 = {sb2}
data X = {data}
matrix W[l] ~ N(0, sw2/n) for l in 2..L
vector b[l] ~ N(0, sb2) for l in 2..L
vector g[1][i] ~ N(0, sw2 * dot(X[i], X[i']) / dim(X) + sb2)
vector v ~ N(0, sw2)
for l in 2..L: g[l][i] = W[l] @ {phi}(g[l-1][i]) + b[l]
dg[L][i] = v * {phi}'(g[L][i])
for l in reversed(1..L-1): dg[l][i] = {phi}'(g[l][i]) * (W[l+1].T @ dg[l+1][i])
out NNGP[i, j] = sw2 * mean({phi}(g[L][i]) * {phi}(g[L][j])) + sb2
out NTK[i, j] = (sw2 * mean({phi}(g[L][i]) * {phi}(g[L][j])) + sb2
                 + sum(mean(dg[l][i] * dg[l][j]) * (sw2 * mean({phi}(g[l-1][i]) * {phi}(g[l-1][j])) + sb2)
                       for l in 2..L)
                 + mean(dg[1][i] * dg[1][j]) * (sw2 * dot(X[i], X[j]) / dim(X) + sb2))
"""


def ntk_mlp_program(phi, L, sw2, sb2, data, biases=True, rates=None):
    """The forward network of :func:`mlp_program` with `param`s and ``ntk(f[i], f[j])`` instead of the
    hand-written backward pass (docs/ntk.md); ``rates``: {'W', 'b', 'in', 'v'} -> rate expression text."""
    r = rates or {}

    def p(kind):
        return f"param(rate = {r[kind]})" if kind in r else "param"
    bias = sb2 if biases else 0
    return f"""
const L = {L}, sw2 = {sw2}, sb2 = {bias}
data X = {data}
{p('W')} matrix W[l] ~ N(0, sw2/n) for l in 2..L
""" + (f"{p('b')} vector b[l] ~ N(0, sb2) for l in 2..L\n" if biases else "") + f"""
{p('in')} vector g[1][i] ~ N(0, sw2 * dot(X[i], X[i']) / dim(X){' + sb2' if biases else ''})
{p('v')} vector v ~ N(0, sw2)
for l in 2..L: g[l][i] = W[l] @ {phi}(g[l-1][i]){' + b[l]' if biases else ''}
f[i] = mean(v * {phi}(g[L][i]))
out NNGP[i, j] = sw2 * mean({phi}(g[L][i]) * {phi}(g[L][j])) + sb2
out NTK[i, j] = ntk(f[i], f[j]) + sb2
"""


def inline_data(points):
    """``points`` (an array of rows) as the literal of a data declaration."""
    return "[" + ", ".join("[" + ", ".join(repr(float(v)) for v in r) + "]" for r in points) + "]"


def on_pairs(f, S):
    """The matrix f(S_pp, S_qq, S_pq) over all pairs of a covariance matrix S (f of three scalars)."""
    n = len(S)
    return np.array([[f(S[p, p], S[q, q], S[p, q]) for q in range(n)] for p in range(n)])


def mlp_recursion(kernels, X, L, sw2, sb2):
    """Sigma^1 = sw2 <x, x'>/d + sb2; Sigma^{l+1} = sw2 E[phi phi](Sigma^l) + sb2;
    P^L = sw2 E[phi' phi'](Sigma^L), P^l = sw2 P^{l+1} E[phi' phi'](Sigma^l);
    NTK = Sigma^{L+1} + sum_{l=1}^{L} P^l Sigma^l.
    ``kernels(S)`` returns the matrices (E[phi phi], E[phi' phi']) for a covariance matrix S.
    Returns (NNGP, NTK)."""
    S = [None, sw2 * X @ X.T / X.shape[1] + sb2]
    D = {}
    for l in range(1, L + 1):
        k, D[l] = kernels(S[l])
        S.append(sw2 * k + sb2)
    P = sw2 * D[L]
    ntk = S[L + 1] + P * S[L]
    for l in range(L - 1, 0, -1):
        P = sw2 * P * D[l]
        ntk += P * S[l]
    return S[L + 1], ntk
