"""The type checker: verifies a Program's instructions, separately from how they were built.

One rule per instruction class checks kinds, widths, arities, index terms and
definition order; initial Gaussian blocks are checked to have finite means and
a symmetric positive semi-definite covariance (numerically, now that the data
is known).  Every failure is a diagnostic at the instruction's source position.
"""
from __future__ import annotations

import numpy as np

from ..errors import Diagnostics
from .core import (PARAMS, VEC_ARGS, AxisRef, InitMatrix, InitScalar, InitVector, Kind, MatMul, Moment, Nonlin,
                   ScalarFn, WIDTH)
from .psd import low_rank_min_eigenvalue_bounds

# Relative tolerance for symmetry and for negative eigenvalues of covariances.
PSD_RTOL = 1e-9


def check_program(program) -> None:
    """Raise TPError with every problem found in ``program``."""
    diags = Diagnostics()
    defined = set()
    for ins in program.instructions:
        for v in ins.inputs():
            if v.id not in defined:
                diags.add(ins.pos, f"'{v.name}' is used before it is defined")
        rule = _RULES[type(ins)]
        for msg in rule(ins):
            diags.add(ins.pos, msg)
        for a in ins.args():
            for msg in _check_index(ins, a):
                diags.add(ins.pos, msg)
        if ins.out.id in defined:
            diags.add(ins.pos, f"'{ins.out.name}' is defined twice")
        defined.add(ins.out.id)
    seen_blocks = set()
    for ins in program.instructions:
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


def _init_matrix(ins: InitMatrix):
    if ins.out.kind != Kind.MATRIX or ins.out.axes:
        yield "an initial matrix must be a single matrix"
    if ins.variance.free_symbols - {WIDTH}:
        yield "a matrix variance may depend only on the width n"


def _init_vector(ins: InitVector):
    if ins.out.kind != Kind.VECTOR:
        yield "an initial vector must be a vector"


def _init_scalar(ins: InitScalar):
    if ins.out.kind != Kind.SCALAR:
        yield "an initial scalar must be a scalar"
    if ins.is_data:
        if ins.value.shape != tuple(a.size for a in ins.out.axes):
            yield "data scalar has the wrong shape for its family"
        elif not np.all(np.isfinite(ins.value)):
            yield "data scalar contains NaN or infinite values"
    elif ins.value.free_symbols - {WIDTH}:
        yield "an initial scalar may depend only on the width n"


def _matmul(ins: MatMul):
    if ins.matrix.kind != Kind.MATRIX:
        yield f"'{ins.matrix.name}' is not a matrix"
        return
    if ins.arg.value.kind != Kind.VECTOR:
        yield f"'{ins.arg.value.name}' is not a vector"
        return
    rows, cols = ins.matrix.dim
    need, out = (rows, cols) if ins.transposed else (cols, rows)
    if ins.arg.value.dim != need:
        yield f"shape mismatch in {ins.matrix.name}{'.T' if ins.transposed else ''} @ {ins.arg.value.name}"
    if ins.out.dim != out:
        yield "matmul result has the wrong width"


def _coordinatewise(kind_out, vectors_allowed=True):
    def rule(ins):
        if ins.out.kind != kind_out:
            yield f"{ins.op} must produce a {kind_out.value}"
        if not vectors_allowed and ins.vec_args:
            yield "a scalar function cannot take vectors"
        if vectors_allowed and ins.op != "scalar_fn" and not ins.vec_args:
            yield f"{ins.op} needs at least one vector argument"
        dims = {a.value.dim for a in ins.vec_args}
        if len(dims) > 1:
            yield f"{ins.op} mixes vectors of different widths"
        if ins.op == "nonlin" and dims and ins.out.dim not in dims:
            yield "nonlin result has the wrong width"
        for a in ins.vec_args:
            if a.value.kind != Kind.VECTOR:
                yield f"'{a.value.name}' is not a vector"
        for a in ins.params:
            if a.value.kind != Kind.SCALAR:
                yield f"'{a.value.name}' is not a scalar"
        allowed = set(VEC_ARGS[:len(ins.vec_args)]) | set(PARAMS[:len(ins.params)])
        if ins.fn.free_symbols - allowed:
            yield f"{ins.op} function uses unknown symbols {sorted(map(str, ins.fn.free_symbols - allowed))}"
    return rule


_RULES = {
    InitMatrix: _init_matrix,
    InitVector: _init_vector,
    InitScalar: _init_scalar,
    MatMul: _matmul,
    Nonlin: _coordinatewise(Kind.VECTOR),
    Moment: _coordinatewise(Kind.SCALAR),
    ScalarFn: _coordinatewise(Kind.SCALAR, vectors_allowed=False),
}


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
