"""tensorprog: a compiler for Tensor Programs and their infinite-width limits.

Public API::

    prog = tensorprog.parse("examples/mlp_nngp.tp")      # or program text; defines={"L": 5}
    print(prog)                                          # the instruction listing
    limit = tensorprog.derive(prog)                      # the symbolic limit
    print(limit); limit.latex()
    res = tensorprog.evaluate(limit)                     # numbers: res["K"].value, .error, .method
    sim = tensorprog.simulate(prog, 1024, seeds=10)      # the same program at finite width
    rep = tensorprog.scaling("prog.tp")                  # width exponents: is the parametrization right?
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


def evaluate(program, method="auto", samples=None, seed=0, threads=None, defines=None, progress=None, chunks=None):
    """Numbers for the limit of a program (a LimitProgram, Program, path or text).

    Returns :class:`~tensorprog.numeric.results.Results`: ``res["K"].value``, ``.error`` (error
    estimate or standard error), ``.method``.  ``method``: auto, closed, series, quad, mc, or sampled
    (no derivation: the limit's Z drawn instruction by instruction; auto's choice for programs that
    unroll 2+ training steps).  ``samples``: per Monte Carlo expectation (default 2^20), or draws in
    total for sampled (default 2^18).

    ``chunks``: a tile side in points: instead of Results, return ``{name: dask array}`` of the
    outputs' values, evaluated tile by tile when computed (docs/large.md).
    """
    if chunks is not None:
        from .numeric.distributed import evaluate_lazy

        return evaluate_lazy(program, chunks, method=method, samples=samples, seed=seed, defines=defines)
    from .numeric.evaluate import evaluate as _evaluate

    return _evaluate(program, method=method, samples=samples, seed=seed, threads=threads, defines=defines,
                     progress=progress)


from . import simulate  # noqa: E402  (the module is callable: tensorprog.simulate(program, width, seeds))
from . import scaling  # noqa: E402  (callable too: tensorprog.scaling(program), docs/scaling.md)
from .nonlinearities import register_nonlinearity  # noqa: E402

from .predict_program import predict  # noqa: E402  NNGP/NTK predictions (docs/predict.md)

__all__ = ["__version__", "TPError", "parse", "derive", "evaluate", "simulate", "scaling", "predict",
           "register_nonlinearity"]
