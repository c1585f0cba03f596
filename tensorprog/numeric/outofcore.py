"""Kernels larger than memory: the outputs' grid evaluated tile by tile into a zarr store.

Once the per-point quantities (a layer's variance at x_i, and every output over one data set or
none) are known, the entries of an N x N (or N x M) output in different tiles are independent:
entry (a, b) depends only on points a and b.  So a run

1. evaluates the *per-point pass* (``TiledProgram.point_limit``: every point instance over the
   whole data set, O(N) memory);
2. evaluates each tile (a block of rows x a block of columns) with the same evaluator, plan and
   generated kernels as the whole-grid path (``TiledProgram.tile_limit``), the per-point values and
   the data table's blocks bound in (``TileEvaluator``): each entry is computed by the same
   arithmetic as in memory, so the results are identical;
3. writes each finished tile to the store, then records its completion atomically (a marker file
   written under a temporary name and renamed), so that ``resume=True`` recomputes only the tiles
   without a marker.

Peak memory is the per-point pass plus one tile's working set, whatever N is: the tile side is the
largest multiple of 64 whose estimated working set fits the memory budget.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import threading
import time

import numpy as np

from ..errors import error
from ..memory import available_memory
from .evaluate import Evaluator, MC_SAMPLES, _method_label
from ..limit.symbols import Data
from .tileprogram import Bound, NotTileable, TiledProgram, data_block  # noqa: F401  (NotTileable re-exported)

#: Default share of the available memory a run may use (``--memory``).
MEMORY_FRACTION = 0.5
MANIFEST = "tensorprog.json"
MARKERS = "tiles_done"


class TileEvaluator(Evaluator):
    """The evaluator with some quantities given: ``bound`` maps a quantity to (value, error,
    methods) -- the per-point values and the data blocks of one tile."""

    def __init__(self, limit, bound, **options):
        super().__init__(limit, **options)
        self.bound = bound

    def _quantity(self, q):
        if q in self.bound:
            val, err, methods = self.bound[q]
            self.values[q], self.errors[q], self.methods[q] = val, err, methods
            return
        super()._quantity(q)

    def methods_behind(self, expr):
        out = set()
        for m in super().methods_behind(expr):
            out |= set(m) if isinstance(m, tuple) else {m}
        return out


class TileJob:
    """Everything a tile needs, picklable to reach a Dask worker: the tiled program, the per-point
    values and the evaluation options.  Tile limits (their plans and kernels) are built once per
    tile shape and process."""

    def __init__(self, limit, method="auto", samples=None, seed=0, backend="auto"):
        self.tiled = TiledProgram(limit)
        self.options = dict(method=method, samples=MC_SAMPLES if samples is None else samples, seed=seed,
                            backend=backend)
        self.points = None          # (q, m) -> (value, error, methods)
        self.point_results = None
        self.chunk = None           # the tile side: the plan of a tile program is made for full tiles
        self._tile_limits = {}
        self._lock = threading.Lock()   # a Dask worker may run tiles in several threads

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_tile_limits"] = {}
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def run_points(self):
        """The per-point pass: every point instance over the whole data set, and the point outputs."""
        limit, made = self.tiled.point_limit()
        limit.outputs["__kept__"] = [(None, inst.ref()) for inst in made.values()]
        ev = Evaluator(limit, **self.options)
        self.point_results = ev.run()
        self.points = {}
        for key, inst in made.items():
            methods = tuple(ev.methods_behind(inst.ref()))
            self.points[key] = (ev.values[inst], ev.errors[inst], methods)
        return self.point_results

    def tile_limit(self, group):
        """The tile program of an output group, built once per process (``TiledProgram.tile_limit``)."""
        if group not in self._tile_limits:
            self._tile_limits[group] = self.tiled.tile_limit(group)
        return self._tile_limits[group]

    def run_tile(self, group, ranges):
        """{output name: (value block, error block, method)} of the tile whose role p spans
        ``ranges[p]`` = (lo, hi).  Tiles run one at a time per process (the tile program's axes are
        resized for each); each tile is parallel over the row pool."""
        with self._lock:
            return self._run_tile(group, ranges)

    def _run_tile(self, group, ranges):
        from .fused import FUSE_MIN_POINTS
        from .plan import execution_plan

        fresh = group not in self._tile_limits
        limit, made, tile_axes = self.tile_limit(group)
        if fresh and self.options["backend"] == "auto":
            # planned at the full tile size, whichever tile comes first (an edge tile is smaller)
            for a in tile_axes:
                a.size = min(self.chunk or a.size, a.size)
            execution_plan(limit, FUSE_MIN_POINTS)
        for a, (lo, hi) in zip(tile_axes, ranges):
            a.size = hi - lo
        bound = {}
        for (q, roles), (inst, kind) in made.items():
            if kind == "point":
                val, err, methods = self.points[(q, len(roles))]
                if roles:
                    lo, hi = ranges[roles[0]]
                    val = val[lo:hi]
                    err = err[lo:hi] if np.ndim(err) else err
                bound[inst] = (val, err, methods)
            elif kind == "data":
                bound[inst] = (data_block(q.definition.array, roles, ranges), 0.0, "data")
        res = TileEvaluator(limit, bound, **self.options).run()
        return {name: (r.value, r.error, r.method) for name, r in res.outputs.items()}

    # ------------------------------------------------------------------ sizes

    def bytes_per_entry(self, group):
        """Estimated working set of a tile per grid entry: every tile quantity's values (and errors
        where uncertain), integration workspace, the data blocks and the outputs' values and errors."""
        from .fused import uncertain_quantities
        from .tileprogram import BoundUncertain
        from ..limit.symbols import Integral

        axes, names = self.tiled.groups[group]
        limit, made, _ = self.tile_limit(group)
        uncertain = uncertain_quantities(limit.quantities)
        per = 0
        for inst, kind in made.values():
            if len(inst.axes) < 2:
                continue
            per += 8 * (2 if inst in uncertain else 1)
            d = inst.definition
            if isinstance(d, Integral) and not isinstance(d, BoundUncertain):
                per += 8 * (d.dim + 1) ** 2
        items = sum(len(self.tiled.limit.outputs[n]) for n in names)
        # values and errors of the tile being computed, the one waiting and the one being written
        return per + 3 * 16 * items

    def fixed_bytes(self):
        """Memory held for the whole run: the per-point values (and errors) and the data tables the
        front end built (blocks of them are bound into each tile)."""
        n = sum(int(np.prod([a.size for a in q.axes[:1]])) for q, _ in self.tiled.points)
        data = sum(np.asarray(q.definition.array).nbytes for q in self.tiled.limit.quantities
                   if isinstance(q.definition, Data) and len(q.axes) >= 2)
        return 16 * n + data


def size_text(nbytes):
    """A byte count for people: GiB, MiB or KiB (memory.gib prints small sizes as 0.0 GiB)."""
    for unit, shift in (("GiB", 30), ("MiB", 20)):
        if nbytes >= 1 << shift:
            return f"{nbytes / 2 ** shift:.1f} {unit}"
    return f"{nbytes / 1024:.1f} KiB"




def tile_grid(axes, chunk):
    """The tiles of a grid over ``axes``: tuples of (lo, hi) per role, row-major."""
    import itertools

    spans = [[(lo, min(lo + chunk, a.size)) for lo in range(0, a.size, chunk)] for a in axes]
    return list(itertools.product(*spans))


def choose_chunk(job, budget):
    """The largest tile side (a multiple of 64, at least 64) whose working set fits ``budget`` bytes
    besides what the whole run holds (``TileJob.fixed_bytes``); never more than the largest axis."""
    left = max(budget - job.fixed_bytes(), 0)
    sides = []
    for g, (axes, _) in enumerate(job.tiled.groups):
        per = job.bytes_per_entry(g)
        side = int((left / per) ** (1.0 / len(axes)))
        sides.append(min(max(64, side // 64 * 64), max(a.size for a in axes)))
    return min(sides) if sides else 64


def fingerprint(limit, options, chunk):
    """What a store's results depend on: the program text, its constants and data, the evaluation
    options and the tile side (a resumed run must continue the same computation)."""
    h = hashlib.sha256()
    prog = limit.program
    h.update(prog.source.text.encode())
    h.update(repr(sorted((k, str(v)) for k, v in prog.consts.items())).encode())
    for name in sorted(prog.data):
        arr = np.ascontiguousarray(np.asarray(prog.data[name], dtype=float))
        h.update(name.encode() + repr(arr.shape).encode() + arr.tobytes())
    h.update(repr(sorted(options.items())).encode() + repr(chunk).encode())
    return h.hexdigest()


def free_disk_bytes(path):
    """Free bytes on the filesystem that will hold ``path`` (its nearest existing ancestor)."""
    p = os.path.abspath(path)
    while not os.path.exists(p):
        p = os.path.dirname(p)
    return shutil.disk_usage(p).free


def _marker(store, group, tile):
    return os.path.join(store, MARKERS, f"g{group}_" + "_".join(f"{lo}-{hi}" for lo, hi in tile))


def _write_marker(path):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("done\n")
    os.replace(tmp, path)


class Store:
    """A zarr store of a run's outputs: ``values/<name>`` and ``errors/<name>`` (float64, chunked by
    tile), the manifest (``tensorprog.json``: fingerprint, shapes, tile side) and one completion
    marker per finished tile (``tiles_done/``)."""

    def __init__(self, path, limit, options, chunk, resume=False):
        try:
            import zarr
        except ImportError:
            raise error(None, "--out STORE.zarr needs zarr: pip install 'tensorprog[large]'") from None

        self.path, self.chunk = path, chunk
        self.outputs = {o.name: o for o in limit.program.outputs}
        self._methods = set()
        self._raw_chunks = zarr.__version__.split(".")[0] == "3"
        manifest = {"fingerprint": fingerprint(limit, options, chunk), "chunk": chunk,
                    "source": limit.program.source.name,
                    "outputs": {o.name: list(o.array_shape) for o in limit.program.outputs}}
        mpath = os.path.join(path, MANIFEST)
        if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
            if not os.path.isfile(mpath):
                raise error(None, f"--out {path}: exists and is not a tensorprog store (no {MANIFEST}); "
                                  "refusing to overwrite it")
            with open(mpath) as fh:
                old = json.load(fh)
            if not resume:
                raise error(None, f"--out {path}: a store of a run exists there; continue it with --resume, "
                                  "or remove it")
            if old.get("fingerprint") != manifest["fingerprint"]:
                raise error(None, f"--out {path}: the store holds a run of another program, data, options "
                                  f"or tile size ({old.get('source')}, tile {old.get('chunk')}); --resume "
                                  "continues only the same run")
            self.root = zarr.open_group(path, mode="r+")
        else:
            if resume:
                print(f"note: --resume: {path} does not exist yet; starting a new run", file=sys.stderr)
            self.root = zarr.open_group(path, mode="w")
            for o in limit.program.outputs:
                shape = tuple(o.array_shape)
                chunks = tuple(s if kind == "u" else min(chunk or s, max(s, 1)) for s, (kind, _) in zip(shape, o.layout))
                for part in ("values", "errors"):
                    self.root.create_array(f"{part}/{o.name}", shape=shape, chunks=chunks or None, dtype="f8",
                                           fill_value=0.0, compressors=None)
            os.makedirs(os.path.join(path, MARKERS), exist_ok=True)
            tmp = mpath + ".tmp"
            with open(tmp, "w") as fh:
                json.dump(manifest, fh, indent=1)
            os.replace(tmp, mpath)
        os.makedirs(os.path.join(path, MARKERS), exist_ok=True)

    def done(self, group, tile):
        return os.path.exists(_marker(self.path, group, tile))

    def points_done(self):
        return os.path.exists(os.path.join(self.path, MARKERS, "points"))

    def write(self, name, value, error, tile=None, methods=""):
        """Write an output's block (the whole output when ``tile`` is None)."""
        o = self.outputs[name]
        region = tuple(slice(None) if kind == "u" or tile is None else slice(*tile[k]) for kind, k in o.layout)
        self._put(f"values/{name}", region, value)
        if np.any(error):       # zero errors (closed forms) are the fill value: nothing to write
            self._put(f"errors/{name}", region, np.broadcast_to(error, np.shape(value)))
        if methods and name not in self._methods:
            self.root[f"values/{name}"].attrs["method"] = methods
            self._methods.add(name)

    def _put(self, key, region, block):
        """Write ``block`` at ``region`` of the array ``key``.  A block that is exactly one chunk (a
        tile) is written as that chunk's file directly -- the format of the arrays made here (zarr 3,
        no compression, the "bytes" codec: the chunk's C-order little-endian float64 values, an edge
        chunk padded with the fill value 0) -- under a temporary name, then renamed: zarr's own
        write path costs several times the bytes' copy, on the critical path of a run.  Anything
        else goes through zarr."""
        arr = self.root[key]
        index = []
        for sl, c, n in zip(region, arr.chunks, arr.shape):
            lo, hi, _ = sl.indices(n)
            if lo % c or hi != min(lo + c, n):
                index = None
                break
            index.append(lo // c)
        if not index or not self._raw_chunks:
            arr[region] = block
            return
        block = np.asarray(block, dtype="<f8")
        if block.shape != tuple(arr.chunks):
            full = np.zeros(arr.chunks, dtype="<f8")
            full[tuple(slice(0, n) for n in block.shape)] = block
            block = full
        path = os.path.join(self.path, *key.split("/"), "c", *map(str, index))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "wb") as fh:
            np.ascontiguousarray(block).tofile(fh)
        os.replace(path + ".tmp", path)

    def mark(self, group, tile):
        _write_marker(_marker(self.path, group, tile))

    def mark_points(self):
        _write_marker(os.path.join(self.path, MARKERS, "points"))


def estimate(job, chunk):
    """(memory bytes, disk bytes) of a run with tile side ``chunk``."""
    limit = job.tiled.limit
    tiles = max((job.bytes_per_entry(g) * min(chunk, max(a.size for a in axes)) ** len(axes)
                 for g, (axes, _) in enumerate(job.tiled.groups)), default=0)
    uncertain = bool(job.tiled.uncertain)
    disk = sum(8 * int(np.prod(o.array_shape)) * (2 if uncertain else 1) for o in limit.program.outputs)
    return job.fixed_bytes() + tiles, disk


def evaluate_to_store(limit, path, method="auto", samples=None, seed=0, memory=None, chunk=None, resume=False,
                      scheduler=None, log=None):
    """Evaluate ``limit`` tile by tile into the zarr store ``path``; returns a summary dict.

    ``memory``: the budget in bytes (default MEMORY_FRACTION of the available memory); ``chunk``:
    the tile side (default: chosen from the budget); ``scheduler``: None (this process), "local"
    (a dask.distributed LocalCluster, one worker per core) or a scheduler address "tcp://host:port".
    Raises NotTileable for programs that couple the points of a family.
    """
    log = log or (lambda s: print(s, file=sys.stderr))
    t0 = time.perf_counter()
    job = TileJob(limit, method=method, samples=samples, seed=seed)
    budget = memory if memory is not None else int(MEMORY_FRACTION * (available_memory() or 4 << 30))
    chunk = chunk or choose_chunk(job, budget)
    job.chunk = chunk
    mem, disk = estimate(job, chunk)
    tiles = [(g, t) for g, (axes, _) in enumerate(job.tiled.groups) for t in tile_grid(axes, chunk)]
    log(f"{limit.program.source.name}: {len(tiles)} tiles of up to {chunk} x {chunk} points; "
        f"memory about {size_text(mem)} (budget {size_text(budget)}), disk up to {size_text(disk)}")
    if mem > budget:
        raise error(None, f"evaluating {limit.program.source.name} out of core needs about {size_text(mem)} of memory "
                          f"(per-point values, data tables and one tile of {chunk} points), but the budget "
                          f"(--memory) is {size_text(budget)}")
    if scheduler is None:
        return _run(job, path, tiles, chunk, disk, resume, None, log, t0)
    from .distributed import Cluster

    # connect first: an unreachable scheduler leaves no store behind
    with Cluster(scheduler) as cluster:
        return _run(job, path, tiles, chunk, disk, resume, cluster, log, t0)


def _run(job, path, tiles, chunk, disk, resume, cluster, log, t0):
    new = not os.path.exists(path)
    store = Store(path, job.tiled.limit, job.options, chunk, resume=resume)
    todo = [(g, t) for g, t in tiles if not store.done(g, t)]
    need = disk * len(todo) / max(len(tiles), 1) if tiles else disk
    free = free_disk_bytes(path)
    if need > free:
        if new:      # the empty store this run just made; an existing one is left as it is
            shutil.rmtree(path, ignore_errors=True)
        raise error(None, f"--out {path}: the results need up to {size_text(need)} of disk "
                          f"({len(todo)} tiles still to write), but only {size_text(free)} is free there"
                          + (f"; the {len(tiles) - len(todo)} finished tiles are kept" if len(todo) < len(tiles) else ""))
    if resume and len(todo) < len(tiles):
        log(f"resuming: {len(tiles) - len(todo)} of {len(tiles)} tiles already done")
    job.run_points()
    if not store.points_done():
        for name in job.tiled.point_outputs:
            r = job.point_results[name]
            _guard_disk(store.write, name, r.value, r.error, None, r.method)
        store.mark_points()
    t1 = time.perf_counter()
    if cluster is None:
        run_tiles_here(job, store, todo)
    else:
        from .distributed import run_tiles_dask

        run_tiles_dask(job, store, todo, cluster, log=log)
    t2 = time.perf_counter()
    return {"tiles": len(tiles), "computed": len(todo), "chunk": chunk, "disk": disk,
            "points_time": t1 - t0, "tiles_time": t2 - t1, "total_time": t2 - t0}


def evaluate_whole_to_store(limit, path, method="auto", samples=None, seed=0, resume=False, log=None):
    """The fallback for a program that couples the points of a family: evaluated in memory as a
    whole (Evaluator), then written to the store in one piece."""
    from .evaluate import evaluate

    options = dict(method=method, samples=MC_SAMPLES if samples is None else samples, seed=seed, backend="auto")
    store = Store(path, limit, options, 0, resume=resume)
    if store.points_done():
        return {"tiles": 1, "computed": 0}
    res = evaluate(limit, method=method, samples=samples, seed=seed)
    for name, r in res.outputs.items():
        _guard_disk(store.write, name, r.value, r.error, None, r.method)
    store.mark_points()
    return {"tiles": 1, "computed": 1}


def _guard_disk(write, *args):
    """A failed write (a full disk) is an error that says what is kept: finished tiles have markers."""
    try:
        write(*args)
    except OSError as e:
        raise error(None, f"cannot write the store ({e.strerror or e}); every tile finished so far is kept: "
                          "free space and continue with --resume") from None


def store_tile(store, group, tile, blocks):
    """Write a finished tile's output blocks, then its completion marker."""
    for name, (value, err, methods) in blocks.items():
        _guard_disk(store.write, name, value, err, tile, methods)
    _guard_disk(store.mark, group, tile)


def run_tiles_here(job, store, todo):
    """The tiles in this process, one after the other (each one parallel over the row pool), while a
    writer thread stores the previous one (at most one finished tile waits).  An interruption lets
    the writer finish the tiles already computed before it stops."""
    import queue

    from ..progress import Progress

    bar = Progress(len(todo), name="tiles")
    waiting = queue.Queue(maxsize=1)
    failure = []

    def writer():
        while (item := waiting.get()) is not None:
            if not failure:
                try:
                    store_tile(store, *item)
                except BaseException as e:  # re-raised in the caller's thread
                    failure.append(e)

    thread = threading.Thread(target=writer, name="tensorprog-store-writer", daemon=True)
    thread.start()
    try:
        for group, tile in todo:
            if failure:
                break
            waiting.put((group, tile, job.run_tile(group, tile)))
            bar.advance(1, f"tile {tile}")
    finally:
        waiting.put(None)
        thread.join()
        bar.close()
    if failure:
        raise failure[0]


def open_store(path):
    """The outputs of a store as {name: (values zarr array, errors zarr array)}."""
    import zarr

    root = zarr.open_group(path, mode="r")
    return {name: (root[f"values/{name}"], root[f"errors/{name}"]) for name in root["values"].array_keys()}


def method_label(methods):
    return _method_label(set(methods))


def parse_memory(text):
    """A memory size: bytes, or a number with K, M, G or T (binary units), e.g. 2G or 1.5GiB."""
    t = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if scale > 1 else t)
    except ValueError:
        raise error(None, f"--memory: expected a size such as 2G or 512M, got '{text}'") from None
    if not value > 0 or not np.isfinite(value):
        raise error(None, f"--memory must be positive, got '{text}'")
    return int(value * scale)


def run_cli(args, limit):
    """``tpc eval PROGRAM --out STORE.zarr``: the out-of-core run, or the in-memory fallback for a
    program whose quantities couple the points of a family."""
    memory = parse_memory(args.memory) if args.memory else None
    if args.chunk is not None and args.chunk < 1:
        raise error(None, f"--chunk must be at least 1, got {args.chunk}")
    try:
        summary = evaluate_to_store(limit, args.out, method=args.method, samples=args.samples, seed=args.seed,
                                    memory=memory, chunk=args.chunk, resume=args.resume, scheduler=args.scheduler)
    except NotTileable as e:
        print(f"note: {e}; evaluating it in memory as a whole", file=sys.stderr)
        summary = evaluate_whole_to_store(limit, args.out, method=args.method, samples=args.samples,
                                          seed=args.seed, resume=args.resume)
    shapes = ", ".join(f"{o.name} {'x'.join(map(str, o.array_shape)) or 'scalar'}" for o in limit.program.outputs)
    print(f"{limit.program.source.name}: {shapes} written to {args.out} "
          f"({summary['computed']} of {summary['tiles']} tiles computed in this run"
          + (f", {summary['total_time']:.2f} s)" if "total_time" in summary else ")"))
    return 0
