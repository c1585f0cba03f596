"""Finite-width simulations against the infinite-width limit, over a sweep of widths.

For one output at width n, with S seeds giving samples y_s (arrays of the output's shape) and the
limit L (with error estimate e, 0 when unknown):

* RMS deviation  r = sqrt(m),  m = (1/S) sum_s q_s,  q_s = mean over entries of (y_s - L)^2.
  Its uncertainty is the delta method: se(r) = se(m) / (2 r), se(m) = std_s(q_s) / sqrt(S).
* mean over seeds ybar, its standard error se = std_s(y_s, ddof=1) / sqrt(S), and per entry
  z = (ybar - L) / sqrt(se^2 + e^2): the deviation of the mean in units of its uncertainty.
* Exponent: weighted least squares of log r = a + b log n with weights (r / se(r))^2; the
  uncertainty of b is the formal one, scaled by sqrt(chi^2 / dof) when the points scatter more
  than their errors say.  Fluctuations shrink like n^-1/2 (b = -1/2); the bias of the mean like n^-1.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import error
from ..progress import Progress
from .simulator import Simulator, simulate

__all__ = ["WidthPoint", "Convergence", "convergence", "fit_exponent", "resolve_limit"]


@dataclass
class WidthPoint:
    """Statistics of one output at one width (arrays have the output's shape)."""

    width: int
    rms: float
    rms_error: float
    mean: np.ndarray
    stderr: np.ndarray
    z: np.ndarray

    @property
    def max_abs_z(self) -> float:
        z = np.abs(np.asarray(self.z))
        return float(z.max()) if z.size else 0.0

    @property
    def worst(self) -> tuple:
        """Index of the entry with the largest |z|."""
        if np.ndim(self.z) == 0:
            return ()
        a = np.abs(np.asarray(self.z))
        return tuple(int(i) for i in np.unravel_index(np.argmax(np.where(np.isnan(a), -1.0, a)), a.shape))


@dataclass
class Convergence:
    """A width sweep: ``points[name]`` (one WidthPoint per width), ``exponents[name]`` = (b, se(b)),
    ``limit[name]`` / ``limit_error[name]`` arrays, and the Simulation of each width."""

    program_name: str
    widths: tuple
    seeds: int
    seed: int
    limit: dict
    limit_error: dict
    points: dict
    exponents: dict
    simulations: list = field(repr=False, default_factory=list)

    def table(self) -> str:
        """Per output and width: RMS deviation +- its uncertainty, max |z| over the entries (with
        the mean +- SE and the limit at that entry), then the fitted exponent."""
        lines = [f"program {self.program_name}: {self.seeds} seeds per width (seed {self.seed})"]
        for name, pts in self.points.items():
            shape = "x".join(map(str, np.shape(self.limit[name]))) or "scalar"
            lines.append(f"output {name} ({shape})")
            lines.append(f"  {'width':>7}  {'RMS deviation':>23}  {'max |z|':>8}  {'at':>10}  "
                         f"{'mean +- SE':>25}  {'limit':>12}")
            for p in pts:
                at = p.worst
                mean, se = np.asarray(p.mean)[at], np.asarray(p.stderr)[at]
                lim = np.asarray(self.limit[name])[at]
                where = "[" + ",".join(map(str, at)) + "]" if at else "-"
                lines.append(f"  {p.width:>7}  {p.rms:11.4e} +- {p.rms_error:8.2e}  {p.max_abs_z:8.2f}  "
                             f"{where:>10}  {mean:12.6g} +- {se:9.3g}  {lim:12.6g}")
            b, eb = self.exponents[name]
            lines.append(f"  RMS deviation ~ width^({b:.3f} +- {eb:.3f})" if np.isfinite(b)
                         else "  RMS deviation exponent: not available (need two widths and non-zero deviations)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Everything as plain lists and numbers (NaN and infinities as None): the ``--json`` output."""
        outs = {}
        for name, pts in self.points.items():
            b, eb = self.exponents[name]
            outs[name] = {
                "shape": list(np.shape(self.limit[name])),
                "limit": _plain(self.limit[name]),
                "limit_error": _plain(self.limit_error[name]),
                "exponent": _plain(b),
                "exponent_error": _plain(eb),
                "widths": [{"width": p.width, "rms": _plain(p.rms), "rms_error": _plain(p.rms_error),
                            "mean": _plain(p.mean), "stderr": _plain(p.stderr), "z": _plain(p.z),
                            "max_abs_z": _plain(p.max_abs_z)} for p in pts],
            }
        return {"program": self.program_name, "widths": list(self.widths), "seeds": self.seeds,
                "seed": self.seed, "outputs": outs}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def _plain(x):
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        v = float(a)
        return v if math.isfinite(v) else None
    return [_plain(r) for r in a]


def resolve_limit(program, limit):
    """(values, errors): name -> array of each output's shape.

    ``limit``: None (use ``tensorprog.evaluate(program)``), a mapping name -> array, or a mapping
    name -> object with ``.value`` and ``.error`` (what ``tensorprog.evaluate`` returns).
    """
    if limit is None:
        import tensorprog

        evaluate = getattr(tensorprog, "evaluate", None)
        if evaluate is None:
            raise error(None, "no limit given and tensorprog.evaluate is not available")
        limit = evaluate(program)
    values, errors = {}, {}
    for o in program.outputs:
        try:
            item = limit[o.name]
        except (KeyError, IndexError, TypeError):
            raise error(None, f"the limit has no value for output '{o.name}'") from None
        value = getattr(item, "value", item)
        err = getattr(item, "error", None)
        try:
            values[o.name] = np.broadcast_to(np.asarray(value, dtype=np.float64), o.array_shape).copy()
            errors[o.name] = (np.zeros(o.array_shape) if err is None else
                              np.broadcast_to(np.asarray(err, dtype=np.float64), o.array_shape).copy())
        except ValueError:
            raise error(None, f"the limit of '{o.name}' has shape {np.shape(value)}, expected "
                              f"{o.array_shape}") from None
    return values, errors


def width_point(samples, limit, limit_error, width) -> WidthPoint:
    """The statistics of one output at one width (see the module docstring)."""
    s = samples.shape[0]
    dev = samples - limit
    q = (dev ** 2).reshape(s, -1).mean(axis=1)
    m2 = q.mean()
    rms = math.sqrt(m2)
    se_m2 = q.std(ddof=1) / math.sqrt(s) if s > 1 else math.nan
    rms_error = se_m2 / (2 * rms) if rms > 0 else math.nan
    mean = samples.mean(axis=0)
    stderr = samples.std(axis=0, ddof=1) / math.sqrt(s) if s > 1 else np.full(samples.shape[1:], np.nan)
    sigma = np.sqrt(stderr ** 2 + limit_error ** 2)
    diff = mean - limit
    # A deterministic output (sigma = 0) is either exactly right (z = 0) or infinitely wrong.
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = np.where(diff == 0, 0.0, np.inf * np.sign(diff))
        z = np.where(sigma > 0, diff / np.where(sigma > 0, sigma, 1.0), exact)
    return WidthPoint(int(width), rms, rms_error, mean, stderr, z)


def fit_exponent(widths, rms, rms_error=None, correction=False) -> tuple:
    """(b, se(b)) of log rms = a + b log width (+ c width^-1/2 with ``correction`` and 4 or more widths:
    the leading finite-width correction of a Tensor Program's quantities, which otherwise biases a
    slope measured at small widths), by least squares weighted by (rms / rms_error)^2 when all errors
    are positive and finite, else unweighted; a weighted fit's variance is scaled by chi^2/dof when
    the points scatter more than their errors.  (nan, nan) with fewer than two usable points."""
    w = np.asarray(widths, dtype=np.float64)
    r = np.asarray(rms, dtype=np.float64)
    ok = (r > 0) & np.isfinite(r)
    if ok.sum() < 2 or not np.all(ok):
        return math.nan, math.nan
    x, y = np.log(w), np.log(r)
    sig = None if rms_error is None else np.asarray(rms_error, dtype=np.float64) / r
    weighted = sig is not None and np.all(np.isfinite(sig)) and np.all(sig > 0)
    wt = 1.0 / sig ** 2 if weighted else np.ones_like(x)
    X = np.stack([np.ones_like(x), x] + ([w ** -0.5] if correction and x.size >= 4 else []), axis=1)
    normal = X.T @ (X * wt[:, None])
    if np.linalg.cond(normal) > 1e14:
        return math.nan, math.nan
    cov = np.linalg.inv(normal)
    beta = cov @ (X.T @ (wt * y))
    dof = x.size - X.shape[1]
    chi2 = float(np.sum(wt * (y - X @ beta) ** 2))
    if weighted:
        var = cov[1, 1] * (max(1.0, chi2 / dof) if dof > 0 else 1.0)
    else:
        var = cov[1, 1] * chi2 / dof if dof > 0 else math.nan
    return float(beta[1]), math.sqrt(var)


def convergence(program, widths, seeds, limit=None, seed=0, progress=False, memory_limit=None) -> Convergence:
    """Simulate ``program`` at each width (``seeds`` runs each) and compare with the limit.

    ``program``: a Program, a path or program text; ``limit``: see :func:`resolve_limit`.
    Memory is checked for every width before any run starts.
    """
    sim = Simulator(program)
    program = sim.program
    widths = tuple(int(w) for w in widths)
    if not widths:
        raise error(None, "give at least one width")
    for w in widths:
        sim.check_memory(w, memory_limit)
    values, errors = resolve_limit(program, limit)
    bar = progress if isinstance(progress, Progress) else Progress(
        seeds * sum(float(w) ** 2 for w in widths), enabled=bool(progress), name="simulate")
    runs = []
    try:
        for w in widths:
            runs.append(simulate(program, w, seeds, seed, progress=bar, memory_limit=math.inf, simulator=sim))
    finally:
        bar.close()
    points = {o.name: [width_point(r.samples[o.name], values[o.name], errors[o.name], r.width) for r in runs]
              for o in program.outputs}
    exponents = {name: fit_exponent(widths, [p.rms for p in pts], [p.rms_error for p in pts])
                 for name, pts in points.items()}
    return Convergence(program.source.name, widths, int(seeds), int(seed), values, errors, points, exponents, runs)
