"""Load generated numba source as a real module, so that ``cache=True`` kernels persist on disk.

numba caches only functions defined at module level in a real file, and it validates its on-disk
cache by the defining file's modification time and size alone. Generated source is therefore
written once to ``<cache_dir()>/<stem>_<h>.py``, where h is the first 16 hex digits of the SHA-256
of the source, and imported from there. A file is never rewritten once it exists (so its mtime, and
with it numba's cache index in the ``__pycache__`` folder beside it, stays valid), and the directory
is keyed by the tensorprog and numba versions because numba does not notice when a function that a
cached kernel calls has changed.
"""
import hashlib
import importlib.util
import os
import pathlib
import sys
import tempfile
import threading

import numba

from tensorprog._version import __version__

_ENV_VAR = "TENSORPROG_CACHE_DIR"
_MODULE_PREFIX = "tensorprog_generated"

_loaded = {}
_lock = threading.RLock()


def cache_dir():
    """Directory for generated modules: ``$TENSORPROG_CACHE_DIR`` if set, else
    ``~/.cache/tensorprog/<tensorprog version>/<numba version>/``; created if missing."""
    override = os.environ.get(_ENV_VAR)
    if override:
        path = pathlib.Path(override)
    else:
        path = pathlib.Path.home() / ".cache" / "tensorprog" / __version__ / numba.__version__
    path.mkdir(parents=True, exist_ok=True)
    return path


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
    """Import ``source`` as the module ``tensorprog_generated_<stem>_<h>`` from the file
    ``cache_dir() / f"{stem}_{h}.py"`` (h = ``source_digest(source)``), writing the file only if
    it does not exist. Within one process the same source (in the same cache directory) always
    returns the same module object."""
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
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        _loaded[path] = module
        return module
