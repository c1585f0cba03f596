"""Load generated numba source as a real module, so that ``cache=True`` kernels persist on disk.

numba caches only functions defined at module level in a real file, and it validates its on-disk
cache by the defining file's modification time and size alone. Generated source is therefore
written once to ``<cache_dir()>/<stem>_<h>.py``, where h is the first 16 hex digits of the SHA-256
of the source. A file is never rewritten once it exists (so its mtime, and with it numba's cache
index, stays valid), and the directory is keyed by the tensorprog and numba versions because numba
does not notice when a function that a cached kernel calls has changed.

Trust: the cache holds code, and numba's cache files are pickles, so anyone who can write the
directory could run code as the user.  The directory is therefore created user-only (0700) and used
only if it and its ancestors are owned by the user (or root) and not writable by others (sticky
ancestors such as /tmp excepted); otherwise, or if it cannot be written, kernels are compiled into a
private temporary directory for this process, with a warning.  A generated module is executed from
the source in memory (compiled here, never from bytecode found on disk), after its file has been
checked to hold exactly that source.  numba's own cache files, of generated and of the package's
static kernels (:func:`njit`), live in ``<cache_dir()>/numba``; an unreadable entry is recompiled.
"""
import atexit
import contextlib
import hashlib
import os
import pathlib
import shutil
import stat
import sys
import tempfile
import threading
import types
import warnings

import numba

from tensorprog._version import __version__

_ENV_VAR = "TENSORPROG_CACHE_DIR"
_MODULE_PREFIX = "tensorprog_generated"

_loaded = {}
_lock = threading.RLock()


def configured_dir() -> pathlib.Path:
    """``$TENSORPROG_CACHE_DIR`` if set, else ``~/.cache/tensorprog/<tensorprog version>/<numba version>/``."""
    override = os.environ.get(_ENV_VAR)
    if override:
        return pathlib.Path(override)
    return pathlib.Path.home() / ".cache" / "tensorprog" / __version__ / numba.__version__


def untrusted_reason(path) -> str | None:
    """Why ``path`` must not hold code (None if it may): it, or an ancestor, is owned by another user
    or writable by others (an ancestor with the sticky bit, such as /tmp, is fine)."""
    path = pathlib.Path(path).absolute()
    uid = os.getuid() if hasattr(os, "getuid") else None
    for i, p in enumerate([path, *path.parents]):
        try:
            st = os.stat(p)
        except OSError as e:
            return f"cannot inspect {p}: {e.strerror or e}"
        if uid is not None and st.st_uid not in (uid, 0):
            return f"{p} is owned by another user"
        writable_by_others = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if writable_by_others and (i == 0 or not st.st_mode & stat.S_ISVTX):
            return f"{p} is writable by other users"
    return None


_chosen = {}
_warned = set()


def _warn_once(message):
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def cache_dir():
    """Directory for generated modules: :func:`configured_dir`, created user-only if missing, when it
    is trusted and writable; else a private temporary directory for this process (with a warning)."""
    path = configured_dir()
    with _lock:
        chosen = _chosen.get(path)
        if chosen is not None and chosen.is_dir():
            return chosen
        reason = None
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            reason = untrusted_reason(path)
            if reason is None and not os.access(path, os.W_OK | os.X_OK):
                reason = f"{path} is not writable"
        except OSError as e:
            reason = f"cannot create {path}: {e.strerror or e}"
        if reason is None:
            chosen = path
        else:
            chosen = pathlib.Path(tempfile.mkdtemp(prefix="tensorprog-kernels-"))     # 0700
            atexit.register(shutil.rmtree, chosen, True)
            _warn_once(f"not using the kernel cache {path} ({reason}); kernels are compiled into a "
                       f"private temporary directory for this run. Fix: chmod 700 the directory, or set "
                       f"{_ENV_VAR} to a directory only you can write")
        _chosen[path] = chosen
        return chosen


@contextlib.contextmanager
def numba_cache_location():
    """Within the block, numba functions decorated with ``cache=True`` keep their cache files in
    ``cache_dir()/numba`` (numba reads its CACHE_DIR setting when a function is decorated)."""
    old = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = str(cache_dir() / "numba")
    try:
        yield
    finally:
        numba.config.CACHE_DIR = old


def guard_cache(dispatcher):
    """Make a cached dispatcher's disk cache unable to break a run: an entry that cannot be read
    (a truncated or corrupted index or data file) is removed and the kernel compiled in memory;
    a cache that cannot be written is skipped."""
    cache = getattr(dispatcher, "_cache", None)
    if cache is None or not hasattr(cache, "load_overload") or getattr(cache, "_tensorprog_guarded", False):
        return dispatcher
    load, save = cache.load_overload, cache.save_overload

    def load_overload(sig, target_context):
        try:
            return load(sig, target_context)
        except Exception as e:
            index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
            if index:
                with contextlib.suppress(OSError):
                    os.unlink(index)
            _warn_once(f"a numba cache entry could not be read ({type(e).__name__}); it was removed "
                       f"and the kernel is compiled again")
            return None

    def save_overload(sig, data):
        try:
            save(sig, data)
        except Exception as e:
            _warn_once(f"a compiled kernel could not be saved in the cache ({type(e).__name__}: {e}); "
                       f"it is used from memory")

    cache.load_overload, cache.save_overload = load_overload, save_overload
    cache._tensorprog_guarded = True
    return dispatcher


def njit(*args, **options):
    """``numba.njit`` for the package's static kernels: with ``cache=True`` the cache files go to the
    tensorprog cache directory (not the package's own folder, often read-only) and are guarded."""
    if not options.get("cache"):
        return numba.njit(*args, **options)

    def decorate(fn):
        with numba_cache_location():
            return guard_cache(numba.njit(**options)(fn))

    if args and callable(args[0]):
        return decorate(args[0])
    return decorate


def source_digest(source):
    """First 16 hex digits of SHA-256(source as UTF-8): the name key of a generated file."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def _publish(path, source):
    """Create ``path`` holding ``source`` unless it already holds it.

    The text goes to a temporary file in the same directory first, so no reader ever sees a partial
    file. It is then hard-linked into place, which fails if another process got there first; the
    existing file is kept in that case because rewriting it would change its mtime and invalidate
    the numba cache entries compiled from it. Only a file with foreign content (a corrupted cache)
    is replaced.
    """
    data = source.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return
        replace = True
    except FileNotFoundError:
        replace = False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        if replace:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:
            # Filesystems without hard links: a rename is still atomic, and a racing writer of
            # the same name writes the same bytes.
            if not path.exists():
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_generated(source, stem="kernel"):
    """Execute ``source`` as the module ``tensorprog_generated_<stem>_<h>`` whose file is
    ``cache_dir() / f"{stem}_{h}.py"`` (h = ``source_digest(source)``), writing the file only if it
    does not already hold exactly ``source``. The code run is compiled from ``source`` itself, never
    from the file or any bytecode beside it. Within one process the same source (in the same cache
    directory) always returns the same module object."""
    if not stem.isidentifier():
        raise ValueError(f"stem must be a Python identifier, got {stem!r}")
    path = cache_dir() / f"{stem}_{source_digest(source)}.py"
    with _lock:
        module = _loaded.get(path)
        if module is not None:
            return module
        _publish(path, source)
        name = f"{_MODULE_PREFIX}_{path.stem}"
        suffix = 0
        while name in sys.modules:
            # The same file name in another cache directory (the directory changed mid-process).
            suffix += 1
            name = f"{_MODULE_PREFIX}_{path.stem}_{suffix}"
        module = types.ModuleType(name)
        module.__file__ = str(path)     # numba locates a function's cache through its defining file
        sys.modules[name] = module
        try:
            with numba_cache_location():
                exec(compile(source, str(path), "exec"), module.__dict__)
        except BaseException:
            del sys.modules[name]
            raise
        for value in list(vars(module).values()):
            if hasattr(value, "_cache") and hasattr(value, "py_func"):
                guard_cache(value)
        _loaded[path] = module
        return module
