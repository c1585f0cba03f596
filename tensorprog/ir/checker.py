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
from .psd import is_certified, low_rank_min_eigenvalue_bounds

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
    """Finite means; a symmetric, positive semi-definite joint covariance.

    The checks run over row blocks of the covariance (``_row_blocks``): no temporary as large as the
    N x N matrix of a data family, whose covariance is often the largest array of the run.
    """
    for k in range(len(block.members)):
        if not np.all(np.isfinite(block.mean(k))):
            yield f"the mean of {block.members[k].name} is not finite"
    # One member: its covariance array is the joint covariance (a view, no copy).
    C = block.cov(0, 0).reshape(_flat_size(block.members[0]), -1) if len(block.members) == 1 else block.joint_cov()
    if not all(np.isfinite(np.add.reduce(blk, axis=None)) or np.all(np.isfinite(blk)) for blk in _row_blocks(C)):
        yield "the covariance is not finite"
        return
    d = np.diag(C)
    scale = max(float(np.max(np.abs(d))) if d.size else 0.0, 1e-300)
    if len(block.members) == 1 and is_certified(C):
        return      # a Gram matrix of data points combined with non-negative constants: PSD by construction
    asym, where = _max_asymmetry(C)
    if asym > PSD_RTOL * scale * 10:
        i, j = where
        a, b = _member_entry(block, i), _member_entry(block, j)
        yield (f"the covariance is not symmetric: Cov({a}, {b}) = {C[i, j]:.6g} but "
               f"Cov({b}, {a}) = {C[j, i]:.6g}")
        return
    if np.any(d < -PSD_RTOL * scale):
        i = int(np.argmin(d))
        yield f"the covariance has a negative variance: Var({_member_entry(block, i)}) = {d[i]:.6g}"
        return
    lam = _min_eigenvalue(C)
    if lam < -1e-8 * scale:
        yield f"the covariance is not positive semi-definite (smallest eigenvalue {lam:.3g})"


_BLOCK_ROWS = 256


def _flat_size(member) -> int:
    return int(np.prod([a.size for a in member.axes], dtype=np.int64))


def _row_blocks(C):
    for s in range(0, C.shape[0], _BLOCK_ROWS):
        yield C[s:s + _BLOCK_ROWS]


def _max_asymmetry(C):
    """(max |C - C^T|, its (row, column)), by square tiles: O(tile^2) scratch instead of N^2."""
    n = C.shape[0]
    best, where = 0.0, (0, 0)
    for s in range(0, n, _BLOCK_ROWS):
        for t in range(s, n, _BLOCK_ROWS):
            diff = np.abs(C[s:s + _BLOCK_ROWS, t:t + _BLOCK_ROWS] - C[t:t + _BLOCK_ROWS, s:s + _BLOCK_ROWS].T)
            if diff.size and diff.max() > best:
                k = np.unravel_index(int(np.argmax(diff)), diff.shape)
                best, where = float(diff[k]), (s + int(k[0]), t + int(k[1]))
    return best, where


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
    M = np.add(C, C.T)          # the symmetric part plus tol I, built in one array (memory: 2 N x N with the factor)
    M *= 0.5
    M.flat[::n + 1] += tol
    try:
        np.linalg.cholesky(M)
        return 0.0
    except np.linalg.LinAlgError:
        M.flat[::n + 1] -= tol
        return float(np.linalg.eigvalsh(M)[0])
