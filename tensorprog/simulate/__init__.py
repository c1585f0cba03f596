"""Finite-width simulation of Tensor Programs and convergence checks against the limit.

    sim = tensorprog.simulate.simulate(program, width=1024, seeds=10)   # sim.mean["K"], sim.stderr["K"]
    conv = tensorprog.simulate.convergence(program, [256, 1024, 4096], seeds=20)
    print(conv.table())

The module itself is callable: ``tensorprog.simulate(program, width, seeds)`` is ``simulate``.
"""
import sys
import types

from .convergence import Convergence, WidthPoint, convergence, fit_exponent
from .simulator import Progress, Simulation, Simulator, available_memory, estimate_memory, simulate, trace

__all__ = ["simulate", "convergence", "trace", "estimate_memory", "available_memory", "fit_exponent",
           "Simulator", "Simulation", "Convergence", "WidthPoint", "Progress"]


class _CallableModule(types.ModuleType):
    """Lets ``tensorprog.simulate`` be both this package and the function ``simulate``."""

    def __call__(self, *args, **kwargs):
        return simulate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
