"""Log-log plot of a width sweep: RMS deviation from the limit against the width.

matplotlib is imported only here, and only its Agg canvas is used (no pyplot, no global backend).
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["plot_convergence", "plot_formats"]


def plot_convergence(conv, path, title=None):
    """Write a PNG (or any format matplotlib infers from ``path``): for each output the RMS
    deviation of single-seed values from the limit with its uncertainty, and the reference slopes
    width^-1/2 (fluctuations) and width^-1 (bias), drawn through the first output's first point."""
    plot_formats()      # a clear error if matplotlib (optional) is missing
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    widths = np.asarray(conv.widths, dtype=np.float64)
    anchor = None
    for name, pts in conv.points.items():
        rms = np.array([p.rms for p in pts])
        err = np.array([p.rms_error for p in pts])
        b, eb = conv.exponents[name]
        label = f"{name}: slope {b:.2f} $\\pm$ {eb:.2f}" if np.isfinite(b) else name
        ax.errorbar(widths, rms, yerr=np.where(np.isfinite(err), err, 0.0), marker="o", capsize=3, label=label)
        if anchor is None and rms[0] > 0:
            anchor = rms[0]
    if anchor is not None:
        ref = widths / widths[0]
        ax.plot(widths, anchor * ref ** -0.5, "k--", lw=1, label="width$^{-1/2}$")
        ax.plot(widths, anchor * ref ** -1.0, "k:", lw=1, label="width$^{-1}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(widths, [str(int(w)) for w in widths])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("width n")
    ax.set_ylabel("RMS deviation from the limit")
    ax.set_title(title or f"{conv.program_name}: {conv.seeds} seeds per width")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    from ..numeric.results import atomic_output

    with atomic_output(path) as fh:
        fig.savefig(fh, format=os.path.splitext(path)[1][1:].lower())
    return path


def plot_formats() -> tuple:
    """The file extensions the plot can be written as (matplotlib's Agg canvas formats); a TPError
    when matplotlib, an optional dependency, is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        from ..errors import error

        raise error(None, 'plots need matplotlib, which is not installed: pip install "tensorprog[plot]" '
                          '(or pip install matplotlib)') from None

    return tuple("." + ext for ext in sorted(FigureCanvasAgg.get_supported_filetypes()))
