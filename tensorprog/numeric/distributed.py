"""Tiles as Dask tasks: a dask.distributed cluster evaluates the tiles of an out-of-core run, and
``evaluate_lazy`` gives the outputs as dask arrays.

The tile job (``outofcore.TileJob``: the tiled program, with its data tables, and the per-point
values) is pickled to every worker once (``Client.scatter(broadcast=True)``); each task evaluates
one tile there -- the worker builds the tile program's plan and kernels once per tile shape, from
the shared generated-kernel cache or its own -- and returns its blocks to this process, which writes
them to the store and marks them done (one writer: the store needs no shared filesystem).  A worker
that dies takes its running tasks with it; the scheduler runs them again on the others (Dask's own
recovery), and since a tile's arithmetic does not depend on where it runs the results are the same.
"""
from __future__ import annotations

import logging
import os

from ..errors import error

#: Seconds to wait for a scheduler before an address is declared unreachable.
CONNECT_TIMEOUT = 10


def _run_tile(job, group, tile, threads):
    """One task: the tile's output blocks (numba threads per task set for a one-process-per-core cluster)."""
    if threads:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return job.run_tile(group, tile)


class Cluster:
    """A client of the scheduler ``address`` ("local": a LocalCluster of one single-threaded worker
    process per core, started here and stopped on exit).  A context manager."""

    def __init__(self, address, n_workers=None):
        self.address, self.n_workers = address, n_workers
        self.cluster = self.client = None

    def __enter__(self):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise error(None, "--scheduler needs dask.distributed: pip install 'tensorprog[large]'") from None
        if self.address == "local":
            self.cluster = LocalCluster(n_workers=self.n_workers or os.cpu_count() or 1, threads_per_worker=1,
                                        processes=True, dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
            self.threads = 1
        else:
            if not str(self.address).startswith(("tcp://", "tls://", "ws://", "wss://", "inproc://")):
                raise error(None, f"--scheduler: expected 'local' or an address such as tcp://HOST:PORT, got "
                                  f"'{self.address}'")
            _probe(self.address)
            try:
                self.client = Client(self.address, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError, ValueError) as e:
                raise error(None, f"--scheduler {self.address}: cannot reach the Dask scheduler "
                                  f"({type(e).__name__}: {e})") from None
            self.threads = None
        return self

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        return False


def _probe(address):
    """Fail at once, not after the connection timeout, when nothing listens at a tcp address."""
    import socket
    from urllib.parse import urlsplit

    if not address.startswith("tcp://"):
        return
    try:
        parts = urlsplit(address)
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise error(None, f"--scheduler: expected tcp://HOST:PORT, got '{address}'")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as e:
        raise error(None, f"--scheduler {address}: cannot reach the Dask scheduler ({e.strerror or e})") from None


def run_tiles_dask(job, store, todo, cluster, log=print, on_tile=None):
    """Evaluate the tiles ``todo`` (pairs (group, tile)) on ``cluster`` (an entered :class:`Cluster`),
    writing each to ``store`` as it arrives.  ``on_tile(cluster, count)`` is called after each
    stored tile (progress, tests)."""
    from dask.distributed import as_completed

    from .outofcore import store_tile

    client = cluster.client
    workers = len(client.scheduler_info().get("workers", {}))
    log(f"dask: {workers} worker{'s' if workers != 1 else ''} at {client.scheduler.address}")
    shared = client.scatter(job, broadcast=True, hash=False)
    futures = {client.submit(_run_tile, shared, g, t, cluster.threads, pure=False,
                             key=f"tensorprog-tile-{g}-" + "-".join(f"{lo}_{hi}" for lo, hi in t)): (g, t)
               for g, t in todo}
    done = 0
    for fut, blocks in as_completed(futures, with_results=True):
        g, t = futures[fut]
        store_tile(store, g, t, blocks)
        fut.release()
        done += 1
        if on_tile is not None:
            on_tile(cluster, done)


def evaluate_lazy(target, chunks, method="auto", samples=None, seed=0, defines=None):
    """The outputs of a program as dask arrays ({name: array of values}), evaluated tile by tile
    when computed (on the current Dask scheduler: threads by default, or a ``Client``).

    ``chunks``: the tile side in points.  The per-point pass runs now (it is O(N)); each tile is
    one task, shared by every output of its family axes.  Raises ``NotTileable`` (from
    tensorprog.numeric.tileprogram) for a program that couples the points of a family.
    """
    import dask
    import dask.array as da
    import numpy as np

    from .outofcore import TileJob, tile_grid

    if not hasattr(target, "quantities"):
        import tensorprog

        target = tensorprog.derive(target, defines=defines)
    job = TileJob(target, method=method, samples=samples, seed=seed)
    job.chunk = int(chunks)
    job.run_points()
    out = {name: da.from_array(np.asarray(job.point_results[name].value)) for name in job.tiled.point_outputs}
    shared = dask.delayed(job, traverse=False)
    for g, (axes, names) in enumerate(job.tiled.groups):
        spans = [[t for t in tile_grid([a], int(chunks))] for a in axes]
        tiles = {t: dask.delayed(_run_tile, pure=True)(shared, g, t, None) for t in tile_grid(axes, int(chunks))}
        for name in names:
            o = job.tiled.outputs[name]

            def nest(dim, pick):
                if dim == len(o.layout):
                    tile = tuple(spans[p][pick[p]][0] for p in range(len(axes)))
                    shape = tuple(s if kind == "u" else tile[k][1] - tile[k][0]
                                  for s, (kind, k) in zip(o.array_shape, o.layout))
                    return da.from_delayed(tiles[tile][name][0], shape=shape, dtype=float)
                kind, k = o.layout[dim]
                if kind == "u":
                    return [nest(dim + 1, pick)]
                return [nest(dim + 1, {**pick, k: c}) for c in range(len(spans[k]))]

            out[name] = da.block(nest(0, {}))
    return out
