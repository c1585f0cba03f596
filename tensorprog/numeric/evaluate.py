"""Evaluate a limit program: every quantity as an array over its grid, with an error estimate.

The quantities of a :class:`~tensorprog.limit.program.LimitProgram` are evaluated in order:

* data: the arrays of the program's covariance specifications;
* expressions (closed forms, scalar arithmetic): pointwise over the grid -- fused into
  generated numba kernels for large grids (``fused.py``), numpy otherwise;
* integrals: per grid point Gaussian expectations (``integrals.py``: Hermite series,
  quadrature split at kinks, Monte Carlo);
* Stein coefficients: the pseudo-inverse solve C^+ E[Z f] per grid point.

Errors propagate to first order through expressions, err(f) = sum_k |df/dq_k| err(q_k);
an integral whose covariance carries an error inherits its largest relative input error.
A NaN or an infinity stops the evaluation with the program variable and line it belongs to.
"""
from __future__ import annotations

import time

import numpy as np
import sympy

from ..errors import TPError, error
from ..ir.core import Formals
from ..limit.symbols import INDEX, Data, Integral, SteinCoefficient, quantity_of, qrefs_in, symbols_in
from . import integrals as I
from .npfuncs import compile_numpy
from .results import OutputResult, Results

_R = Formals("_r")      # placeholder symbols, created on demand (no cap)


def _ref_symbols(n):
    """n distinct placeholder symbols (an NTK sum over L layers references ~3 L quantities)."""
    return tuple(_R[:n])
_U = sympy.Symbol("_u", real=True)
ROW_CACHE_BYTES = 256 << 20


class Evaluator:
    def __init__(self, limit, method="auto", samples=1 << 20, seed=0, backend="auto", progress=None):
        self.limit = limit
        self.method = method
        self.options = {"samples": samples, "seed": seed}
        self.backend = backend
        self.progress = progress
        self.values, self.errors, self.methods = {}, {}, {}
        self.timings = {}
        # Hermite coefficients by (function, variances): the diagonal E[phi(u_i)^2] and the pairs
        # E[phi(u_i) phi(u_j)] of one layer share the rows phi(sqrt(a_i) z).
        self._rows = {}

    # ------------------------------------------------------------------ arrays

    @staticmethod
    def shape(axes):
        return tuple(a.size for a in axes)

    def gather(self, ref, grid):
        """Value and error arrays of a quantity reference, broadcastable over ``grid`` (a shape).

        Distinct index symbols give a view (axes permuted, length-1 axes inserted); repeated
        symbols or fixed members use fancy indexing (a diagonal, a row).
        """
        q = quantity_of(ref)
        val, err = self.values[q], self.errors[q]
        if not ref.args:
            return val, err
        args = ref.args
        if all(a in INDEX for a in args) and len(set(args)) == len(args):
            pos = [INDEX.index(a) for a in args]
            order = sorted(range(len(pos)), key=lambda k: pos[k])
            shape = [1] * len(grid)
            for k in order:
                shape[pos[k]] = grid[pos[k]]

            def view(a):
                return np.transpose(a, order).reshape(shape) if np.ndim(a) else a
            return view(val), view(err)
        idx = []
        for a in args:
            if a.is_Integer:
                idx.append(int(a))
            else:
                p = INDEX.index(a)
                view = [1] * len(grid)
                view[p] = grid[p]
                idx.append(np.arange(grid[p]).reshape(view))
        idx = tuple(idx)
        return val[idx], (err[idx] if np.ndim(err) else err)

    def expr(self, expr, grid, full=True):
        """(value, error) of an expression of quantity references over ``grid``.

        ``full``: arrays of exactly that shape; otherwise arrays broadcastable to it (no copies),
        and the error may be the scalar 0.0.
        """
        expr = sympy.sympify(expr)
        if expr.is_number:
            v = complex(expr)
            if v.imag != 0:
                raise ValueError(f"complex value {expr}")
            return (np.full(grid, v.real), np.zeros(grid)) if full else (np.float64(v.real), 0.0)
        refs = sorted(qrefs_in(expr), key=sympy.default_sort_key)
        syms = _ref_symbols(len(refs))
        body = expr.xreplace(dict(zip(refs, syms)))
        # symbols by a walk over distinct nodes (sympy's free_symbols revisits shared subtrees: a
        # deep network's expressions made it quadratic); confirmed exactly before an error
        if symbols_in(body) - set(syms):
            extra = body.free_symbols - set(syms)
            if extra:
                raise ValueError(f"unexpected symbols {sorted(map(str, extra))} in {expr}")
        pairs = [self.gather(r, grid) for r in refs]
        args = [p[0] for p in pairs]
        with np.errstate(all="ignore"):
            val = np.asarray(compile_numpy(body, syms)(*args), dtype=float)
            err = 0.0
            for s_, (_, e) in zip(syms, pairs):
                if np.ndim(e) or e:
                    if np.any(e):
                        d = compile_numpy(sympy.diff(body, s_), syms)(*args)
                        err = err + np.abs(d) * e
        if full:
            return np.array(np.broadcast_to(val, grid)), np.array(np.broadcast_to(err, grid))
        return val, err

    # ------------------------------------------------------------------ one quantity

    def quantity(self, q):
        """Evaluate one quantity; any numerical failure is reported at the program line it comes from."""
        try:
            self._quantity(q)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
            name, pos = q.origin or (q.label, None)
            raise error(pos, f"cannot evaluate the limit of {name} ({self.limit.names.get(q, q.label)}): {e}") from None

    def _quantity(self, q):
        grid = self.shape(q.axes)
        d = q.definition
        if isinstance(d, Data):
            self.values[q], self.errors[q], self.methods[q] = np.asarray(d.array, float), 0.0, "data"
        elif isinstance(d, Integral):
            self.values[q], self.errors[q], self.methods[q] = self.integral(d, grid)
        elif isinstance(d, SteinCoefficient):
            self.values[q], self.errors[q] = self.stein(d, grid)
            self.methods[q] = "Stein"
        else:
            self.values[q], self.errors[q] = self.expr(d, grid)
            self.methods[q] = "closed form" if q.kind == "moment" else "arithmetic"
        self.check_finite(q)

    def integral(self, d, grid):
        """(value, error, method) of a Gaussian integral at every grid point.

        The error adds, to the integration error, the integral's largest relative input error
        (from covariances that are themselves estimates) times its value.
        """
        G = int(np.prod(grid, dtype=np.int64))
        info = {"series_ok": self._series_layout(d, grid) is not None and self._series_variances_ok(d, grid),
                "points": G}
        method = I.choose_method(d, info, self.method)
        if method == "series":
            val, err, rel_in = self._series(d, grid)
        else:
            mean, cov, rel_in = self._gaussian(d, grid)
            refs = I.Integrand(d.integrand, d.variables).refs
            params = np.empty((G, len(refs)))
            for k, r in enumerate(refs):
                params[:, k] = np.broadcast_to(self.gather(r, grid)[0], grid).ravel()
            options = dict(self.options, psd_slack=max(I.PSD_SLACK, 10.0 * float(np.max(rel_in))))
            val, err = I.integrate(d, mean, cov, params, method, options)
        val = val.reshape(grid)
        err = err.reshape(grid)
        if np.any(rel_in):
            err = err + np.abs(val) * np.broadcast_to(rel_in, grid)
        return val, err, I.METHOD_LABELS[method]

    def _gaussian(self, d, grid):
        """Means (G, d), covariances (G, d, d) and the inputs' relative error (a number)."""
        G = int(np.prod(grid, dtype=np.int64))
        dim = d.dim
        mean = np.empty((G, dim))
        cov = np.empty((G, dim, dim))
        rel_in = 0.0
        for p in range(dim):
            m, _ = self.expr(d.mean[p], grid, full=False)
            mean[:, p] = np.broadcast_to(m, grid).ravel()
            for r in range(p, dim):
                c, ce = self.expr(d.cov[p, r], grid, full=False)
                cov[:, p, r] = cov[:, r, p] = np.broadcast_to(c, grid).ravel()
                rel_in = np.maximum(rel_in, _relative(c, ce))
        return mean, cov, rel_in

    def _series_layout(self, d, grid):
        """How the Hermite series applies to E[f(u0) g(u1)] (zero means, smooth, no parameters).

        ("pair", f, g) when Var u0 depends only on i and Var u1 only on j (per-row coefficients,
        all pairs in one call), with the variables swapped if it is the other way round;
        ("point", f, g) otherwise (coefficients per grid point).  None if it does not apply.
        """
        if d.dim not in (1, 2) or any(m != 0 for m in d.mean):
            return None
        if d.dim == 1:
            parts = I.product_of_two(d.integrand, d.variables[0])
            return None if qrefs_in(d.integrand) else ("diag", *parts, False)
        parts = I.is_separable(d.integrand, d.variables)
        if parts is None or any(qrefs_in(p) for p in parts):
            return None
        f, g = parts
        if len(grid) == 2:
            a = {s for r in qrefs_in(d.cov[0, 0]) for s in r.args if s in INDEX}
            b = {s for r in qrefs_in(d.cov[1, 1]) for s in r.args if s in INDEX}
            if a <= {INDEX[0]} and b <= {INDEX[1]}:
                return "pair", f, g, False
            if a <= {INDEX[1]} and b <= {INDEX[0]}:
                return "pair", f, g, True
        return "point", f, g, False

    def _series(self, d, grid):
        """The Hermite series (``hermite.py``): per-row coefficients for pair grids, per point otherwise."""
        from .hermite import diag_expectation, pair_expectation

        layout, f, g, swap = self._series_layout(d, grid)
        if layout == "diag":
            a, ae = self.expr(d.cov[0, 0], grid, full=False)
            a = np.ascontiguousarray(np.broadcast_to(a, grid)).ravel()
            (C1, T1), (C2, T2) = self._row_series(f, d.variables[0], a), self._row_series(g, d.variables[0], a)
            err = np.empty(a.size)
            val = diag_expectation(C1, C2, T1, T2, err=err)
            return val, err, _relative(a, ae)
        u0, u1 = d.variables
        var0, var1 = (d.cov[1, 1], d.cov[0, 0]) if swap else (d.cov[0, 0], d.cov[1, 1])
        f0, f1 = (g.xreplace({u1: u0}), f) if swap else (f, g.xreplace({u1: u0}))
        a, ae = self.expr(var0, grid, full=False)
        b, be = self.expr(var1, grid, full=False)
        c, ce = self.expr(d.cov[0, 1], grid, full=False)
        rel_in = np.maximum(np.maximum(_relative(a, ae), _relative(b, be)), _relative(c, ce))
        if layout == "pair":
            a = np.broadcast_to(a, (grid[0], 1))[:, 0].copy()
            b = np.broadcast_to(b, (1, grid[1]))[0, :].copy()
            c = np.ascontiguousarray(np.broadcast_to(c, grid))
            C1, T1 = self._row_series(f0, u0, a)
            if f1 == f0 and np.array_equal(a, b):   # one set of rows: the symmetric path
                C2, T2, b = C1, T1, a
            else:
                C2, T2 = self._row_series(f1, u0, b)
            err = np.empty(c.shape)
            val = pair_expectation(C1, C2, T1, T2, a, b, c, err=err)
            return val.ravel(), err.ravel(), rel_in
        from .hermite import expect_pair_numpy

        phi = _vectorised(compile_numpy(f0, (u0,)))
        psi = phi if f1 == f0 else _vectorised(compile_numpy(f1, (u0,)))
        # Coefficients per grid point; the series is evaluated on diagonal blocks of the pair routine.
        a, b, c = (np.broadcast_to(x, grid).ravel() for x in (a, b, c))
        G = a.size
        val, err = np.empty(G), np.empty(G)
        block = 256
        for s0 in range(0, G, block):
            sl = slice(s0, min(G, s0 + block))
            n = sl.stop - sl.start
            cc = np.zeros((n, n))
            np.fill_diagonal(cc, c[sl])
            v, e = expect_pair_numpy(phi, psi, a[sl].copy(), b[sl].copy(), cc)
            val[sl], err[sl] = np.diag(v), np.diag(e)
        return val, err, rel_in

    def _series_variances_ok(self, d, grid):
        """The coefficient grid resolves phi(sqrt(a) z) only up to hermite.MAX_VARIANCE."""
        from .hermite import MAX_VARIANCE

        return all(float(np.max(self.expr(d.cov[k, k], grid, full=False)[0])) <= MAX_VARIANCE
                   for k in range(d.dim))

    def _row_series(self, f, u, var):
        """Hermite coefficients and parity tails of the rows f(sqrt(var_i) z) (hermite.row_series),
        computed once per function and variance array within a run."""
        from .hermite import row_series

        f = f.xreplace({u: _U})
        key = (f, var.shape, var.tobytes())
        if key not in self._rows:
            # Diagonals (small grids) are scheduled before the pairs of every layer: keep the rows
            # of many layers, within a memory budget (oldest dropped first).
            C, T = row_series(_vectorised(compile_numpy(f, (_U,))), var)
            while self._rows and sum(c.nbytes for c, _ in self._rows.values()) + C.nbytes > ROW_CACHE_BYTES:
                del self._rows[next(iter(self._rows))]
            self._rows[key] = C, T
        return self._rows[key]

    def stein(self, d, grid):
        """(C^+ m)_t per grid point: Stein's lemma E[d f / d Z_t] = sum_l (C^+)_{tl} E[Z_l f]."""
        k = d.cov.shape[0]
        G = int(np.prod(grid, dtype=np.int64))
        C = np.empty((G, k, k))
        m = np.empty((G, k))
        me = np.zeros((G, k))
        for p in range(k):
            v, e = self.expr(d.moments[p], grid)
            m[:, p], me[:, p] = v.ravel(), e.ravel()
            for r in range(k):
                C[:, p, r] = self.expr(d.cov[p, r], grid)[0].ravel()
        pinv = np.linalg.pinv(C, rcond=1e-10, hermitian=True)
        val = np.einsum("gj,gj->g", pinv[:, d.target, :], m)
        err = np.einsum("gj,gj->g", np.abs(pinv[:, d.target, :]), me)
        return val.reshape(grid), err.reshape(grid)

    def check_finite(self, q):
        """Stop with the program variable and line of a quantity that is NaN or infinite."""
        v = np.asarray(self.values[q])
        # One reduction pass: a sum is finite only if every entry is (barring overflow of a sum of
        # huge finite values, which the exact check below then clears).
        if np.isfinite(np.add.reduce(v, axis=None)) or np.all(np.isfinite(v)):
            return
        bad = tuple(int(x) for x in np.argwhere(~np.isfinite(v))[0]) if v.ndim else ()
        name, pos = q.origin or (q.label, None)
        where = f" at {bad}" if bad else ""
        raise error(pos, f"the limit of {name} is not finite{where}: {self.limit.names.get(q, q.label)} = "
                         f"{v[bad] if bad else v}")

    # ------------------------------------------------------------------ the whole program

    def run(self):
        """Evaluate every quantity (fused groups through generated kernels), then the outputs."""
        from .fused import FUSE_MIN_POINTS
        from .plan import KERNELS, execution_plan

        t0 = time.perf_counter()
        self.check_memory()
        min_points = {"auto": FUSE_MIN_POINTS, "numba": 0}.get(self.backend)
        plan = execution_plan(self.limit, min_points)
        bar = self._progress(len(plan.steps))
        pool = _BufferPool()
        for n, step in enumerate(plan.steps):
            if isinstance(step, KERNELS):
                self.kernel(step, pool)
                label = f"{len(step.members)} fused quantities"
            else:
                self.quantity(step)
                label = self.limit.names.get(step, step.label)
            for q in plan.last_use.get(n, ()):
                pool.give(self.values.pop(q, None))
                pool.give(self.errors.pop(q, None))
            if bar is not None:
                bar.advance(1, label)
        if bar is not None:
            bar.close()
        self.timings["quantities"] = time.perf_counter() - t0
        return self.outputs()

    def kernel(self, runner, pool):
        """Run a fused group or a tiled segment; check what it stored."""
        for q, (val, err) in runner.run(self.values, self.errors, alloc=pool.take).items():
            self.values[q], self.errors[q] = val, err
            pool.own(val, err)
        for q in runner.members:
            self.methods[q] = "closed form" if q.kind == "moment" else "arithmetic"
        try:
            for q in runner.members:
                if q in self.values:
                    self.check_finite(q)
        except TPError:
            from .tiled import Segment

            if isinstance(runner, Segment):
                self.locate_nonfinite(runner)
            raise

    def locate_nonfinite(self, segment):
        """A segment keeps most members in scratch rows: re-run its groups one by one storing every
        member, so that the error names the first quantity that is not finite."""
        from .fused import FusedKernel

        values = dict(self.values)
        for g in segment.groups:
            runner = FusedKernel(g, set(g.members), set(), self.limit.names)
            for q, (val, _) in runner.run(values, {}).items():
                values[q] = val
            for q in g.members:
                saved, self.values[q] = self.values.get(q), values[q]
                try:
                    self.check_finite(q)
                finally:
                    if saved is None:
                        del self.values[q]
                    else:
                        self.values[q] = saved

    def check_memory(self, limit=None):
        """Refuse before allocating when the evaluation's predicted peak (``footprint.py``: the arrays
        alive step by step, the buffer pool, each step's temporaries), less the arrays the program
        already holds, would not fit in the available memory."""
        from ..memory import require, gib
        from .footprint import evaluation_peak, resident_bytes
        from .fused import FUSE_MIN_POINTS

        min_points = {"auto": FUSE_MIN_POINTS, "numba": 0}.get(self.backend)
        resident = resident_bytes(self.limit.program, self.limit)
        need = evaluation_peak(self.limit, min_points, resident) - resident
        if limit is not None or need > 1 << 28:     # large runs: the model walks the plan, reads /proc/meminfo
            require(need, f"evaluating the limit of {self.limit.program.source.name} (its arrays, "
                          f"on top of the {gib(resident)} of data the program holds)", limit)

    def _progress(self, total):
        if not self.progress:
            return None
        from ..progress import Progress

        return self.progress if hasattr(self.progress, "advance") else Progress(total, name="eval")

    def outputs(self):
        res = {}
        for o in self.limit.program.outputs:
            grid = self.shape(o.family_axes)
            shape = o.array_shape
            value = np.empty(shape)
            err = np.empty(shape)
            methods = set()
            for (key, v), (_, expr) in zip(o.items, self.limit.outputs[o.name]):
                val, e = self.output_item(expr, grid)
                if not np.isfinite(np.add.reduce(np.asarray(val), axis=None)) and not np.all(np.isfinite(val)):
                    raise error(o.pos, f"the output {o.name}{list(key) if key else ''} is not finite")
                sl = []
                perm = []
                for kind, k in o.layout:
                    if kind == "u":
                        sl.append(key[k] - o.offsets[k])
                    else:
                        sl.append(slice(None))
                        perm.append(k)
                if len(o.items) == 1 and perm == sorted(perm):
                    value, err = np.asarray(val).reshape(shape), np.asarray(e).reshape(shape)
                    methods |= self.methods_behind(expr)
                    continue
                value[tuple(sl)] = np.transpose(val, perm) if perm else val
                err[tuple(sl)] = np.transpose(e, perm) if perm else e
                methods |= self.methods_behind(expr)
            res[o.name] = OutputResult(o.name, value, err, _method_label(methods), o)
        return Results(res, self)

    def output_item(self, expr, grid):
        """(value, error) of an output entry; a plain quantity reference is used without a copy."""
        q = quantity_of(expr)
        if q is not None and tuple(expr.args) == tuple(INDEX[:len(grid)]) and q in self.values:
            err = self.errors[q]
            return self.values[q], (err if np.ndim(err) else np.broadcast_to(float(err), grid))
        return self.expr(expr, grid)

    def methods_behind(self, expr):
        """The numeric methods of every quantity an expression depends on (a walk over the
        dependency graph with an explicit stack: its depth grows with the program, e.g. L layers)."""
        seen, out = set(), set()
        stack = [sympy.sympify(expr)]
        while stack:
            for r in qrefs_in(stack.pop()):
                q = quantity_of(r)
                if q in seen:
                    continue
                seen.add(q)
                out.add(self.methods.get(q, "?"))
                d = q.definition
                if isinstance(d, sympy.Basic):
                    stack.append(d)
                elif isinstance(d, Integral):
                    stack.extend(sympy.sympify(m) for m in list(d.mean) + list(d.cov))
                elif isinstance(d, SteinCoefficient):
                    stack.extend(sympy.sympify(m) for m in list(d.moments) + list(d.cov))
        return out


def _relative(value, error):
    """The inputs' relative error as one number: max |error| / max |value| over the grid."""
    if not (np.ndim(error) or error):
        return 0.0
    scale = _max_abs(value)
    return _max_abs(error) / scale if scale > 0 else 0.0


def _max_abs(x):
    """max |x| by two reductions, without the temporary array of np.abs(x)."""
    x = np.asarray(x)
    return float(max(np.max(x), -np.min(x)))


class _BufferPool:
    """Recycles large float64 arrays: writing into fresh memory costs a page fault per 4 KiB,
    which for N x N kernels is as expensive as the arithmetic."""

    MIN_SIZE = 1 << 16

    def __init__(self):
        self.free = {}
        self.owned = set()  # ids of arrays the pool handed out: only those come back (never data)

    def take(self, shape):
        stack = self.free.get(tuple(shape))
        arr = stack.pop() if stack else np.empty(shape)
        return arr

    def own(self, *arrays):
        self.owned.update(id(a) for a in arrays if isinstance(a, np.ndarray))

    def give(self, arr):
        if isinstance(arr, np.ndarray) and id(arr) in self.owned and arr.size >= self.MIN_SIZE:
            self.owned.discard(id(arr))
            self.free.setdefault(arr.shape, []).append(arr)


def _vectorised(fn):
    """A numpy function of one array that also returns a full array when the expression is constant."""
    return lambda x: np.broadcast_to(np.asarray(fn(x), dtype=float), np.shape(x))


_METHOD_ORDER = ["Monte Carlo", "quadrature", "Hermite series", "Stein", "closed form"]


def _method_label(methods):
    found = [m for m in _METHOD_ORDER if m in methods]
    return " + ".join(found) if found else "closed form"


#: ``auto`` samples the limit (method ``sampled``) of a Program that unrolls this many training steps or
#: more: deriving its integrals grows too fast with the steps (bench/bench_train.py).
SAMPLE_FROM_STEPS = 2


#: Default number of Monte Carlo samples per expectation (the sampled limit's default draws: limit_sampler).
MC_SAMPLES = 1 << 20


def evaluate(target, method="auto", samples=None, seed=0, threads=None, defines=None, backend="auto",
             progress=None):
    """Evaluate the infinite-width limit of a program.

    ``target``: a LimitProgram, a Program, a path or program text.  ``method``: auto, closed,
    series, quad or mc; or ``sampled``: no derivation, the Master Theorem's Z sampled instruction by
    instruction (simulate/limit_sampler.py; for programs whose integrals are too large to derive, e.g.
    several training steps), with 16 replicates of samples / 16 draws for the standard error.  ``auto``
    samples a Program that unrolls SAMPLE_FROM_STEPS or more training steps.
    Returns :class:`~tensorprog.numeric.results.Results`.
    """
    from ..limit.program import LimitProgram

    if method == "auto" and getattr(target, "training_steps", 0) >= SAMPLE_FROM_STEPS:
        method = "sampled"
    if method == "sampled":
        from ..simulate.limit_sampler import DEFAULT_DRAWS, sample_limit
        if isinstance(target, LimitProgram):
            raise error(None, "method 'sampled' works on the program, not on its derived limit")
        if not hasattr(target, "instructions"):
            import tensorprog
            target = tensorprog.parse(target, defines=defines)
        t0 = time.perf_counter()
        results = sample_limit(target, samples=DEFAULT_DRAWS if samples is None else samples, seed=seed,
                               progress=progress)
        results.timings["total"] = time.perf_counter() - t0
        return results

    if threads is not None:
        import numba

        numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    if not isinstance(target, LimitProgram):
        import tensorprog

        target = tensorprog.derive(target, defines=defines)
    if method not in ("auto", "closed", "series", "quad", "mc"):
        raise error(None, f"unknown method '{method}' (use auto, closed, series, quad, mc or sampled)")
    t0 = time.perf_counter()
    results = Evaluator(target, method, MC_SAMPLES if samples is None else samples, seed, backend, progress).run()
    results.timings["total"] = time.perf_counter() - t0
    return results

