"""Kernels evaluated tile by tile into a zarr store (tensorprog/numeric/outofcore.py), resumed after an
interruption, and on Dask (tensorprog/numeric/distributed.py): every entry must equal the whole-grid
in-memory evaluation, which the rest of the suite checks against closed forms and finite-width networks.
Equal means bitwise: a tile runs the same generated arithmetic on the same numbers."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import tensorprog
from tensorprog.errors import TPError
from tensorprog.numeric import outofcore
from tensorprog.numeric.outofcore import evaluate_to_store, open_store

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# Two data sets (train x test): the output K is an N x M grid whose roles run over different axes.
TRAIN_TEST = """
data A = [[1, 0], [0.6, 0.8], [2, 0], [-1, 0.5], [0.3, 0.3]]
data B = [[0, 1], [1, 1], [0.5, -2]]
matrix W ~ N(0, 2/n)
vector u ~ N(1, 1)
vector g[i] ~ N(0, dot(A[i], A[i']) + 0.1)
vector h[j] ~ N(0, dot(B[j], B[j']) + 0.1)
out K[i, j] = mean(tanh(W @ (relu(g[i]) + u)) * tanh(W @ (relu(h[j]) + u)))
out D[i] = mean(relu(g[i]) * relu(g[i]))
"""


def _same(store_path, reference, rel=0.0):
    """Every output of the store equals the in-memory results (values and errors)."""
    stored = open_store(store_path)
    assert set(stored) == set(reference.outputs)
    for name, (values, errors) in stored.items():
        ref = reference[name]
        v, e = values[...], errors[...]
        assert v.shape == ref.value.shape
        scale = max(float(np.max(np.abs(ref.value))), 1e-300)
        assert np.max(np.abs(v - ref.value)) <= rel * scale, name
        assert np.max(np.abs(e - ref.error)) <= rel * max(scale, float(np.max(ref.error))), name


@pytest.mark.parametrize("program, chunk", [
    (EXAMPLES / "mlp_ntk.tp", 3),            # MLP NNGP + NTK, 4 x 4 in tiles 3 + 1
    (EXAMPLES / "mlp_gelu.tp", 2),           # Hermite-series integrals (with error estimates)
    (EXAMPLES / "ntk_rnn.tp", 1),            # an RNN over sequences (families over points and time)
    (EXAMPLES / "ntk_transformer.tp", 1),    # attention + global average pooling
    (TRAIN_TEST, 2),                         # train x test: N x M, and an output over one data set
])
def test_tiles_equal_the_whole_grid(tmp_path, program, chunk):
    limit = tensorprog.derive(program)
    reference = tensorprog.evaluate(limit)
    store = tmp_path / "k.zarr"
    summary = evaluate_to_store(limit, str(store), chunk=chunk, log=lambda s: None)
    assert summary["computed"] == summary["tiles"] >= 2
    _same(store, reference)


def _tpc(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "tensorprog", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_cli_store_and_refusals(tmp_path):
    """tpc eval --out STORE.zarr writes the kernels; an existing store is not overwritten without
    --resume; a directory with other content is refused and left as it was."""
    store = tmp_path / "k.zarr"
    r = _tpc("eval", EXAMPLES / "mlp_ntk.tp", "--out", store, "--chunk", 3)
    assert r.returncode == 0, r.stderr
    assert "memory about" in r.stderr and "disk up to" in r.stderr
    _same(store, tensorprog.evaluate(str(EXAMPLES / "mlp_ntk.tp")))
    r = _tpc("eval", EXAMPLES / "mlp_ntk.tp", "--out", store, "--chunk", 3)
    assert r.returncode == 2 and "--resume" in r.stderr and "Traceback" not in r.stderr

    other = tmp_path / "other.zarr"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    r = _tpc("eval", EXAMPLES / "mlp_ntk.tp", "--out", other)
    assert r.returncode == 2 and "not a tensorprog store" in r.stderr
    assert os.listdir(other) == ["notes.txt"] and (other / "notes.txt").read_text() == "mine"

    r = _tpc("eval", EXAMPLES / "mlp_ntk.tp", "--memory", "1G")
    assert r.returncode == 2 and "--out STORE.zarr" in r.stderr


COUPLED = """
data X = [[1, 0], [0.6, 0.8], [2, 0]]
vector g[i] ~ N(0, dot(X[i], X[i']) + 0.1)
out K[i, j] = mean(relu(g[i]) * relu(g[j])) / mean(relu(g[0]) * relu(g[0]))
"""


def test_coupled_program_falls_back_to_memory(tmp_path):
    """A kernel normalised by the first point's variance couples every entry to one member (as a
    Moment over the batch, batch normalisation, does): said so, then evaluated whole -- the store
    still holds the in-memory results."""
    program = tmp_path / "coupled.tp"
    program.write_text(COUPLED)
    store = tmp_path / "c.zarr"
    r = _tpc("eval", program, "--out", store)
    assert r.returncode == 0, r.stderr
    assert "couples the points of a family" in r.stderr and "in memory" in r.stderr
    _same(store, tensorprog.evaluate(str(program)))


def test_full_disk_is_refused_with_numbers(tmp_path, monkeypatch):
    limit = tensorprog.derive(str(EXAMPLES / "mlp_ntk.tp"))
    store = tmp_path / "k.zarr"
    monkeypatch.setattr(outofcore, "free_disk_bytes", lambda path: 10)
    with pytest.raises(TPError, match="need up to .* of disk .* only .* is free"):
        evaluate_to_store(limit, str(store), chunk=2, log=lambda s: None)
    assert not store.exists()                  # nothing left behind
    # a run with finished tiles: the refusal keeps them
    monkeypatch.undo()
    evaluate_to_store(limit, str(store), chunk=2, log=lambda s: None)
    markers = sorted(os.listdir(store / outofcore.MARKERS))
    os.remove(store / outofcore.MARKERS / markers[0])
    before = open_store(store)["NTK"][0][...]
    monkeypatch.setattr(outofcore, "free_disk_bytes", lambda path: 10)
    with pytest.raises(TPError, match="finished tiles are kept"):
        evaluate_to_store(limit, str(store), chunk=2, resume=True, log=lambda s: None)
    assert sorted(os.listdir(store / outofcore.MARKERS)) == markers[1:]
    assert np.array_equal(open_store(store)["NTK"][0][...], before)


def test_memory_budget_sets_the_tile_side():
    """The tile side is the largest multiple of 64 whose working set fits the budget."""
    job = outofcore.TileJob(tensorprog.derive(str(EXAMPLES / "mlp_ntk.tp")))
    per = job.bytes_per_entry(0)
    assert per > 16
    # 4 points: the side never exceeds the axis; with a huge budget it is the whole axis
    assert outofcore.choose_chunk(job, 1 << 40) == 4
    assert outofcore.parse_memory("2G") == 2 << 30 and outofcore.parse_memory("512M") == 512 << 20
    with pytest.raises(TPError):
        outofcore.parse_memory("lots")


KILLED_RUN = """
import os, signal, sys
import tensorprog
from tensorprog.numeric import outofcore

calls = []
mark = outofcore.Store.mark


def mark_then_die(self, group, tile):
    calls.append(tile)
    if len(calls) == 3:          # the third tile is written but not marked: killed, no clean-up
        os.kill(os.getpid(), signal.SIGKILL)
    mark(self, group, tile)


outofcore.Store.mark = mark_then_die
limit = tensorprog.derive(sys.argv[1])
outofcore.evaluate_to_store(limit, sys.argv[2], chunk=2)
"""


def test_killed_run_resumes_to_the_same_result(tmp_path):
    """A run killed (SIGKILL) while writing its third tile keeps the two finished tiles; --resume
    computes only the other ones, and the store equals an uninterrupted run bitwise."""
    program = EXAMPLES / "mlp_ntk.tp"
    store = tmp_path / "k.zarr"
    script = tmp_path / "killed.py"
    script.write_text(KILLED_RUN)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, str(script), str(program), str(store)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == -9, r.stderr
    assert len(os.listdir(store / outofcore.MARKERS)) == 3        # the per-point pass + two tiles
    r = _tpc("eval", program, "--out", store, "--chunk", 2)
    assert r.returncode == 2 and "--resume" in r.stderr
    r = _tpc("eval", program, "--out", store, "--chunk", 2, "--resume")
    assert r.returncode == 0, r.stderr
    assert "2 of 4 tiles computed" in r.stdout and "resuming: 2 of 4 tiles already done" in r.stderr
    whole = tmp_path / "whole.zarr"
    evaluate_to_store(tensorprog.derive(str(program)), str(whole), chunk=2, log=lambda s: None)
    resumed, uninterrupted = open_store(store), open_store(whole)
    for name in resumed:
        for a, b in zip(resumed[name], uninterrupted[name]):
            assert np.array_equal(a[...], b[...])
    _same(store, tensorprog.evaluate(str(program)))
    # a different tile side is another computation: --resume refuses it
    r = _tpc("eval", program, "--out", store, "--chunk", 3, "--resume")
    assert r.returncode == 2 and "another program" in r.stderr


# ---------------------------------------------------------------------------------------- Dask

@pytest.fixture(scope="module")
def cluster():
    """One 2-worker LocalCluster (separate processes) for the module; reached by its tcp address."""
    distributed = pytest.importorskip("dask.distributed")
    import logging

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as lc:
        yield lc


def test_dask_tiles_equal_the_whole_grid_after_a_worker_is_killed(tmp_path, cluster):
    """Tiles as tasks on a 2-worker cluster at tcp://...; one worker is killed (SIGKILL) after the
    first tile arrives: its tasks run again elsewhere, the run completes, the store equals the
    in-memory results bitwise."""
    import signal

    from tensorprog.numeric.distributed import Cluster, run_tiles_dask

    limit = tensorprog.derive(str(EXAMPLES / "mlp_ntk.tp"))
    reference = tensorprog.evaluate(limit)
    job = outofcore.TileJob(limit)
    job.chunk = 1
    job.run_points()
    store_path = tmp_path / "k.zarr"
    store = outofcore.Store(str(store_path), limit, job.options, 1)
    for name in job.tiled.point_outputs:
        store.write(name, job.point_results[name].value, job.point_results[name].error)
    todo = [(0, t) for t in outofcore.tile_grid(job.tiled.groups[0][0], 1)]
    killed = []

    def kill_one_worker(c, count):
        if count == 1:
            pids = c.client.run(os.getpid)
            victim = sorted(pids)[0]
            os.kill(pids[victim], signal.SIGKILL)
            killed.append(victim)

    with Cluster(cluster.scheduler_address) as connected:
        run_tiles_dask(job, store, todo, connected, log=lambda s: None, on_tile=kill_one_worker)
    assert killed and len(todo) == 16
    assert len(os.listdir(store_path / outofcore.MARKERS)) == 16
    _same(store_path, reference)


def test_cli_scheduler_address_and_unreachable(tmp_path, cluster):
    """tpc eval --scheduler tcp://... writes the same store; an address nobody listens on is a
    clear error (exit 2) that leaves nothing behind."""
    program = tmp_path / "tt.tp"
    program.write_text(TRAIN_TEST)
    store = tmp_path / "k.zarr"
    r = _tpc("eval", program, "--out", store, "--chunk", 2, "--scheduler", cluster.scheduler_address)
    assert r.returncode == 0, r.stderr
    assert "dask: 2 workers" in r.stderr
    _same(store, tensorprog.evaluate(str(program)))

    import socket

    with socket.socket() as s:            # a free port: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bad = tmp_path / "bad.zarr"
    r = _tpc("eval", program, "--out", bad, "--chunk", 2, "--scheduler", f"tcp://127.0.0.1:{port}")
    assert r.returncode == 2 and "cannot reach the Dask scheduler" in r.stderr and "Traceback" not in r.stderr
    assert not bad.exists()
    r = _tpc("eval", program, "--out", bad, "--scheduler", "somewhere")
    assert r.returncode == 2 and "tcp://HOST:PORT" in r.stderr


def test_lazy_dask_arrays(cluster):
    """tensorprog.evaluate(..., chunks=k): dask arrays chunked by tile, computed on a cluster."""
    from dask.distributed import Client

    ref = tensorprog.evaluate(str(EXAMPLES / "ntk_rnn.tp"))       # an RNN over sequences
    lazy = tensorprog.evaluate(str(EXAMPLES / "ntk_rnn.tp"), chunks=1)
    assert lazy["NTK_last"].chunks == ((1, 1), (1, 1))
    with Client(cluster) as client:
        values = client.compute(lazy["NTK_last"]).result()
    assert np.array_equal(values, ref["NTK_last"].value)
    lazy = tensorprog.evaluate(str(EXAMPLES / "mlp_ntk.tp"), chunks=3)
    ref = tensorprog.evaluate(str(EXAMPLES / "mlp_ntk.tp"))
    assert lazy["NTK"].chunks == ((3, 1), (3, 1))
    assert np.array_equal(lazy["NTK"].compute(), ref["NTK"].value)
