"""Is my parametrization right?  Width exponents of every value, at initialisation and after each step.

``tensorprog.scaling(program)`` (``tpc scaling prog.tp``) reads a program's trainings (``gd(...)``:
the output's scale, the parameters' rates, the steps) and returns a :class:`ScalingReport`: for every
named vector and scalar the exponent k of "Theta(n^k)" at initialisation and of its change after each
step, and a verdict (unstable / trivial / kernel regime / feature learning), without training
anything (tensorprog/scaling/analysis.py states the rules).  The empirical check beside it is
:func:`tensorprog.scaling.coordcheck.coord_check` (``tpc simulate --coord-check``).
"""
from __future__ import annotations

import sys
import types

from .report import ScalingReport, analyse_program


def scaling(program, defines=None) -> ScalingReport:
    """The width exponents of a program (a path or program text: parsed width-dependent, so that
    scalars like ``sqrt(n) * mean(...)`` and rates like ``n`` are allowed; or a Program parsed with
    ``width_dependent=True``)."""
    from ..frontend.load import parse

    if not hasattr(program, "instructions"):
        program = parse(program, defines=defines, width_dependent=True)
    return analyse_program(program)


__all__ = ["scaling", "ScalingReport"]


class _CallableModule(types.ModuleType):
    """Lets ``tensorprog.scaling`` be both this package and the function ``scaling``."""

    def __call__(self, *args, **kwargs):
        return scaling(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
