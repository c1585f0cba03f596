"""The instructions of the IR, one module per op, each with its rules for every interpretation.

``registry`` holds one :class:`~tensorprog.ops.registry.RuleTable` per interpretation (check,
CSE key, derive, simulate, the sampled limit, memory estimate, listing, readable names, graph edges,
reverse mode); importing this
package registers every builtin op's rules.  See docs/contributing.md ("Add an instruction").
"""
from ..ir import core as _core  # noqa: F401  (the base records; core re-exports the op classes below)
from .init import InitMatrix, InitScalar, InitVector
from .matmul import MatMul
from .moment import Moment
from .nonlin import Nonlin
from .scalar_fn import ScalarFn

#: Every builtin instruction class.
BUILTIN_OPS = (InitMatrix, InitVector, InitScalar, MatMul, Nonlin, Moment, ScalarFn)

__all__ = ["InitMatrix", "InitVector", "InitScalar", "MatMul", "Nonlin", "Moment", "ScalarFn", "BUILTIN_OPS"]
