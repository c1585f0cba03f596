"""Predictions of infinitely wide networks from their kernels (NNGP posterior, NTK gradient flow).

Notation: ``X`` the n training points with labels ``Y`` (n x k; one column per output, e.g. one-hot
classes), ``x`` the m test points; ``K`` the NNGP kernel, ``Θ`` the NTK; ``K_XX`` the train/train
block, ``K_xX`` test/train, ``K_xx`` test/test.  ``σ²`` is a diagonal noise (observation noise for the
posterior; for gradient flow the ridge ``Θ_XX + σ² I``, i.e. gradient flow on the loss
``½|f(X) - Y|² + ½σ²|w - w₀|²`` linearised).

NNGP posterior (Bayesian inference with the infinite network)::

    mean = K_xX (K_XX + σ² I)⁻¹ Y
    cov  = K_xx − K_xX (K_XX + σ² I)⁻¹ K_Xx

Gradient flow with learning rate η on the squared loss ½|f(X) − Y|², for the linearised network
(Lee et al. 2019, eqs. 15–16), with ``A(t) = Θ_xX Θ_XX⁻¹ (I − e^{−η Θ_XX t})``::

    mean(t) = A(t) Y
    cov(t)  = K_xx + A(t) K_XX A(t)ᵀ − (A(t) K_Xx + K_xX A(t)ᵀ)

At t = 0 the mean is the prior mean 0 and the covariance the prior K_xx; at t = ∞
``A = Θ_xX Θ_XX⁻¹`` (kernel regression: on the training points mean(∞) = Y).  With ``Θ = K`` (only
the readout layer trained) the same formulas give the NNGP gradient flow, whose t = ∞ limit is the
noiseless NNGP posterior mean.

All linear algebra is float64: the posterior by Cholesky, gradient flow by the eigendecomposition
``Θ_XX = V diag(λ) Vᵀ``, ``Θ⁻¹(I − e^{−ηΘt}) = V diag(−expm1(−ηλt)/λ) Vᵀ`` (bounded by ηt, so finite
times are well defined even for a singular kernel).  A singular train kernel (duplicate points) at
t = ∞ or in the noiseless posterior is an error naming the condition number, unless a noise or a
regulariser ``diag_reg`` (added as ``diag_reg · mean(diag Θ_XX)`` to the diagonal, with a warning) is given.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .errors import error

#: above this condition number the train kernel is treated as singular
SINGULAR_CONDITION = 1e12
#: above this condition number a warning is given (predictions lose digits)
WARN_CONDITION = 1e8


class IllConditionedKernelWarning(UserWarning):
    """The train kernel is badly conditioned; predictions may have lost accuracy."""


def _fail(message):
    return error(None, message)


def as_labels(y, n_train):
    """Labels as an n x k float64 array (a vector becomes one column); checks length and NaNs."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise _fail(f"labels must be a vector or a matrix (points x outputs), got an array of shape {y.shape}")
    if y.shape[0] != n_train:
        raise _fail(f"{y.shape[0]} labels for {n_train} training points: the numbers must match")
    if not np.all(np.isfinite(y)):
        bad = int(np.argwhere(~np.isfinite(y))[0][0])
        raise _fail(f"the labels contain NaN or infinite values (first at training point {bad})")
    return y


def _check_kernel(name, k, shape):
    k = np.asarray(k, dtype=np.float64)
    if k.shape != shape:
        raise _fail(f"kernel {name} has shape {k.shape}, expected {shape}")
    if not np.all(np.isfinite(k)):
        raise _fail(f"kernel {name} contains NaN or infinite values")
    return k


def parse_times(times):
    """Training times as floats (``inf`` allowed); a single number becomes a list of one."""
    if np.isscalar(times):
        times = [times]
    out = []
    for t in times:
        t = float(t)
        if math.isnan(t) or t < 0:
            raise _fail(f"training times must be >= 0 (or inf), got {t}")
        out.append(t)
    return out


def condition_number(eigenvalues):
    """λ_max / λ_min of a symmetric PSD matrix from its eigenvalues (inf when λ_min <= 0)."""
    lmax, lmin = float(np.max(eigenvalues)), float(np.min(eigenvalues))
    return math.inf if lmin <= 0 else lmax / lmin


def _regularised(k_train, noise, diag_reg):
    """k_train + (σ² + diag_reg · mean diag) I, and a note of what was added."""
    if noise < 0 or (diag_reg is not None and diag_reg < 0):
        raise _fail("noise and diag_reg must be >= 0")
    k = k_train.copy()
    k[np.diag_indices_from(k)] += noise
    if diag_reg:
        k[np.diag_indices_from(k)] += diag_reg * float(np.mean(np.diag(k_train)))
    return k


def _singular_message(what, cond):
    return (f"the train {what} kernel is singular (condition number {cond:.3g}; duplicate training points?): "
            "pass a noise > 0 or a regulariser diag_reg > 0")


def _warn_conditioning(what, cond, regularised):
    if cond > WARN_CONDITION:
        extra = " after regularisation" if regularised else ""
        warnings.warn(f"the train {what} kernel is badly conditioned{extra} (condition number {cond:.3g}); "
                      "predictions may have lost accuracy", IllConditionedKernelWarning, stacklevel=3)


def nngp_posterior(k_train, k_test_train, k_test, y_train, noise=0.0, diag_reg=None):
    """NNGP posterior mean K_xX (K_XX + σ²I)⁻¹ Y (m x k) and covariance K_xx − K_xX (K_XX + σ²I)⁻¹ K_Xx (m x m).

    ``k_test`` may be None (then the covariance is None).
    """
    import scipy.linalg  # lazily: `import tensorprog` stays fast

    n = np.shape(k_train)[0]
    k_train = _check_kernel("K(train, train)", k_train, (n, n))
    m = np.shape(k_test_train)[0]
    k_test_train = _check_kernel("K(test, train)", k_test_train, (m, n))
    y = as_labels(y_train, n)
    k = _regularised(k_train, noise, diag_reg)
    eig = scipy.linalg.eigvalsh(k)
    cond = condition_number(eig)
    if cond > SINGULAR_CONDITION:
        raise _fail(_singular_message("NNGP", cond))
    _warn_conditioning("NNGP", cond, bool(noise or diag_reg))
    factor = scipy.linalg.cho_factor(k, lower=True)
    mean = k_test_train @ scipy.linalg.cho_solve(factor, y)
    cov = None
    if k_test is not None:
        k_test = _check_kernel("K(test, test)", k_test, (m, m))
        cov = k_test - k_test_train @ scipy.linalg.cho_solve(factor, k_test_train.T)
        cov = 0.5 * (cov + cov.T)
    return mean, cov


@dataclass
class FlowPrediction:
    """Gradient-flow predictions at the given times: ``mean[i]`` (m x k) and ``cov[i]`` (m x m or None)."""

    times: list
    mean: list
    cov: list = field(default_factory=list)
    condition: float = math.nan
    eigen: tuple = field(default=None, repr=False)   # (λ, V) of the (regularised) train kernel


def gradient_flow(ntk_train, ntk_test_train, y_train, times, learning_rate=1.0, nngp=None, noise=0.0,
                  diag_reg=None, eig=None):
    """Mean (and, given ``nngp = (K_XX, K_xX, K_xx)``, covariance) of the gradient-flow ensemble.

    mean(t) = Θ_xX Θ⁻¹ (I − e^{−ηΘt}) Y,
    cov(t)  = K_xx + A K_XX Aᵀ − (A K_Xx + K_xX Aᵀ),  A = Θ_xX Θ⁻¹ (I − e^{−ηΘt})
    with Θ = Θ_XX + (σ² + diag_reg · mean diag Θ_XX) I.  ``eig``: the eigendecomposition (λ, V) of
    that Θ when the caller has it (one per train kernel). Returns a :class:`FlowPrediction`.
    """
    import scipy.linalg

    n = np.shape(ntk_train)[0]
    theta = _check_kernel("NTK(train, train)", ntk_train, (n, n))
    m = np.shape(ntk_test_train)[0]
    theta_xX = _check_kernel("NTK(test, train)", ntk_test_train, (m, n))
    y = as_labels(y_train, n)
    times = parse_times(times)
    if not learning_rate > 0:
        raise _fail(f"the learning rate must be > 0, got {learning_rate}")
    theta = _regularised(theta, noise, diag_reg)
    lam, vec = scipy.linalg.eigh(theta) if eig is None else eig
    cond = condition_number(lam)
    if math.inf in times:
        if cond > SINGULAR_CONDITION:
            raise _fail(_singular_message("NTK", cond))
        _warn_conditioning("NTK", cond, bool(noise or diag_reg))
    if nngp is not None:
        k_train = _check_kernel("K(train, train)", nngp[0], (n, n))
        k_test_train = _check_kernel("K(test, train)", nngp[1], (m, n))
        k_test = _check_kernel("K(test, test)", nngp[2], (m, m))
    # rows of Θ_xX V and Vᵀ Y, reused for every time
    theta_xV = theta_xX @ vec
    vty = vec.T @ y
    out = FlowPrediction(times=times, mean=[], cov=[], condition=cond, eigen=(lam, vec))
    for t in times:
        if t == math.inf:
            g = 1.0 / lam
        else:
            # (1 − e^{−ηλt})/λ without cancellation; → ηt for λ → 0
            with np.errstate(divide="ignore", invalid="ignore"):
                g = np.where(np.abs(lam) * learning_rate * t > 1e-300,
                             -np.expm1(-learning_rate * lam * t) / np.where(lam == 0, 1.0, lam),
                             learning_rate * t)
        out.mean.append(theta_xV @ (g[:, None] * vty))   # A(t) Y, A(t) = Θ_xX V diag(g) Vᵀ
        if nngp is not None:
            a = (theta_xV * g) @ vec.T
            cross = a @ k_test_train.T
            cov = k_test + a @ k_train @ a.T - (cross + cross.T)
            out.cov.append(0.5 * (cov + cov.T))
        else:
            out.cov.append(None)
    return out


def mse(prediction, labels):
    """Mean over points and outputs of (prediction − label)²."""
    return float(np.mean((np.asarray(prediction) - np.asarray(labels, dtype=np.float64).reshape(
        np.shape(prediction))) ** 2))


def is_one_hot(labels):
    y = np.asarray(labels)
    return y.ndim == 2 and y.shape[1] > 1 and np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)


def accuracy(prediction, labels):
    """Fraction of points whose largest predicted output is the labelled class (one-hot labels)."""
    return float(np.mean(np.argmax(prediction, axis=1) == np.argmax(labels, axis=1)))
