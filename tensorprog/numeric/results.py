"""Named results of an evaluation: values, error estimates and the methods that produced them."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass

import numpy as np


@dataclass
class OutputResult:
    """One output: ``value`` and ``error`` arrays of the output's shape, and the ``method``."""

    name: str
    value: np.ndarray
    error: np.ndarray
    method: str
    output: object = None

    def __repr__(self):
        return f"OutputResult({self.name}, shape={self.value.shape}, method={self.method!r})"

    def format(self, digits=10) -> str:
        head = f"{self.name}  [{self.method}]  max error estimate {float(np.max(self.error, initial=0.0)):.1e}"
        if self.value.ndim == 0:
            return f"{self.name} = {float(self.value):.{digits}g} ± {float(self.error):.1e}  [{self.method}]"
        with np.printoptions(precision=min(digits, 8), suppress=False, linewidth=110, floatmode="maxprec"):
            body = np.array2string(self.value, separator="  ")
        return head + "\n" + body


class Results:
    """The outputs of :func:`tensorprog.evaluate`, by name: ``res["K"].value``, ``.error``, ``.method``."""

    def __init__(self, outputs, evaluator=None):
        self.outputs = dict(outputs)
        self.timings = dict(evaluator.timings) if evaluator is not None else {}
        self._evaluator = evaluator

    def __getitem__(self, name) -> OutputResult:
        return self.outputs[name]

    def __iter__(self):
        return iter(self.outputs.values())

    def __contains__(self, name):
        return name in self.outputs

    def __repr__(self):
        return f"Results({', '.join(self.outputs)})"

    def format(self, digits=10) -> str:
        return "\n\n".join(o.format(digits) for o in self.outputs.values())

    __str__ = format

    def to_dict(self):
        return {name: {"value": o.value.tolist(), "error": o.error.tolist(), "method": o.method,
                       "shape": list(o.value.shape)} for name, o in self.outputs.items()}

    def to_json(self) -> str:
        return json.dumps({"outputs": self.to_dict(), "timings": self.timings}, indent=1)

    def save(self, path):
        """Write ``.npz`` (arrays ``<name>`` and ``<name>_error``) or ``.json``, atomically: into a
        temporary file beside ``path``, then renamed, so an interrupted run never leaves half a file."""
        path = str(path)
        if not path.endswith((".json", ".npz")):
            raise ValueError("the output file must end in .npz or .json")
        with atomic_output(path) as fh:
            if path.endswith(".json"):
                fh.write(self.to_json().encode())
            else:
                arrays = {}
                for name, o in self.outputs.items():
                    arrays[name] = o.value
                    arrays[f"{name}_error"] = o.error
                np.savez(fh, **arrays)


@contextlib.contextmanager
def atomic_output(path):
    """A binary file object whose content replaces ``path`` only when the block completes."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tpc-", suffix=os.path.splitext(path)[1], dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)       # mkstemp makes 0600; a written result gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
