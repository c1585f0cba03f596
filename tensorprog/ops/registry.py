"""Per-interpretation rule tables for IR instructions (JAX style).

An *interpretation* of a program (type checking, the limit derivation, finite-width simulation,
its memory estimate, the listing, readable names, the front end's hash-consing keys, the dataflow
graph, reverse-mode differentiation) is a :class:`RuleTable`: a dict from instruction class to the
function implementing the instruction under that interpretation.  Each op registers its own rules in its module under
``tensorprog/ops/`` (``@SIMULATE.register(MatMul)``), and each interpretation is one short loop
(:func:`interpret`) that dispatches through its table and reports a failure at the failing
instruction's source position.
"""
from __future__ import annotations

from ..errors import TPError, error


class RuleTable(dict):
    """instruction class -> rule, for one interpretation called ``name``."""

    def __init__(self, name: str, doc: str = ""):
        super().__init__()
        self.name = name
        self.doc = doc

    # a table is one interpretation: compared and hashed by identity, not by its contents
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def register(self, *classes):
        """Decorator: ``fn`` is this interpretation's rule for each of ``classes``."""
        def deco(fn):
            for cls in classes:
                self[cls] = fn
            return fn
        return deco

    def rule(self, ins):
        """The rule for ``ins`` (an internal error naming the gap if the op did not register one)."""
        try:
            return self[type(ins)]
        except KeyError:
            raise error(getattr(ins, "pos", None),
                        f"internal: no '{self.name}' rule for instruction {type(ins).__name__}") from None


CHECK = RuleTable("check", "ins -> iterable of error messages (kinds, widths, arities, symbols)")
CSE_KEY = RuleTable("cse_key", "(cls, axes, **fields) -> hashable key; equal keys mean the same instruction")
DERIVE = RuleTable("derive", "(deriver, ins) -> None; records the Z / theta / sigma^2 of ins.out (limit pass)")
GAUSSIAN_MEAN = RuleTable("gaussian_mean", "(deriver, atom) -> E of an atom created by this op")
GAUSSIAN_COV = RuleTable("gaussian_cov", "(deriver, a, b, axes) -> Cov of two atoms of one group of this op")
SIMULATE_PREPARE = RuleTable("simulate_prepare", "(simulator, ins) -> None; once per program")
SIMULATE = RuleTable("simulate", "(simulator, ins, env, sizes, width, rng, pool) -> None; sets env[ins.out.id]")
SAMPLE_LIMIT = RuleTable("sample_limit", "(sampler, ins, env, sizes, samples, rng, pool) -> None; sets env[ins.out.id] to "
                                         "samples of its limit Z (vectors) or its limit (scalars): "
                                         "simulate/limit_sampler.py")
MEMORY = RuleTable("memory", "(simulator, ins, nbytes, sizes, born) -> (bytes made live, temporary bytes)")
LISTING = RuleTable("listing", "ins -> the body of its line in the program listing")
DESCRIBE = RuleTable("describe", "(ins, arg_text, show) -> readable text (arg_text(arg, show) names an argument), "
                                  "or None for the value's own name")
EDGES = RuleTable("edges", "ins -> iterable of (input value, role) for the dataflow graph")
SCALING_SIZE = RuleTable("scaling_size", "(analysis, ins) -> None; sets analysis.size[ins.out.id], the width "
                                         "exponent of ins.out at initialisation (tpc scaling: tensorprog/scaling)")
SCALING_CHANGE = RuleTable("scaling_change", "(analysis, ins) -> None; sets analysis.step_change[ins.out.id], the "
                                             "width exponent of ins.out's change in this step (first order)")
SCALING_ADJOINT = RuleTable("scaling_adjoint", "(analysis, ins) -> None; reverse: the width exponents of n df/dx "
                                               "(vectors) or df/dx (scalars) of ins's inputs x from ins.out's")
BACKWARD = RuleTable("backward", "(bw, ins) -> None; reverse mode: adds the contributions of ins.out's adjoint "
                                 "to its inputs' adjoints (frontend/grad.py)")

#: Every interpretation an instruction class must have a rule for.  (CSE_KEY only for ops the front
#: end shares, GAUSSIAN_MEAN / GAUSSIAN_COV only for ops whose derive rule creates Gaussian atoms.)
INTERPRETATIONS = (CHECK, DERIVE, SIMULATE_PREPARE, SIMULATE, SAMPLE_LIMIT, MEMORY, LISTING, DESCRIBE, EDGES, BACKWARD,
                   SCALING_SIZE, SCALING_CHANGE, SCALING_ADJOINT)


def interpret(table: RuleTable, instructions, owner, *extra, errors=(), message=None):
    """Run ``table``'s rule ``rule(owner, ins, *extra)`` on each instruction in order (``owner``: the
    interpreter's state, e.g. the Deriver or Simulator); yields (i, ins, rule result).

    A TPError from a rule passes through; an exception in ``errors`` becomes a TPError at the
    instruction's source position, worded by ``message(ins, exc)`` (default ``str(exc)``).
    """
    for i, ins in enumerate(instructions):
        rule = table.rule(ins)
        try:
            result = rule(owner, ins, *extra)
        except TPError:
            raise
        except errors as e:
            raise error(ins.pos, message(ins, e) if message else str(e)) from None
        yield i, ins, result


def nothing(*_args):
    """A rule that does nothing (an interpretation this op has no work in)."""
    return None


def no_messages(*_args):
    return ()
