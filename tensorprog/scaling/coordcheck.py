"""The empirical coordinate check beside the static one: ``tpc simulate prog.tp --coord-check``.

The program (parsed width-dependent, its training replayed exactly at finite width) runs at each
width with several seeds.  For every named vector x of a training's cone and every step t it measures
the RMS coordinate size of x_t and of its change x_t - x_0 (averaged over the data points:
sqrt(mean over points of mean_alpha x_alpha^2)), and for the output the RMS over points of F_t - F_0;
then fits log RMS = a + k log n (+ c n^-1/2) by weighted least squares over the widths (weights from
the seeds' standard errors, delta method: simulate.convergence.fit_exponent) and compares the slope
k +- SE(k) with the static exponent of tensorprog.scaling: K_t(x) = max(kappa(x), D_t(x)) for the
size, D_t(x) for the change.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..simulate.convergence import fit_exponent
from .orders import ZERO


@dataclass
class CoordRow:
    """One measured quantity: the RMS of ``name`` (size or change) after ``step`` steps, per width."""

    training: int
    name: str
    quantity: str          # "size" or "change"
    step: int
    rms: list              # mean over seeds, per width
    se: list               # its standard error
    slope: float
    slope_se: float
    static: object         # the static exponent (sympy number), or None when undecided
    note: str = ""
    kind: str = "vector"

    @property
    def disagrees(self):
        """|slope - static| > 3 SE for a vector; slope > static + 3 SE for a scalar, whose static exponent
        is an upper bound (a moment whose limit vanishes after training by independence is not detected:
        docs/scaling.md); never for an undecided static exponent."""
        if self.static is None or self.static == ZERO:
            return False
        gap = self.slope - float(self.static)
        return (gap if self.kind == "scalar" else abs(gap)) > 3 * self.slope_se


@dataclass
class CoordCheck:
    widths: list
    seeds: int
    rows: list = field(default_factory=list)

    @property
    def disagreements(self):
        return [r for r in self.rows if r.disagrees]

    def table(self):
        out = [f"coordinate check: widths {', '.join(map(str, self.widths))}, {self.seeds} seeds; slope of "
               "log RMS against log n (+- SE) beside the static exponent"]
        head = ["value", "quantity", "step", "RMS at " + str(self.widths[-1]), "slope", "static", ""]
        body = []
        for r in self.rows:
            static = "undecided" if r.static is None else ("zero" if r.static == ZERO else str(r.static))
            body.append([r.name, r.quantity, str(r.step), f"{r.rms[-1]:.3g}", f"{r.slope:+.3f} +- {r.slope_se:.3f}",
                         static, "DISAGREES" if r.disagrees else ""])
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        out.append("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
        out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in body]
        bad = self.disagreements
        out.append(f"{len(bad)} of {len(self.rows)} slopes differ from the static exponent by more than 3 SE"
                   + (": " + ", ".join(f"{r.name} ({r.quantity}, step {r.step})" for r in bad) if bad else ""))
        return "\n".join(out)

    def to_json(self):
        return json.dumps({"widths": self.widths, "seeds": self.seeds, "rows": [
            {"training": r.training, "name": r.name, "quantity": r.quantity, "step": r.step, "rms": r.rms,
             "se": r.se, "slope": r.slope, "slope_se": r.slope_se,
             "static": None if r.static is None else str(r.static), "disagrees": r.disagrees} for r in self.rows]},
            indent=2)

    def plot(self, path):
        """Per value a log-log panel: RMS size (t = 0..T, solid) and change (t >= 1, dotted) against width,
        with the static exponent's slope drawn dashed through the smallest width's point."""
        import matplotlib
        import matplotlib.ticker
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(dict.fromkeys((r.training, r.name) for r in self.rows))
        cols = min(4, len(names))
        nrows = -(-len(names) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 3.0 * nrows), squeeze=False)
        w = np.array(self.widths, dtype=float)
        for ax, key in zip(axes.flat, names):
            for r in (r for r in self.rows if (r.training, r.name) == key):
                style = "-o" if r.quantity == "size" else ":s"
                static = "?" if r.static is None else ("-oo" if r.static == ZERO else str(r.static))
                line, = ax.plot(w, r.rms, style, ms=3,
                                label=f"{r.quantity} t={r.step}: {r.slope:+.2f} (static {static})")
                if r.static is not None and r.static != ZERO:
                    ax.plot(w, r.rms[0] * (w / w[0]) ** float(r.static), "--", color=line.get_color(), lw=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(w, [str(int(x)) for x in w], fontsize=7, rotation=45)
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title(key[1] + ("  (DISAGREES)" if any(r.disagrees for r in self.rows
                                                           if (r.training, r.name) == key) else ""), fontsize=9)
            ax.set_xlabel("width n", fontsize=8)
            ax.legend(fontsize=5.5, framealpha=0.6)
        for ax in list(axes.flat)[len(names):]:
            ax.axis("off")
        fig.suptitle("coordinate check: measured (markers, fitted slope) and static exponent (dashed)", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def coord_check(path_or_text, widths, seeds=5, seed=0, defines=None, progress=False):
    """Run the coordinate check (see the module docstring); returns a :class:`CoordCheck`."""
    from ..errors import error
    from ..frontend.load import parse
    from ..simulate.simulator import Simulator, simulate
    from .report import analyse_program

    program = path_or_text if hasattr(path_or_text, "instructions") else \
        parse(path_or_text, defines=defines, coord_check=True)
    if not program.trainings:
        raise error(None, "--coord-check needs a training: a gd(...) output (docs/scaling.md)")
    report = analyse_program(program)
    sim = Simulator(program)
    runs = [simulate(program, w, seeds=seeds, seed=seed, progress=progress, simulator=sim).samples for w in widths]
    check = CoordCheck(list(widths), seeds)
    for k, (spec, tr) in enumerate(zip(program.trainings, report.trainings)):
        static = {r.name: r for r in tr.rows}
        for name in [o.name for o in program.outputs if o.name.startswith(f"@cc/{k}/") and o.name.endswith("/0")]:
            value = name.split("/")[2]
            is_output = value in {f.name for f in spec.outputs}
            row = next(r for r in tr.rows if r.name.startswith("F = ")) if is_output else static.get(value)
            is_scalar = is_output or (row is not None and row.kind == "scalar")
            for t in range(max(spec.steps, 1) + 1):
                for quantity in ("size", "change"):
                    if quantity == "change" and t == 0:
                        continue
                    per_width = [_rms(run, k, value, t, quantity, is_scalar) for run in runs]
                    if any(p is None for p in per_width) or min(m for m, _ in per_width) <= 0:
                        continue
                    means, ses = zip(*per_width)
                    slope, se = fit_exponent(widths, means, ses, correction=True)
                    st = None if tr.culprit and tr.culprit["step"] == 0 and t else _static(row, t, quantity)
                    check.rows.append(CoordRow(k, "F" if is_output else value, quantity, t, list(means), list(ses),
                                               slope, se, st, row.note if row else "",
                                               "scalar" if is_scalar else "vector"))
    return check


def _rms(samples, k, value, t, quantity, is_scalar):
    """(mean over seeds, SE) of the RMS over data points (and coordinates, for vectors), or None."""
    if is_scalar:
        Ft = samples.get(f"@cc/{k}/{value}/{t}")
        if Ft is None:
            return None
        x = Ft if quantity == "size" else Ft - samples[f"@cc/{k}/{value}/0"]
        per_seed = np.sqrt(np.mean(np.reshape(x, (x.shape[0], -1)) ** 2, axis=1))
    else:
        key = f"@{'cc' if quantity == 'size' else 'dd'}/{k}/{value}/{t}"
        if key not in samples:
            return None
        per_seed = np.sqrt(np.mean(np.reshape(samples[key], (samples[key].shape[0], -1)), axis=1))
    return float(per_seed.mean()), float(per_seed.std(ddof=1) / np.sqrt(len(per_seed)))


def _static(row, t, quantity):
    """The static exponent of the size (max(init, D_t)) or change (D_t) after t steps."""
    if row is None or row.note:
        return None
    if quantity == "change":
        return row.changes[t - 1]
    return row.init if t == 0 else max(row.init, row.changes[t - 1])
