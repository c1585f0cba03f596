"""tensorprog: a compiler for Tensor Programs and their infinite-width limits.

Public API::

    prog = tensorprog.parse("examples/mlp_nngp.tp")      # or program text
    print(prog)                                          # the instruction listing
"""
from ._version import __version__
from .errors import TPError
from .frontend.load import parse

__all__ = ["__version__", "TPError", "parse"]
