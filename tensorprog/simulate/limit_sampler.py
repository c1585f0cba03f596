"""Monte Carlo of the Master Theorem: samples of every vector's limit Z, without deriving integrals.

The symbolic limit (limit/derive.py) writes each Moment as an integral over the Gaussian atoms it
depends on; after a few unrolled training steps those integrands have thousands of nodes and the
derivation, not the integration, is what a user waits for.  This interpretation (the ``SAMPLE_LIMIT``
rule table, one rule per op) computes the same limit by sampling: M iid draws of the whole random
vector (Z^x)_x of the Master Theorem (THEORY §3), built instruction by instruction like a finite-width
run whose "coordinates" are the draws:

* initial vectors: drawn from their Gaussian block, as in a simulation; scalars at their n -> oo limit;
* ``W x``: Zhat^{Wx} is drawn from the Gaussian law of W's group given the group's earlier draws
  (Cov(Zhat^{Wx}, Zhat^{Wy}) = s E[Z^x Z^y], s = sigma^2, or sigma^2 rho for W^T), i.e.
  Zhat_new = C_no C_oo^+ Zhat_old + (C_nn - C_no C_oo^+ C_on)^{1/2} xi with xi ~ N(0, I) fresh;
  then Z^{Wx} = Zhat^{Wx} + s sum_k Z^{y_k} E[dZ^x / dZhat_k] over the partner group (W^T y_k), the
  expected derivatives by Stein's lemma: E[grad_G f] = C_G^+ E[G f] for the partner group G ~ N(0, C_G),
  independent of every other atom f depends on;
* Nonlin, Moment, scalar functions: evaluated on the draws (a Moment is the mean over draws).

Every expectation is a sample mean, so each result is consistent as M -> oo, with a bias O(1/M) from
the estimated covariances and derivatives (nested estimates).  The standard error comes from R
independent replicates of M draws (streams SeedSequence([seed, M, r])): value = mean over replicates,
error = std / sqrt(R).
"""
from __future__ import annotations

import sys
from collections import Counter

import numpy as np
import sympy
from threadpoolctl import threadpool_limits

from ..errors import error
from ..progress import Progress
from ..ir.core import WIDTH, InitMatrix, Kind
from ..ops.registry import SAMPLE_LIMIT
from .simulator import Simulator, psd_factor

__all__ = ["LimitSampler", "sample_limit", "GaussianGroup"]


def _pinv(cov):
    """Moore-Penrose pseudo-inverse of a symmetric PSD matrix (directions below 1e-10 of the largest dropped)."""
    lam, vec = np.linalg.eigh(0.5 * (cov + cov.T))
    keep = lam > 1e-10 * max(lam[-1], 1e-300) if lam.size else lam > 0
    return (vec[:, keep] / lam[keep]) @ vec[:, keep].T


class GaussianGroup:
    """The draws of one Gaussian group Zhat^{W x_1}, Zhat^{W x_2}, ... (one matrix, one orientation).

    ``x`` (K, M): the draws of the inputs Z^{x_k}; ``g`` (K, M): of Zhat^{W x_k}; ``scale`` s: the
    group's covariance is s E[Z^x Z^y], estimated by s X X^T / M (``gram`` = X X^T / M, kept up to date).
    """

    def __init__(self, scale):
        self.scale = float(scale)
        self.x = self.g = self.gram = None
        self._inverse = None

    def _cov_inverse(self):
        if self._inverse is None:
            self._inverse = _pinv(self.scale * self.gram)
        return self._inverse

    def draw(self, x, rng):
        """Zhat^{W x} for the rows of x (P, M): the conditional Gaussian given the group's earlier draws."""
        m = x.shape[1]
        own = (x @ x.T) / m
        c_nn = self.scale * own
        mean = np.zeros_like(x)
        cross = None
        if self.x is not None:
            cross = (x @ self.x.T) / m                                  # E[x x_old], (P, K)
            a = (self.scale * cross) @ self._cov_inverse()              # C_no C_oo^+
            mean = a @ self.g
            c_nn = c_nn - a @ (self.scale * cross.T)
        factor = psd_factor(0.5 * (c_nn + c_nn.T))[1]
        out = mean + factor @ rng.standard_normal((factor.shape[1], m))
        if self.x is None:
            self.x, self.g, self.gram = x, out, own
        else:
            self.x, self.g = np.concatenate([self.x, x]), np.concatenate([self.g, out])
            self.gram = np.block([[self.gram, cross.T], [cross, own]])
        self._inverse = None
        return out

    def stein_combination(self, z):
        """sum_k Z^{x_k} E[dZ / dZhat_k] for the rows of z (P, M), E[grad] = C^+ E[Zhat Z] (Stein's lemma)."""
        if self.x is None:
            return np.zeros_like(z)
        coef = self._cov_inverse() @ ((self.g @ z.T) / z.shape[1])      # (K, P)
        return coef.T @ self.x


class LimitSampler(Simulator):
    """A program prepared for sampling its limit: ``run(samples, seed, replicate)`` gives one replicate."""

    table = SAMPLE_LIMIT

    def __init__(self, program):
        super().__init__(program)
        from ..ops.init import sigma2_of
        self.sigma2 = {ins.out.id: sigma2_of(ins) for ins in self.instructions if isinstance(ins, InitMatrix)}
        self.groups = {}

    def sizes(self, width):
        # Every vector, whatever its width ratio, has one coordinate per draw; no matrix is stored.
        return {ins.out.id: int(width) if ins.out.kind == Kind.VECTOR else (0, 0)
                for ins in self.instructions if ins.out.kind in (Kind.VECTOR, Kind.MATRIX)}

    def _at_width(self, expr, width):
        """A width expression's limit as n -> oo (a scalar that diverges is refused)."""
        key = (expr, "limit")
        if key not in self._numbers:
            expr = sympy.sympify(expr)
            lim = sympy.limit(expr, WIDTH, sympy.oo) if expr.has(WIDTH) else expr
            if not (lim.is_finite and lim.is_real):
                raise error(None, f"the scalar {sympy.sstr(expr)} has no finite limit as n -> oo")
            self._numbers[key] = float(lim)
        return self._numbers[key]

    def group(self, matrix, transposed):
        """W's group (W^T's when ``transposed``), with its covariance scale (ops/matmul.py group_scale)."""
        from ..ops.matmul import group_scale
        key = (matrix.id, transposed)
        if key not in self.groups:
            self.groups[key] = GaussianGroup(float(group_scale(self.sigma2[matrix.id], matrix, transposed)))
        return self.groups[key]

    def run(self, width, seed=0, seed_index=0, keep_all=False, pool=None):
        self.groups = {}
        return super().run(width, seed, seed_index, keep_all=keep_all, pool=pool)


#: Default draws in total (each draw runs the whole program: 2^18 gives standard errors ~1e-3 on O(1) outputs).
DEFAULT_DRAWS = 1 << 18


def sample_limit(program, samples=DEFAULT_DRAWS, replicates=16, seed=0, progress=None):
    """The limit of every output by sampling the Master Theorem's Z: :class:`Results` with value = the
    mean of ``replicates`` independent estimates of ``samples // replicates`` draws each and error =
    their standard error.  ``program``: a Program, a path or program text.  ``progress``: True for a
    summary line (instructions, draws, memory) and a progress bar with its time estimate on stderr."""
    from ..numeric.results import OutputResult, Results
    if int(replicates) != replicates or replicates < 2:
        raise error(None, f"replicates must be an integer >= 2 (a standard error needs two), got {replicates}")
    per = int(samples) // int(replicates)
    if per < 2:
        raise error(None, f"{samples} samples cannot be split into {replicates} replicates of >= 2 draws")
    sampler = LimitSampler(program)
    need = sampler.check_memory(per)
    if progress:
        counts = Counter(type(ins).__name__ for ins in sampler.instructions)
        print(f"sampling the limit: {len(sampler.instructions)} instructions ("
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f"), {replicates} replicates x {per} "
              f"draws, about {need / 2 ** 20:.0f} MiB", file=sys.stderr)
    bar = progress if isinstance(progress, Progress) else Progress(replicates, enabled=bool(progress), name="sample")
    runs = []
    try:
        # The products here are small (a group's K rows by the draws): one BLAS thread is 3-10x faster
        # than several fighting over 2 cores.
        with threadpool_limits(1, user_api="blas"):
            for r in range(int(replicates)):
                runs.append(sampler.run(per, seed, r))
                bar.advance(1, f"replicate {r + 1}/{replicates}")
    finally:
        if not isinstance(progress, Progress):
            bar.close()
    label = f"sampled Master Theorem ({replicates} x {per} draws)"
    outputs = {}
    for o in sampler.program.outputs:
        stack = np.stack([run[o.name] for run in runs])
        value = stack.mean(axis=0)
        if not np.all(np.isfinite(value)):
            raise error(None, f"output '{o.name}': the sampled limit is not finite")
        outputs[o.name] = OutputResult(o.name, value, stack.std(axis=0, ddof=1) / np.sqrt(len(runs)), label, o)
    return Results(outputs)
