"""Finite-width networks in plain numpy with hand-written backprop (no tensorprog), for checking
infinite-width NTKs against the empirical NTK of actual networks (issue 11, "What it must show").

NTK parametrization: every trained parameter is a standard normal tensor theta ~ N(0, 1) times a
fixed multiplier, all trained with unit learning rate, so the empirical NTK is

    Theta(x_i, x_j) = sum_theta  <df(x_i)/dtheta, df(x_j)/dtheta>.

Gradients are kept in factored form.  For a parameter theta of shape (a, b) (vectors: b = 1)

    df(x_i)/dtheta = c * sum_k  L_k[i] (outer) R_k[i]                                          (*)

(c the multiplier, k over the uses of theta: the time steps of a weight-shared matrix, or one use),
so that its NTK term is c^2 sum_{k,k'} (L_k L_k'^T) o (R_k R_k'^T) (o the entrywise product) and the
full Jacobian is never formed (width 4096 would make it n^2 numbers per input).  The same factors
give directional derivatives <df/dtheta, u> and, at small width, the full Jacobian, which the tests
compare with central finite differences of the forward pass: the independent truth for the backprop.

Networks (conventions of examples/mlp_ntk.tp and examples/rnn_ntk.tp, see their header comments):

* MLP: g1 = sqrt(sw2/d) W1 x + sqrt(sb2) b1,  g_l = sqrt(sw2/n) W_l phi(g_{l-1}) + sqrt(sb2) b_l
  (l = 2..L),  f = sqrt(sw2/n) v . phi(g_L) + sqrt(sb2) b_out;  trained: W1, b_l, W_l, v, b_out.
* RNN: g_t = sqrt(sw2/n) W h_{t-1} + sqrt(su2/d) U x_t + sqrt(sb2) b,  h_t = relu(g_t),  h_0 = 0;
  f_last = sqrt(sv2/n) v . h_T,  f_pool = sqrt(sv2/n) v . (1/T) sum_t h_t;  trained: W, U, b, v
  (W, U, b shared over time: their gradients are sums over the steps, backprop through time).
"""
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

ACTIVATIONS = {
    # name: (phi, phi')
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "erf": (erf, lambda x: 2.0 / np.sqrt(np.pi) * np.exp(-x * x)),
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
}


@dataclass
class Gradient:
    """df(x_i)/dtheta = multiplier * sum_k left[k, i] (outer) right[k, i] for every input i, as in (*).
    left: (K, N, a), right: (K, N, b); theta has a * b entries (row-major (a, b))."""
    name: str
    multiplier: float
    left: np.ndarray
    right: np.ndarray

    def ntk(self):
        """c^2 sum_{k,k'} (L_k L_k'^T) o (R_k R_k'^T): this parameter's N x N share of Theta."""
        K, N, _ = self.left.shape
        left, right = self.left.reshape(K * N, -1), self.right.reshape(K * N, -1)
        gram = (left @ left.T) * (right @ right.T)              # (k i), (k' j) blocks
        return self.multiplier ** 2 * gram.reshape(K, N, K, N).sum(axis=(0, 2))

    def directional(self, u):
        """<df(x_i)/dtheta, u> for a direction u with theta's shape, for every input i."""
        u = np.reshape(u, (self.left.shape[2], self.right.shape[2]))
        return self.multiplier * np.einsum("kia,ab,kib->i", self.left, u, self.right)

    def jacobian(self):
        """The full N x (a*b) Jacobian (small widths only)."""
        J = np.einsum("kia,kib->iab", self.left, self.right)
        return self.multiplier * J.reshape(J.shape[0], -1)


def _ones(N):
    return np.ones((1, N, 1))


def ntk_from_gradients(grads):
    """Theta = sum over the trained parameters of their terms (unit learning rate each)."""
    return sum(g.ntk() for g in grads)


# ------------------------------------------------------------------ MLP

def mlp_parameters(d, L, width, rng):
    """Standard normal parameters of the MLP, in a fixed order."""
    p = {"W1": rng.standard_normal((width, d)), "b1": rng.standard_normal(width)}
    for l in range(2, L + 1):
        p[f"W{l}"] = rng.standard_normal((width, width))
        p[f"b{l}"] = rng.standard_normal(width)
    p["v"] = rng.standard_normal(width)
    p["b_out"] = rng.standard_normal(1)
    return p


def mlp_forward(params, X, L, sw2, sb2, phi="relu"):
    """Outputs f (N,) and the pre-activations g_1..g_L (each N x n)."""
    act = ACTIVATIONS[phi][0]
    d = X.shape[1]
    n = params["W1"].shape[0]
    gs = [np.sqrt(sw2 / d) * X @ params["W1"].T + np.sqrt(sb2) * params["b1"]]
    for l in range(2, L + 1):
        gs.append(np.sqrt(sw2 / n) * act(gs[-1]) @ params[f"W{l}"].T + np.sqrt(sb2) * params[f"b{l}"])
    f = np.sqrt(sw2 / n) * act(gs[-1]) @ params["v"] + np.sqrt(sb2) * params["b_out"][0]
    return f, gs


def mlp_gradients(params, X, L, sw2, sb2, phi="relu"):
    """Backprop: delta_L = sqrt(sw2/n) v o phi'(g_L), delta_{l-1} = phi'(g_{l-1}) o (delta_l sqrt(sw2/n) W_l)
    (delta_l[i] = df(x_i)/dg_l); dW_l = sqrt(sw2/n) delta_l (outer) phi(g_{l-1}), db_l = sqrt(sb2) delta_l,
    dW1 = sqrt(sw2/d) delta_1 (outer) x, dv = sqrt(sw2/n) phi(g_L), db_out = sqrt(sb2).
    Returns (f, [Gradient, ...]) in the order of mlp_parameters."""
    act, dact = ACTIVATIONS[phi]
    N, d = X.shape
    n = params["W1"].shape[0]
    f, gs = mlp_forward(params, X, L, sw2, sb2, phi)
    c = np.sqrt(sw2 / n)
    deltas = {L: c * params["v"] * dact(gs[L - 1])}
    for l in range(L, 1, -1):
        deltas[l - 1] = dact(gs[l - 2]) * (c * deltas[l] @ params[f"W{l}"])
    grads = [Gradient("W1", np.sqrt(sw2 / d), deltas[1][None], X[None]),
             Gradient("b1", np.sqrt(sb2), deltas[1][None], _ones(N))]
    for l in range(2, L + 1):
        grads.append(Gradient(f"W{l}", c, deltas[l][None], act(gs[l - 2])[None]))
        grads.append(Gradient(f"b{l}", np.sqrt(sb2), deltas[l][None], _ones(N)))
    grads.append(Gradient("v", c, act(gs[L - 1])[None], _ones(N)))
    grads.append(Gradient("b_out", np.sqrt(sb2), _ones(N), _ones(N)))
    return f, grads


def mlp_empirical_ntk(X, L, sw2, sb2, width, rng, phi="relu"):
    """The N x N empirical NTK of one MLP draw of the given width (parameters drawn from rng)."""
    params = mlp_parameters(X.shape[1], L, width, rng)
    return ntk_from_gradients(mlp_gradients(params, X, L, sw2, sb2, phi)[1])


# ------------------------------------------------------------------ RNN

def rnn_parameters(d, width, rng):
    """Standard normal parameters of the RNN, in a fixed order."""
    return {"W": rng.standard_normal((width, width)), "U": rng.standard_normal((width, d)),
            "b": rng.standard_normal(width), "v": rng.standard_normal(width)}


def rnn_forward(params, S, sw2, su2, sb2, sv2, readout="last"):
    """S: (N, T, d) sequences.  Outputs f (N,) and the pre-activations g_1..g_T stacked (T, N, n)."""
    N, T, d = S.shape
    n = params["W"].shape[0]
    h = np.zeros((N, n))
    gs = []
    for t in range(T):
        g = (np.sqrt(sw2 / n) * h @ params["W"].T + np.sqrt(su2 / d) * S[:, t] @ params["U"].T
             + np.sqrt(sb2) * params["b"])
        gs.append(g)
        h = np.maximum(g, 0.0)
    gs = np.array(gs)
    y = _rnn_readout_input(np.maximum(gs, 0.0), readout)
    return np.sqrt(sv2 / n) * y @ params["v"], gs


def _rnn_readout_input(hs, readout):
    if readout == "last":
        return hs[-1]
    if readout == "pool":
        return hs.mean(axis=0)
    raise ValueError(f"readout must be 'last' or 'pool', not {readout!r}")


def rnn_gradients(params, S, sw2, su2, sb2, sv2, readout="last"):
    """Backprop through time.  With r = sqrt(sv2/n) v the readout's direct gradient per step
    (last: r at t = T only; pool: r/T at every t) and delta_t[i] = df(x_i)/dg_t:
        delta_T = relu'(g_T) o r_T,  delta_t = relu'(g_t) o (r_t + delta_{t+1} sqrt(sw2/n) W);
    dW = sqrt(sw2/n) sum_{t>=2} delta_t (outer) h_{t-1},  dU = sqrt(su2/d) sum_t delta_t (outer) x_t,
    db = sqrt(sb2) sum_t delta_t,  dv = sqrt(sv2/n) y (y = h_T or the mean of the h_t).
    Returns (f, [Gradient, ...]) in the order of rnn_parameters."""
    N, T, d = S.shape
    n = params["W"].shape[0]
    f, gs = rnn_forward(params, S, sw2, su2, sb2, sv2, readout)
    hs = np.maximum(gs, 0.0)
    r = np.sqrt(sv2 / n) * params["v"]
    direct = [r / T] * T if readout == "pool" else [0.0] * (T - 1) + [r]
    cw = np.sqrt(sw2 / n)
    deltas = np.empty_like(gs)
    upstream = np.zeros((N, n))                     # df/dh_t through g_{t+1}
    for t in range(T - 1, -1, -1):
        deltas[t] = (gs[t] > 0) * (direct[t] + upstream)
        upstream = cw * deltas[t] @ params["W"]
    ones = np.ones((T, N, 1))
    grads = [Gradient("W", cw, deltas[1:], hs[:-1]),
             Gradient("U", np.sqrt(su2 / d), deltas, np.swapaxes(S, 0, 1)),
             Gradient("b", np.sqrt(sb2), deltas, ones),
             Gradient("v", np.sqrt(sv2 / n), _rnn_readout_input(hs, readout)[None], _ones(N))]
    return f, grads


def rnn_empirical_ntk(S, T, sw2, su2, sb2, sv2, width, rng, readout="last"):
    """The N x N empirical NTK of one RNN draw (S: (N, T, d) sequences of T tokens)."""
    if S.shape[1] != T:
        raise ValueError(f"sequences have {S.shape[1]} steps, T = {T}")
    params = rnn_parameters(S.shape[2], width, rng)
    return ntk_from_gradients(rnn_gradients(params, S, sw2, su2, sb2, sv2, readout)[1])
