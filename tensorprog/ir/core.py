"""The IR: small immutable records for NETSOR-transpose-plus instructions.

A program is a list of instructions in execution order.  Each instruction
defines one :class:`Value` (a matrix, a vector or a scalar).  A value may be a
*family*: one member per element of its ``axes`` (data sets, e.g. one vector per
input point).  Families are never expanded: an instruction over a family is a
template, and its arguments say, through :class:`Arg` index terms, which member
of each argument a member of the output uses::

    K[a0, a1] = Moment(relu(x0) * relu(x1); h[a0], h[a1])     # an N x N family

Index terms are :class:`AxisRef` (the output's axis p) or an ``int`` (a fixed
member).  Unrolled loops (layers, time steps) produce separate values.

Coordinatewise functions are sympy expressions over the formal symbols
``VEC_ARGS`` (vector arguments) and ``PARAMS`` (scalar parameters).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import sympy

from ..errors import SourcePos

__all__ = [
    "Kind", "Axis", "Value", "AxisRef", "Arg", "GaussianBlock", "Instr", "InitMatrix", "InitVector",
    "InitScalar", "MatMul", "Nonlin", "Moment", "ScalarFn", "Output", "VEC_ARGS", "PARAMS", "WIDTH",
]

#: The base width n (a positive symbol); other widths are rational multiples of it.
WIDTH = sympy.Symbol("n", positive=True)



class Formals:
    """Formal argument symbols ``x0, x1, ...`` (or ``p0, ...``), created on demand, indexable and sliceable."""

    def __init__(self, prefix):
        self.prefix = prefix
        self._syms = []

    def __getitem__(self, k):
        stop = (k.stop if isinstance(k, slice) else k) or 0
        while len(self._syms) <= stop:
            self._syms.append(sympy.Symbol(f"{self.prefix}{len(self._syms)}", real=True))
        return self._syms[k]

    def index(self, sym):
        """k if ``sym`` is the k-th formal of this family, else None."""
        name = getattr(sym, "name", "")
        if name.startswith(self.prefix) and name[len(self.prefix):].isdigit():
            k = int(name[len(self.prefix):])
            if k < len(self._syms) and self._syms[k] == sym:
                return k
        return None


VEC_ARGS = Formals("x")
PARAMS = Formals("p")


class Kind(str, enum.Enum):
    MATRIX = "matrix"
    VECTOR = "vector"
    SCALAR = "scalar"


@dataclass(frozen=True)
class Axis:
    """A family axis: the members of a data set (``size`` points)."""

    name: str
    size: int

    def __str__(self):
        return f"{self.name}[{self.size}]"


@dataclass(eq=False)
class Value:
    """A program variable (or a family of them).  Treated as immutable once lowering is done
    (lowering may still rename a temporary when it is bound to a user's name).

    ``dim``: for a vector its width as a multiple of n; for a matrix the pair
    (rows, cols) of such multiples; ``None`` for scalars.
    """

    id: int
    name: str
    kind: Kind
    axes: tuple = ()
    dim: object = None

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"Value({self.id}, {self.name!r}, {self.kind.value})"


@dataclass(frozen=True)
class AxisRef:
    """Index term: the p-th axis of the instruction's output."""

    p: int

    def __repr__(self):
        return f"a{self.p}"


@dataclass(frozen=True)
class Arg:
    """A use of ``value``: member ``index`` (one term per axis of the value)."""

    value: Value
    index: tuple = ()

    def __str__(self):
        if not self.index:
            return self.value.name
        return f"{self.value.name}[{', '.join(map(repr, self.index))}]"


@dataclass(eq=False)
class GaussianBlock:
    """Initial vectors declared together: jointly Gaussian, independent of everything else.

    ``members`` are the values of the block; ``means[k]`` is an array over the axes of member k,
    ``covs[(k, l)]`` an array over (axes of k) + (axes of l):
    Cov(Z^{member k}[i...], Z^{member l}[j...]), for every ordered pair (k, l). Plain float64
    arrays, so a block (and the program holding it) pickles.
    """

    members: tuple
    means: tuple
    covs: dict
    text: str = ""
    pos: SourcePos = None

    def __post_init__(self):
        self.means = tuple(np.asarray(m, dtype=np.float64) for m in self.means)
        covs = {kl: np.asarray(c, dtype=np.float64) for kl, c in self.covs.items()}
        for (k, l) in sorted(covs):
            if k > l and (l, k) in covs:
                # the lower blocks are the transposes of the upper ones, so the joint covariance is
                # exactly symmetric (the two were computed separately and agree to rounding)
                c = covs[(l, k)]
                nk = len(self.members[k].axes)
                covs[(k, l)] = np.transpose(c, tuple(range(c.ndim - nk, c.ndim)) + tuple(range(c.ndim - nk)))
        self.covs = covs

    def mean(self, k: int) -> np.ndarray:
        return self.means[k]

    def cov(self, k: int, l: int) -> np.ndarray:
        return self.covs[(k, l)]

    def joint_cov(self) -> np.ndarray:
        """The full covariance over all members, each family flattened (a square matrix)."""
        sizes = [int(np.prod([a.size for a in m.axes], dtype=np.int64)) for m in self.members]
        offs = np.concatenate([[0], np.cumsum(sizes)])
        full = np.empty((offs[-1], offs[-1]))
        for k in range(len(self.members)):
            for l in range(len(self.members)):
                full[offs[k]:offs[k + 1], offs[l]:offs[l + 1]] = self.cov(k, l).reshape(sizes[k], sizes[l])
        return full


@dataclass(frozen=True, eq=False)
class Instr:
    """Base of all instructions: defines ``out``; ``pos`` is the statement it came from."""

    out: Value
    pos: SourcePos = field(repr=False)
    op: ClassVar[str] = "?"

    def args(self) -> tuple:
        """Every Arg this instruction reads (vectors, scalars, matrices as Arg(matrix))."""
        return ()

    def inputs(self) -> tuple:
        return tuple(a.value for a in self.args())


@dataclass(frozen=True)
class Output:
    """A named output: an array of scalars.

    ``layout`` lists the output's array axes in order: ``("u", k)`` is unrolled
    index k (values ``offsets[k] .. offsets[k] + shape[k] - 1``), ``("f", p)``
    is family axis p of every item.  ``items`` maps each unrolled index tuple to
    a scalar value whose axes are ``family_axes``.
    """

    name: str
    pos: SourcePos = field(repr=False)
    layout: tuple = ()
    offsets: tuple = ()
    shape: tuple = ()
    family_axes: tuple = ()
    items: tuple = ()  # of (unrolled index tuple, Value)

    @property
    def values(self):
        return tuple(v for _, v in self.items)

    @property
    def array_shape(self):
        return tuple(self.shape[k] if kind == "u" else self.family_axes[k].size for kind, k in self.layout)


# The op records live with their rules in tensorprog/ops/ (one module per op); re-exported here so
# that ``from tensorprog.ir.core import MatMul`` keeps working.
from ..ops.init import InitMatrix, InitScalar, InitVector  # noqa: E402
from ..ops.matmul import MatMul  # noqa: E402
from ..ops.moment import Moment  # noqa: E402
from ..ops.nonlin import Nonlin  # noqa: E402
from ..ops.scalar_fn import ScalarFn  # noqa: E402
