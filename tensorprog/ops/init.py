"""The initial instructions: InitMatrix (iid Gaussian matrix), InitVector (member of a jointly
Gaussian block), InitScalar (a width expression or data), with their rules."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import sympy

from ..errors import error
from ..ir.core import WIDTH, GaussianBlock, Instr, Kind
from .registry import (BACKWARD, CHECK, DERIVE, DESCRIBE, EDGES, GAUSSIAN_COV, GAUSSIAN_MEAN, LISTING, MEMORY,
                       SAMPLE_LIMIT, SCALING_ADJOINT, SCALING_CHANGE, SCALING_SIZE, SIMULATE, SIMULATE_PREPARE, nothing)


@dataclass(frozen=True, eq=False)
class InitMatrix(Instr):
    """W with iid entries N(0, variance(n)); sigma^2 = lim variance * fan_in."""

    variance: sympy.Expr = None
    op: ClassVar[str] = "init_matrix"


@dataclass(frozen=True, eq=False)
class InitVector(Instr):
    """Member ``member`` of a jointly Gaussian initial block."""

    block: GaussianBlock = None
    member: int = 0
    op: ClassVar[str] = "init_vector"


@dataclass(frozen=True, eq=False)
class InitScalar(Instr):
    """An initial scalar: a width expression (sympy, in n), or data (an array over the axes)."""

    value: object = None
    op: ClassVar[str] = "init_scalar"

    @property
    def is_data(self):
        return isinstance(self.value, np.ndarray)


# ---------------------------------------------------------------------- check

@CHECK.register(InitMatrix)
def _check_init_matrix(ins: InitMatrix):
    if ins.out.kind != Kind.MATRIX or ins.out.axes:
        yield "an initial matrix must be a single matrix"
    if ins.variance.free_symbols - {WIDTH}:
        yield "a matrix variance may depend only on the width n"


@CHECK.register(InitVector)
def _check_init_vector(ins: InitVector):
    if ins.out.kind != Kind.VECTOR:
        yield "an initial vector must be a vector"


@CHECK.register(InitScalar)
def _check_init_scalar(ins: InitScalar):
    if ins.out.kind != Kind.SCALAR:
        yield "an initial scalar must be a scalar"
    if ins.is_data:
        if ins.value.shape != tuple(a.size for a in ins.out.axes):
            yield "data scalar has the wrong shape for its family"
        # one reduction (no N x N boolean temporary): a sum is finite only if every entry is, barring
        # overflow of huge finite entries, which the exact test then clears
        elif not (np.isfinite(np.add.reduce(ins.value, axis=None)) or np.all(np.isfinite(ins.value))):
            yield "data scalar contains NaN or infinite values"
    elif ins.value.free_symbols - {WIDTH}:
        yield "an initial scalar may depend only on the width n"


# ---------------------------------------------------------------------- derive (limit pass)

@DERIVE.register(InitVector)
def _derive_init_vector(d, ins: InitVector):
    """Z^x = an atom of the block's Gaussian group (mean and covariance from the block's data)."""
    from ..limit.symbols import INDEX, new_atom
    atom = new_atom(ins.out, ("init", id(ins.block)), d.name(ins.out), ins)
    d.atom[ins.out.id] = atom
    d.Z[ins.out.id] = atom(*INDEX[:len(ins.out.axes)])


@GAUSSIAN_MEAN.register(InitVector)
def _mean_init_vector(d, a):
    """E Z^x: the block's mean for the member, as data (or an exact number if constant)."""
    from ..limit.symbols import atom_of
    ins = atom_of(a).instr
    arr = ins.block.mean(ins.member)
    return d._data_ref(("mean", id(ins.block), ins.member), arr, list(a.args), ins.out.axes,
                       f"mean of {d.name(ins.out)}", ins)


@GAUSSIAN_COV.register(InitVector)
def _cov_init_vector(d, a, b, axes):
    """Cov(Z^x, Z^y) of two members of one block: the block's covariance data."""
    from ..limit.symbols import atom_of
    ia, ib = atom_of(a).instr, atom_of(b).instr
    arr = ia.block.cov(ia.member, ib.member)
    return d._data_ref(("cov", id(ia.block), ia.member, ib.member), arr, list(a.args) + list(b.args),
                       ia.out.axes + ib.out.axes, f"Cov({d.name(ia.out)}, {d.name(ib.out)})", ia)


def sigma2_of(ins: InitMatrix):
    """sigma^2 = lim_n variance(n) * fan_in(n)."""
    rows, cols = ins.out.dim
    s2 = sympy.limit(ins.variance * cols * WIDTH, WIDTH, sympy.oo)
    if not s2.is_finite or not s2.is_real:
        raise error(ins.pos, f"the entry variance {ins.variance} times the fan-in {cols}n diverges as n -> oo; "
                             "write the variance as sigma^2/n")
    return s2


@DERIVE.register(InitMatrix)
def _derive_init_matrix(d, ins: InitMatrix):
    d.sigma2[ins.out.id] = sigma2_of(ins)


@DERIVE.register(InitScalar)
def _derive_init_scalar(d, ins: InitScalar):
    """theta° = lim_n value(n) (an error if it diverges), or the data."""
    from ..limit.expectation import LimitError
    from ..limit.symbols import INDEX
    if ins.is_data:
        d.set_scalar(ins, d._data_ref(("scalar", ins.out.id), ins.value, list(INDEX[:len(ins.out.axes)]),
                                      ins.out.axes, f"data for {d.name(ins.out)}", ins), kind="scalar")
        return
    lim = sympy.limit(ins.value, WIDTH, sympy.oo) if ins.value.has(WIDTH) else ins.value
    if not lim.is_finite or not lim.is_real:
        raise LimitError(f"the scalar {ins.value} has no finite limit as n -> oo (a width-dependent program: "
                         "analyse its exponents with `tpc scaling`, run it with `tpc simulate`)")
    d.set_scalar(ins, lim)


# ---------------------------------------------------------------------- simulate

SIMULATE_PREPARE.register(InitMatrix, InitScalar)(nothing)


@SIMULATE_PREPARE.register(InitVector)
def _prepare_init_vector(sim, ins: InitVector):
    # Live members of each Gaussian block, in instruction order; the block is sampled when its
    # first member is reached.
    sim.blocks.setdefault(id(ins.block), []).append(ins)


@SIMULATE.register(InitMatrix)
def _simulate_init_matrix(sim, ins: InitMatrix, env, sizes, width, rng, pool):
    """W in R^{r n x c n} with iid entries N(0, variance(n))."""
    from ..simulate.simulator import _sample_matrix
    v = ins.out
    variance = sim._at_width(ins.variance, width)
    if not variance >= 0:
        raise error(ins.pos, f"'{v.name}': the entry variance is {variance} at width {width}")
    env[v.id] = _sample_matrix(rng, *sizes[v.id], np.sqrt(variance), pool)


# Sampling the limit: no matrix (its Gaussian groups are drawn by MatMul's rule); vectors and scalars as in
# a simulation at n = samples, scalars at their limit (the sampler's _at_width).
SAMPLE_LIMIT.register(InitMatrix)(nothing)


@SAMPLE_LIMIT.register(InitVector)
@SIMULATE.register(InitVector)
def _simulate_init_vector(sim, ins: InitVector, env, sizes, width, rng, pool):
    """The whole block's live members, drawn jointly when its first member is reached."""
    members = sim.blocks[id(ins.block)]
    if ins is members[0]:
        sim._sample_block(members, env, sizes, rng)


@SAMPLE_LIMIT.register(InitScalar)
@SIMULATE.register(InitScalar)
def _simulate_init_scalar(sim, ins: InitScalar, env, sizes, width, rng, pool):
    grid = tuple(a.size for a in ins.out.axes)
    if ins.is_data:
        val = np.asarray(ins.value, dtype=np.float64)
    else:
        val = np.asarray(sim._at_width(ins.value, width))
    env[ins.out.id] = np.broadcast_to(val, grid).copy()


@MEMORY.register(InitVector)
def _memory_init_vector(sim, ins: InitVector, nbytes, sizes, born):
    """A block's members are all born with the first; sampling needs two block-sized temporaries."""
    if ins.out.id in born:
        return 0, 0
    members = sim.blocks[id(ins.block)]
    block_bytes = sum(nbytes[m.out.id] for m in members)
    born.update(m.out.id for m in members)
    return block_bytes, 2 * block_bytes


@MEMORY.register(InitMatrix, InitScalar)
def _memory_init(sim, ins, nbytes, sizes, born):
    return nbytes[ins.out.id], 0


# ---------------------------------------------------------------------- listing, names, graph

@LISTING.register(InitMatrix)
def _listing_init_matrix(ins: InitMatrix):
    return f"init N(0, {sympy.sstr(ins.variance)})"


@LISTING.register(InitVector)
def _listing_init_vector(ins: InitVector):
    return f"init (block {ins.block.text!r}, member {ins.member})"


@LISTING.register(InitScalar)
def _listing_init_scalar(ins: InitScalar):
    return "init data" if ins.is_data else f"init {sympy.sstr(ins.value)}"


@DESCRIBE.register(InitScalar)
def _describe_init_scalar(ins: InitScalar, arg_text, show):
    return f"data@{ins.pos.line}" if ins.is_data else sympy.sstr(ins.value)


DESCRIBE.register(InitMatrix, InitVector)(nothing)
EDGES.register(InitMatrix, InitVector, InitScalar)(lambda ins: ())
# reverse mode stops at the initial objects: a trained parameter's gradient is read off its adjoint
# (vectors) or its recorded uses (matrices) by the NTK (frontend/grad.py)
BACKWARD.register(InitMatrix, InitVector, InitScalar)(nothing)


# ---------------------------------------------------------------------- tpc scaling (tensorprog/scaling)

SCALING_SIZE.register(InitMatrix)(nothing)          # a matrix has no coordinates of its own: W x's rule
SCALING_CHANGE.register(InitMatrix, InitScalar)(nothing)
SCALING_ADJOINT.register(InitMatrix, InitVector, InitScalar)(nothing)


@SCALING_SIZE.register(InitVector)
def _scaling_size_init_vector(an, ins: InitVector):
    """Theta(1) coordinates: the block's covariance does not depend on n."""
    an.size[ins.out.id] = sympy.S.Zero


@SCALING_SIZE.register(InitScalar)
def _scaling_size_init_scalar(an, ins: InitScalar):
    """The leading exponent of a width-dependent number c n^k; data is Theta(1) (0 when all zero)."""
    from ..scaling.orders import ZERO, order_of_number

    if ins.is_data:
        an.size[ins.out.id] = sympy.S.Zero if np.any(ins.value) else ZERO
    else:
        an.size[ins.out.id] = order_of_number(ins.value)


@SCALING_CHANGE.register(InitVector)
def _scaling_change_init_vector(an, ins: InitVector):
    """A trained vector moves by its update (analysis.vector_step); others do not move."""
    from ..scaling.orders import ZERO

    if an.is_trained(ins.out):
        o = an.vector_step(ins.out)
        if o != ZERO:
            an.step_change[ins.out.id] = o
