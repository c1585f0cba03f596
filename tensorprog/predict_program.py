"""Predictions from a program's kernels over a train and a test set (``tpc predict``, ``tensorprog.predict``).

Convention: the program reads its input points with one ``data X = load("points.npy")`` declaration
(any data set and file name) and outputs kernels over that data set, by default ``NNGP[i, j]`` and
``NTK[i, j]`` (as in examples/mlp_ntk.tp).  ``predict`` evaluates the program on the concatenation
``[X_train; X_test]`` (written to a temporary directory under the program's file name) and splits
the kernel by index into K(train, train), K(test, train), K(test, test); see :mod:`tensorprog.predict`
for the formulas.
"""
from __future__ import annotations

import math
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import error
from .predict import (IllConditionedKernelWarning, accuracy, as_labels, gradient_flow, is_one_hot, mse,
                      nngp_posterior, parse_times)

_LOAD_DATA = re.compile(r'^\s*data\s+([A-Za-z_]\w*)\s*=\s*load\(\s*"([^"]+)"\s*\)', re.MULTILINE)


def read_array(x, what):
    """An array from an ndarray / nested list or a .npy / .csv file name, as float64."""
    if isinstance(x, (str, Path)):
        path = Path(x)
        if not path.is_file():
            raise error(None, f"{what}: no such file: {path}")
        try:
            if path.suffix == ".npy":
                arr = np.load(path, allow_pickle=False)
            elif path.suffix in (".csv", ".txt"):
                arr = np.loadtxt(path, delimiter=",", comments="#", ndmin=1)
            else:
                raise error(None, f"{what}: {path.name}: use a .npy or .csv file")
        except (ValueError, OSError) as e:
            raise error(None, f"{what}: cannot read {path.name}: {str(e).splitlines()[0]}") from None
        x = arr
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise error(None, f"{what} must be an array of real numbers") from None
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise error(None, f"{what} must contain at least one point")
    return arr


def _program_text(program):
    """(text, name to report it under) of a program path or text (the rule of tensorprog.parse)."""
    from .frontend.load import read_source

    source, _ = read_source(program)
    return source.text, source.name


def kernels_on(program, points, required, optional=(), defines=None, method="auto", samples=1 << 20, seed=0):
    """Evaluate ``program`` with its loaded data set replaced by ``points``; the named kernel outputs."""
    from . import evaluate, parse

    text, name = _program_text(program)
    loads = _LOAD_DATA.findall(text)
    if len(loads) != 1:
        raise error(None, f"{name}: predict needs a program that reads its points with exactly one "
                          f'`data X = load("points.npy")` declaration, found {len(loads)}')
    _, file_name = loads[0]
    with tempfile.TemporaryDirectory(prefix="tpc-predict-") as tmp:
        target = Path(tmp) / file_name
        if target.suffix != ".npy" or Path(file_name).name != file_name:
            raise error(None, f'{name}: predict loads the points from a plain .npy file name, got "{file_name}"')
        np.save(target, points)
        copy = Path(tmp) / "program.tp"  # parsed from here so that load() finds the points
        copy.write_text(text, encoding="utf-8")
        prog = parse(str(copy), defines=defines, name=name)
        res = evaluate(prog, method=method, samples=samples, seed=seed)
    n = points.shape[0]
    kernels = {}
    for out in list(required) + list(optional):
        if out is None or (out not in res.outputs and out in optional):
            continue
        if out not in res.outputs:
            raise error(None, f"{name}: the program has no output '{out}' (outputs: {', '.join(res.outputs)}); "
                              "predict needs kernel outputs over the train and test points")
        value = np.asarray(res[out].value, dtype=np.float64)
        if value.shape != (n, n):
            raise error(None, f"{name}: output '{out}' has shape {value.shape}, not a kernel over the "
                              f"{n} train and test points ({n} x {n})")
        kernels[out] = value
    return kernels


@dataclass
class Prediction:
    """Predictions at each time (``mean[i]``: test points x outputs), variances, metrics."""

    kernel: str
    times: list
    mean: list
    variance: list = field(default_factory=list)   # diagonal of the covariance (None if not computed)
    train_mean: list = field(default_factory=list)
    test_mse: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)
    train_mse: list = field(default_factory=list)
    condition: float = math.nan

    def summary(self) -> str:
        lines = [f"{self.kernel.upper()} predictions (train kernel condition number {self.condition:.3g})",
                 f"{'t':>10} {'train MSE':>12} {'test MSE':>12} {'test acc':>9} {'mean var':>12}"]
        for i, t in enumerate(self.times):
            tm = f"{self.test_mse[i]:12.6g}" if self.test_mse else f"{'-':>12}"
            ta = f"{self.test_accuracy[i]:9.4f}" if self.test_accuracy else f"{'-':>9}"
            var = self.variance[i]
            vs = f"{float(np.mean(var)):12.6g}" if var is not None else f"{'-':>12}"
            lines.append(f"{t:>10g} {self.train_mse[i]:12.6g} {tm} {ta} {vs}")
        return "\n".join(lines)


def predict_from_kernels(k, theta, n_train, y_train, y_test=None, times=(math.inf,), kernel="ntk", noise=0.0,
                         learning_rate=1.0, diag_reg=None):
    """Predictions from full kernels over [train; test] (either may be None if not needed)."""
    tr, te = slice(0, n_train), slice(n_train, None)
    y_train = as_labels(y_train, n_train)
    times = parse_times(times)
    if kernel == "nngp" and k is None or kernel == "ntk" and theta is None:
        raise error(None, f"the {kernel.upper()} kernel is needed for --kernel {kernel}")
    if kernel == "nngp":
        if noise > 0 or diag_reg:  # the Bayesian posterior (a noise term makes sense only there)
            mean, cov = nngp_posterior(k[tr, tr], k[te, tr], k[te, te], y_train, noise=noise, diag_reg=diag_reg)
            tmean, _ = nngp_posterior(k[tr, tr], k[tr, tr], None, y_train, noise=noise, diag_reg=diag_reg)
            times = [math.inf]
            flow_mean, flow_cov, train_mean, cond = [mean], [cov], [tmean], math.nan
        else:
            theta = k
    if kernel == "ntk" or (kernel == "nngp" and not (noise > 0 or diag_reg)):
        nngp = (k[tr, tr], k[te, tr], k[te, te]) if k is not None else None
        flow = gradient_flow(theta[tr, tr], theta[te, tr], y_train, times, learning_rate, nngp=nngp, noise=noise,
                             diag_reg=diag_reg)
        # the training points' own predictions: the same train kernel, so the same eigenvectors
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IllConditionedKernelWarning)   # already said for the test points
            train = gradient_flow(theta[tr, tr], theta[tr, tr], y_train, times, learning_rate, noise=noise,
                                  diag_reg=diag_reg, eig=flow.eigen)
        flow_mean, flow_cov, train_mean, cond = flow.mean, flow.cov, train.mean, flow.condition
    pred = Prediction(kernel=kernel, times=times, mean=flow_mean,
                      variance=[None if c is None else np.diag(c).copy() for c in flow_cov],
                      train_mean=train_mean, condition=cond)
    pred.train_mse = [mse(m, y_train) for m in train_mean]
    if y_test is not None:
        y_test = as_labels(y_test, pred.mean[0].shape[0])
        if y_test.shape[1] != y_train.shape[1]:
            raise error(None, f"test labels have {y_test.shape[1]} outputs, train labels {y_train.shape[1]}")
        pred.test_mse = [mse(m, y_test) for m in pred.mean]
        if is_one_hot(y_train):
            pred.test_accuracy = [accuracy(m, y_test) for m in pred.mean]
    return pred


def predict(program, x_train, y_train, x_test, y_test=None, times=(math.inf,), kernel="ntk", noise=0.0,
            learning_rate=1.0, diag_reg=None, defines=None, nngp_output="NNGP", ntk_output="NTK", method="auto"):
    """NNGP posterior / NTK gradient-flow predictions of the network a program describes.

    ``program``: a .tp path or text that reads its points with one ``data X = load("file.npy")`` and
    outputs kernels ``NNGP`` and/or ``NTK`` over them; ``x_*``/``y_*``: arrays or .npy/.csv paths.
    ``kernel="ntk"``: gradient flow with the NTK at ``times`` (mean; covariance when the NNGP output exists);
    ``kernel="nngp"``: with ``noise > 0`` the NNGP posterior, else the NNGP gradient flow (readout trained).
    Returns a :class:`Prediction`.
    """
    if kernel not in ("nngp", "ntk"):
        raise error(None, f"kernel must be 'nngp' or 'ntk', got '{kernel}'")
    x_train = read_array(x_train, "training points")
    x_test = read_array(x_test, "test points")
    y_train = read_array(y_train, "training labels")
    as_labels(y_train, x_train.shape[0])  # bad labels fail before the (slow) kernel evaluation
    if y_test is not None:
        y_test = read_array(y_test, "test labels")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise error(None, f"training points have shape {x_train.shape[1:]} each, test points {x_test.shape[1:]}")
    points = np.concatenate([x_train, x_test])
    # the NTK flow uses the NNGP, if the program has it, for the ensemble covariance
    required, optional = ([ntk_output], [nngp_output]) if kernel == "ntk" else ([nngp_output], [])
    kernels = kernels_on(program, points, required, optional, defines=defines, method=method)
    return predict_from_kernels(kernels.get(nngp_output), kernels.get(ntk_output), x_train.shape[0], y_train,
                                y_test, times=times, kernel=kernel, noise=noise, learning_rate=learning_rate,
                                diag_reg=diag_reg)
