"""The digits example (examples/digits/run.py) on a subset: accuracy well above chance, and the
NNGP t = infinity prediction equal to kernel regression written here with numpy on the kernels of
the same program (independent of tensorprog.predict's linear algebra)."""
import importlib.util
import pathlib

import numpy as np
import pytest

import tensorprog

pytest.importorskip("sklearn")
RUN = pathlib.Path(__file__).resolve().parents[1] / "examples" / "digits" / "run.py"


def _example():
    spec = importlib.util.spec_from_file_location("digits_example", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_subset_accuracy_and_kernel_regression(tmp_path):
    ex = _example()
    rows = ex.accuracy_table([1, 2], n_train=200, n_test=100)
    for depth, acc_nngp, acc_ntk in rows:
        assert acc_nngp > 0.8 and acc_ntk > 0.8, rows          # chance is 0.1
    xtr, ytr, xte, yte = ex.digits(200, 100)
    pred = tensorprog.predict(ex.program(2), xtr, ytr, xte, kernel="nngp", noise=1e-6)
    np.save(tmp_path / "points.npy", np.vstack([xtr, xte]))
    res = tensorprog.evaluate(ex.program(2).replace('load("points.npy")', f'load("{tmp_path / "points.npy"}")'))
    K = res["NNGP"].value
    want = K[200:, :200] @ np.linalg.solve(K[:200, :200] + 1e-6 * np.eye(200), ytr)
    np.testing.assert_allclose(pred.mean[-1], want, rtol=1e-10, atol=1e-10)
