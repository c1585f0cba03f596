"""tensorprog: a compiler for Tensor Programs and their infinite-width limits.

Public API::

    prog = tensorprog.parse("examples/mlp_nngp.tp")      # or program text; defines={"L": 5}
    print(prog)                                          # the instruction listing
    limit = tensorprog.derive(prog)                      # the symbolic limit
    print(limit); limit.latex()
"""
from ._version import __version__
from .errors import TPError
from .frontend.load import parse


def derive(program, defines=None):
    """The symbolic infinite-width limit of a program (a Program, a path or program text).

    Returns a :class:`~tensorprog.limit.program.LimitProgram`: printable as text,
    ``.latex()`` and ``.to_json()``.
    """
    from .limit.derive import derive as _derive

    if not hasattr(program, "instructions"):
        program = parse(program, defines=defines)
    return _derive(program)


__all__ = ["__version__", "TPError", "parse", "derive"]
