"""Learning curves: predictions for training sets of growing size (the first N training points),
from one kernel evaluation at the largest size (a sub-block of a kernel is the kernel of the subset)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import error
from .predict import as_labels
from .predict_program import kernels_on, predict_from_kernels, read_array


@dataclass
class LearningCurve:
    """``predictions[i]`` (a :class:`~tensorprog.predict_program.Prediction`) for ``sizes[i]`` training points."""

    sizes: list
    predictions: list = field(default_factory=list)

    def summary(self) -> str:
        p0 = self.predictions[0]
        lines = [f"{p0.kernel.upper()} learning curve",
                 f"{'n_train':>8} {'t':>10} {'train MSE':>12} {'test MSE':>12} {'test acc':>9}"]
        for n, p in zip(self.sizes, self.predictions):
            for i, t in enumerate(p.times):
                tm = f"{p.test_mse[i]:12.6g}" if p.test_mse else f"{'-':>12}"
                ta = f"{p.test_accuracy[i]:9.4f}" if p.test_accuracy else f"{'-':>9}"
                lines.append(f"{n:>8d} {t:>10g} {p.train_mse[i]:12.6g} {tm} {ta}")
        return "\n".join(lines)

    def plot(self, path):
        """Test MSE (and accuracy, for one-hot labels) against training-set size, one line per time."""
        import os

        from .numeric.results import atomic_output
        from .simulate.plot import plot_formats

        plot_formats()      # a clear error if matplotlib (optional) is missing
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        p0 = self.predictions[0]
        if not p0.test_mse:
            raise error(None, "a learning-curve plot needs test labels (--test-labels)")
        panels = 2 if p0.test_accuracy else 1
        fig = Figure(figsize=(5 * panels, 3.8), dpi=120)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, panels, squeeze=False)
        for i, t in enumerate(p0.times):
            label = f"t = {t:g}"
            axes[0, 0].loglog(self.sizes, [p.test_mse[i] for p in self.predictions], "o-", label=label)
            if panels == 2:
                axes[0, 1].semilogx(self.sizes, [p.test_accuracy[i] for p in self.predictions], "o-", label=label)
        axes[0, 0].set(xlabel="training points", ylabel="test MSE", title=f"{p0.kernel.upper()} predictions")
        if panels == 2:
            axes[0, 1].set(xlabel="training points", ylabel="test accuracy")
        from matplotlib.ticker import NullFormatter, ScalarFormatter
        for ax in axes[0]:
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
            # the training-set sizes as plain ticks (log axes label their minor ticks 3x10^1, 4x10^1: they overlap)
            ax.set_xticks(self.sizes)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        fig.tight_layout()
        with atomic_output(path) as fh:
            fig.savefig(fh, format=os.path.splitext(str(path))[1][1:].lower())


def curve_from_kernels(k, theta, sizes, y_train, y_test=None, **options):
    """Learning curve from kernels over [train (largest size); test]; ``options`` as predict_from_kernels."""
    n_max = np.shape(y_train)[0]
    sizes = sorted(set(int(n) for n in sizes))
    if not sizes or sizes[0] < 1 or sizes[-1] > n_max:
        raise error(None, f"learning-curve sizes must be between 1 and the {n_max} training points, got {sizes}")
    curve = LearningCurve(sizes)
    keep_test = np.arange(n_max, (k if k is not None else theta).shape[0])
    for n in sizes:
        idx = np.concatenate([np.arange(n), keep_test])
        sub = (lambda m: None if m is None else m[np.ix_(idx, idx)])
        curve.predictions.append(predict_from_kernels(sub(k), sub(theta), n, np.asarray(y_train)[:n], y_test,
                                                      **options))
    return curve


def learning_curve(program, x_train, y_train, x_test, sizes, y_test=None, times=(math.inf,), kernel="ntk",
                   noise=0.0, learning_rate=1.0, diag_reg=None, defines=None, nngp_output="NNGP",
                   ntk_output="NTK", method="auto"):
    """Predictions with the first n training points for each n in ``sizes``; the kernels are evaluated
    once on all training and test points.  Returns a :class:`LearningCurve`."""
    x_train = read_array(x_train, "training points")
    x_test = read_array(x_test, "test points")
    y_train = read_array(y_train, "training labels")
    y_test = read_array(y_test, "test labels") if y_test is not None else None
    as_labels(y_train, x_train.shape[0])
    points = np.concatenate([x_train, x_test])
    required, optional = ([ntk_output], [nngp_output]) if kernel == "ntk" else ([nngp_output], [])
    kernels = kernels_on(program, points, required, optional, defines=defines, method=method)
    return curve_from_kernels(kernels.get(nngp_output), kernels.get(ntk_output), sizes, y_train, y_test,
                              times=times, kernel=kernel, noise=noise, learning_rate=learning_rate,
                              diag_reg=diag_reg)
