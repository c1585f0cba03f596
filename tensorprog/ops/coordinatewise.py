"""What Nonlin, Moment and ScalarFn share: a sympy function of formal arguments ``x0, ...``
(vector arguments, coordinatewise) and ``p0, ...`` (scalar parameters), and the rules that only
depend on that (check, CSE key, compiling for simulation, listing, readable names, graph edges)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

from ..ir.core import PARAMS, VEC_ARGS, Instr, Kind

#: Temporaries of a coordinatewise evaluation counted by the memory estimate (numpy creates one
#: array per operation of the expression).
TEMPORARIES = 4


@dataclass(frozen=True, eq=False)
class Coordinatewise(Instr):
    fn: sympy.Expr = None
    vec_args: tuple = ()
    params: tuple = ()

    def args(self):
        return tuple(self.vec_args) + tuple(self.params)


def check_rule(kind_out, vectors_allowed=True):
    """The type rule of a coordinatewise op producing a ``kind_out``."""
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


def cse_key(cls, axes, *, fn, vec_args, params):
    """Same op, same function of the same members over the same axes: the same value."""
    return (cls.op, fn, tuple((a.value.id, a.index) for a in vec_args + params), axes)



def prepare(sim, ins):
    """Compile the function once per program (a Dirac delta cannot be evaluated at a point)."""
    from ..errors import error
    from ..functions import NUMPY_IMPL
    nvec, npar = len(ins.vec_args), len(ins.params)
    formals = list(VEC_ARGS[:nvec]) + list(PARAMS[:npar])
    if ins.fn.has(sympy.DiracDelta):
        raise error(ins.pos, f"'{ins.out.name}' cannot be simulated: its function {sympy.sstr(ins.fn)} "
                             "contains a Dirac delta (the derivative of step or sign), which has no "
                             "value at a point")
    extra = ins.fn.free_symbols - set(formals)
    if extra:
        raise error(ins.pos, f"'{ins.out.name}': unexpected symbols {sorted(map(str, extra))} in its function")
    sim.functions[ins.out.id] = sympy.lambdify(formals, ins.fn, modules=[NUMPY_IMPL, "numpy"])


def scalar_values(sim, ins, env, grid):
    """fn(p0, ...) over the output grid (no vector arguments)."""
    from ..simulate.simulator import _gather
    f = sim.functions[ins.out.id]
    pars = [_gather(env[a.value.id], a.index, grid, vector=False) for a in ins.params]
    return np.array(np.broadcast_to(f(*pars), grid), dtype=np.float64)


def width_chunks(sim, ins, env, grid):
    """(f, vectors, parameters, width, step): the operands gathered over the grid, and the slice
    length of the width axis that keeps one evaluation under CHUNK_ELEMENTS."""
    from ..simulate.simulator import CHUNK_ELEMENTS, _gather
    f = sim.functions[ins.out.id]
    pars = [_gather(env[a.value.id], a.index, grid, vector=False) for a in ins.params]
    vecs = [_gather(env[a.value.id], a.index, grid, vector=True) for a in ins.vec_args]
    pars = [p[..., None] for p in pars]
    w = vecs[0].shape[-1]
    cells = int(np.prod(grid, dtype=np.int64))
    step = max(1, CHUNK_ELEMENTS // max(cells, 1))
    return f, vecs, pars, w, step


def memory(sim, ins, nbytes, sizes, born):
    """The output, plus TEMPORARIES arrays of one chunk of the evaluation."""
    from ..simulate.simulator import CHUNK_ELEMENTS
    cells = int(np.prod([a.size for a in ins.out.axes], dtype=np.int64))
    w = max((sizes[a.value.id] for a in ins.vec_args), default=1)
    return nbytes[ins.out.id], TEMPORARIES * 8 * max(min(cells * w, CHUNK_ELEMENTS), cells)


def listing(ins):
    args = ", ".join(str(a) for a in ins.vec_args)
    pars = ", ".join(str(a) for a in ins.params)
    sig = args + (f"; {pars}" if pars and args else pars)
    return f"{ins.op} {sympy.sstr(ins.fn)} ({sig})"


def describe_body(ins, arg_text, show):
    """The function with its arguments' readable names put in for the formals."""
    names = {}
    for k, a in enumerate(ins.vec_args):
        names[VEC_ARGS[k]] = sympy.Symbol(arg_text(a, show))
    for k, a in enumerate(ins.params):
        names[PARAMS[k]] = sympy.Symbol(arg_text(a, show))
    return sympy.sstr(ins.fn.xreplace(names))


def edges(ins):
    return tuple((a.value, "arg") for a in ins.vec_args) + tuple((a.value, "param") for a in ins.params)


# ---------------------------------------------------------------------- tpc scaling (tensorprog/scaling)

def _formals(ins):
    return [(VEC_ARGS[k], a) for k, a in enumerate(ins.vec_args)] + [(PARAMS[k], a) for k, a in enumerate(ins.params)]


def scaling_size(an, ins):
    """order(fn(x...; p...)) by the order calculus, from the arguments' orders."""
    an.size[ins.out.id] = an.guarded(ins, lambda: an.order_in(ins, ins.fn, an.size))


def scaling_change(an, ins):
    """Delta fn = sum_a (d fn/da) Delta a: order max_a (order(d fn/da) + order(Delta a))."""
    from ..scaling.orders import ZERO, oadd, omax

    def compute():
        terms = [oadd(an.order_in(ins, ins.fn.diff(sym), an.size), an.step_change[a.value.id])
                 for sym, a in _formals(ins) if a.value.id in an.step_change]
        return omax(*terms)
    o = an.guarded(ins, compute) if any(a.value.id in an.step_change for _, a in _formals(ins)) else ZERO
    if o != ZERO:
        an.step_change[ins.out.id] = o


def scaling_adjoint(an, ins):
    """n df/dx_a = (n df/d out) d fn/dx_a (vectors; the mean over coordinates for scalars)."""
    from ..scaling.orders import Undecided, oadd

    if ins.out.id not in an.adj:
        return
    for sym, a in _formals(ins):
        try:
            an.add_adjoint(a.value, oadd(an.adj[ins.out.id], an.order_in(ins, ins.fn.diff(sym), an.size)))
        except Undecided as u:
            an.undecided.setdefault(a.value.id, u.reason)
