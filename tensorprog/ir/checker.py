"""The type checker: verifies a Program's instructions, separately from how they were built.

One rule per instruction class (the ``CHECK`` table, each op's rule in its module under
tensorprog/ops/) checks kinds, widths, arities, index terms and
definition order; initial Gaussian blocks are checked to have finite means and
a symmetric positive semi-definite covariance (numerically, now that the data
is known).  Every failure is a diagnostic at the instruction's source position.
"""
from __future__ import annotations

import numpy as np

from ..errors import Diagnostics
from ..ops.registry import CHECK
from .core import AxisRef, InitVector
from .psd import low_rank_min_eigenvalue_bounds

# Relative tolerance for symmetry and for negative eigenvalues of covariances.
PSD_RTOL = 1e-9


def check_program(program) -> None:
    """Raise TPError with every problem found in ``program``.

    Every statement is checked, also those no output depends on (``program.all_instructions``):
    an ill-typed statement is an error whether or not it is used.
    """
    diags = Diagnostics()
    defined = set()
    instructions = getattr(program, "all_instructions", program.instructions)
    for ins in instructions:
        for v in ins.inputs():
            if v.id not in defined:
                diags.add(ins.pos, f"'{v.name}' is used before it is defined")
        for msg in CHECK.rule(ins)(ins):
            diags.add(ins.pos, msg)
        for a in ins.args():
            for msg in _check_index(ins, a):
                diags.add(ins.pos, msg)
        if ins.out.id in defined:
            diags.add(ins.pos, f"'{ins.out.name}' is defined twice")
        defined.add(ins.out.id)
    seen_blocks = set()
    for ins in instructions:
        if isinstance(ins, InitVector) and id(ins.block) not in seen_blocks:
            seen_blocks.add(id(ins.block))
            for msg in check_block(ins.block):
                diags.add(ins.block.pos or ins.pos, msg)
    diags.raise_if_errors()


def _check_index(ins, arg):
    if len(arg.index) != len(arg.value.axes):
        yield f"'{arg.value.name}' is a family over {len(arg.value.axes)} axes but is used with {len(arg.index)} indices"
        return
    for term, axis in zip(arg.index, arg.value.axes):
        if isinstance(term, AxisRef):
            if term.p >= len(ins.out.axes) or ins.out.axes[term.p] != axis:
                yield f"'{arg.value.name}' is indexed by an axis that does not run over {axis.name}"
        elif not 0 <= term < axis.size:
            yield f"member {term} of '{arg.value.name}' is out of range 0..{axis.size - 1}"


def check_block(block):
    """Finite means; a symmetric, positive semi-definite joint covariance."""
    for k in range(len(block.members)):
        if not np.all(np.isfinite(block.mean(k))):
            yield f"the mean of {block.members[k].name} is not finite"
    C = block.joint_cov()
    if not np.all(np.isfinite(C)):
        yield "the covariance is not finite"
        return
    scale = max(float(np.max(np.abs(np.diag(C)))), 1e-300)
    asym = float(np.max(np.abs(C - C.T))) if C.size else 0.0
    if asym > PSD_RTOL * scale * 10:
        i, j = np.unravel_index(np.argmax(np.abs(C - C.T)), C.shape)
        a, b = _member_entry(block, i), _member_entry(block, j)
        yield (f"the covariance is not symmetric: Cov({a}, {b}) = {C[i, j]:.6g} but "
               f"Cov({b}, {a}) = {C[j, i]:.6g}")
        return
    d = np.diag(C)
    if np.any(d < -PSD_RTOL * scale):
        i = int(np.argmin(d))
        yield f"the covariance has a negative variance: Var({_member_entry(block, i)}) = {d[i]:.6g}"
        return
    lam = _min_eigenvalue(C)
    if lam < -1e-8 * scale:
        yield f"the covariance is not positive semi-definite (smallest eigenvalue {lam:.3g})"


def _member_entry(block, flat: int) -> str:
    """The name of row ``flat`` of ``block.joint_cov()``: a member, with its point indices if a family."""
    for m in block.members:
        size = int(np.prod([a.size for a in m.axes], dtype=np.int64))
        if flat < size:
            idx = np.unravel_index(flat, tuple(a.size for a in m.axes)) if m.axes else ()
            return m.name + "".join(f"[{int(i)}]" for i in idx)
        flat -= size
    raise IndexError(flat)


def _min_eigenvalue(C):
    """Smallest eigenvalue of C, or a value >= -1e-8 * max diag when C is certified PSD.

    Small matrices: eigvalsh.  Large ones: first a low-rank certificate in O(N^2 r)
    (tensorprog.ir.psd: Weyl/interlacing bounds, tolerance 1e-9 * max diag), which covers a
    data family's Gram-matrix covariance (rank <= d + 1); only a covariance of high numerical
    rank pays the dense Cholesky test of C + tol I.
    """
    n = C.shape[0]
    if n <= 600:
        return float(np.linalg.eigvalsh((C + C.T) / 2)[0])
    tol = 1e-8 * float(np.max(np.abs(np.diag(C))))
    bounds = low_rank_min_eigenvalue_bounds(C, tol / 10)
    if bounds is not None:
        lower, upper = bounds
        if lower >= -tol:
            return min(lower, 0.0)
        if upper < -tol:
            return upper
    try:
        np.linalg.cholesky((C + C.T) / 2 + tol * np.eye(n))
        return 0.0
    except np.linalg.LinAlgError:
        return float(np.linalg.eigvalsh((C + C.T) / 2)[0])
