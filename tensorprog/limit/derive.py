"""The Master Theorem pass: program -> limit program (THEORY.md section 3).

One rule per instruction class, run in program order by a short interpreter
loop that attaches the instruction's source position to any error:

* InitVector:  Z^x = an atom of the block's Gaussian group (mean and covariance from data);
* InitMatrix:  sigma^2 = lim_n variance(n) * fan_in(n);
* InitScalar:  theta° = lim_n value(n) (an error if it diverges);
* Nonlin:      Z^y = phi(Z^{x1}, ..., Z^{xk}; theta°...);
* Moment:      theta° = E phi(Z^{x1}, ..., Z^{xk}; theta°...);
* ScalarFn:    theta° = phi(theta°...);
* MatMul:      Z^{Wx} = Zhat^{Wx} + sigma^2 sum_y Z^y E[dZ^x / dZhat^{W^T y}]
               (for W^T x: sigma^2 rho sum_y Z^y E[dZ^x / dZhat^{W y}]), where
               Cov(Zhat^{Wx}, Zhat^{Wy}) = sigma^2 E[Z^x Z^y] (times rho for W^T).

Families are derived once as templates over their axes (index symbols i, j, ...).
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import sympy

from ..errors import TPError, error
from ..ir.core import PARAMS, VEC_ARGS, WIDTH, AxisRef, InitMatrix, InitScalar, InitVector, MatMul, Moment, Nonlin, \
    ScalarFn
from ..ir.describe import describe
from .expectation import Expectations, LimitError, canonical
from .symbols import INDEX, Data, atom_of, atoms_in, is_qref, new_atom, new_quantity, reindex


def _terms(index):
    """IR index terms -> sympy index arguments (AxisRef(p) -> INDEX[p], int -> Integer)."""
    return [INDEX[t.p] if isinstance(t, AxisRef) else sympy.Integer(t) for t in index]


def _compose(index, args):
    """Index terms relative to an instruction's axes, re-expressed through ``args`` (that instruction's member)."""
    return [args[t.p] if isinstance(t, AxisRef) else sympy.Integer(t) for t in index]


def exact_number(x: float):
    """A float from data as an exact sympy number when it is a short decimal (0.1 -> 1/10)."""
    x = float(x)
    if x == int(x) and abs(x) < 2 ** 53:
        return sympy.Integer(int(x))
    f = Fraction(x).limit_denominator(10 ** 9)
    return sympy.Rational(f.numerator, f.denominator) if float(f) == x else sympy.Float(x)


def is_cheap(expr, max_ops=8):
    """A number, a quantity reference or a small polynomial in them: not worth naming."""
    if expr.is_number:
        return True
    funcs = [f for f in expr.atoms(sympy.Function) if not is_qref(f)]
    return not funcs and sympy.count_ops(expr) <= max_ops


class ZdotTerm:
    """One term of a Zdot sum: sigma^2 Z^y * coefficient, with how the coefficient was found."""

    def __init__(self, matmul, atom, y_expr, coefficient, method, scale, derivative):
        self.matmul, self.atom, self.y_expr = matmul, atom, y_expr
        self.coefficient, self.method, self.scale = coefficient, method, scale
        self.derivative = derivative  # dZ^x / dZhat, whose expectation is the coefficient

    @property
    def is_zero(self):
        return self.coefficient == 0


class Deriver:
    def __init__(self, program):
        self.program = program
        self.defining = {i.out.id: i for i in program.instructions}
        self.Z = {}            # vector value id -> Z template (sympy, over INDEX[:k])
        self.theta = {}        # scalar value id -> limit template (number or quantity reference)
        self.sigma2 = {}       # matrix value id -> sigma^2 (sympy number)
        self.atom = {}         # value id -> Atom
        self.zdot = []         # every ZdotTerm considered (zero ones included)
        self.quantities = []   # in definition order
        self.scalar_quantity = {}  # scalar value id -> Quantity (named program scalars)
        self.engine = Expectations(self)
        self._data_q = {}
        self._cov_q = {}
        self._group_atoms = {}
        self._current = None

    def name(self, value):
        return describe(value, self.defining)

    # ------------------------------------------------------------------ the interpreter loop

    def run(self):
        for ins in self.program.instructions:
            self._current = ins
            try:
                _RULES[type(ins)](self, ins)
            except TPError:
                raise
            except (LimitError, ValueError, ZeroDivisionError) as e:
                raise error(ins.pos, f"in the limit of {self.name(ins.out)}: {e}") from None
        from .program import LimitProgram
        return LimitProgram(self)

    # ------------------------------------------------------------------ helpers for rules

    def z_of(self, arg):
        return reindex(self.Z[arg.value.id], _terms(arg.index))

    def theta_of(self, arg):
        return reindex(self.theta[arg.value.id], _terms(arg.index))

    def substitute(self, ins):
        """The instruction's function with Z's of its vector args and limits of its scalar params."""
        m = {VEC_ARGS[k]: self.z_of(a) for k, a in enumerate(ins.vec_args)}
        m.update({PARAMS[k]: self.theta_of(a) for k, a in enumerate(ins.params)})
        return ins.fn.xreplace(m)

    def origin(self):
        ins = self._current
        return (self.name(ins.out), ins.pos) if ins is not None else None

    def add(self, q):
        self.quantities.append(q)
        return q

    def set_scalar(self, ins, expr, kind="scalar"):
        """theta° of a scalar value: a number, or a named quantity for the value.

        Temporaries whose limit is a number or a small expression of quantities are inlined
        rather than named (they are not the user's variables).
        """
        expr = sympy.sympify(expr)
        axes = ins.out.axes
        if expr.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo) or (expr.is_number and expr.is_real is False):
            raise LimitError(f"the limit is not a finite real number: {expr}")
        if expr.is_number:
            self.theta[ins.out.id] = expr
        if ins.out.name.startswith("%") and is_cheap(expr):
            self.theta[ins.out.id] = expr
            return
        q = self.add(new_quantity(self.name(ins.out), axes, expr, kind, origin=self.origin(),
                                  method="" if expr.is_number else "scalar arithmetic"))
        self.scalar_quantity[ins.out.id] = q
        if not expr.is_number:
            self.theta[ins.out.id] = q.ref()

    # ------------------------------------------------------------------ callbacks of the expectation engine

    def moment_quantity(self, definition, axes, integrand, method):
        return self.add(new_quantity("E", axes, definition, "moment", method=method, origin=self.origin(),
                                     meaning=integrand)).ref()

    def stein_quantity(self, coef, axes, meaning):
        return self.add(new_quantity("D", axes, coef, "zdot", method="Stein's lemma", origin=self.origin(),
                                     meaning=meaning)).ref()

    def atom_mean(self, a):
        info = atom_of(a)
        if info.group[0] != "init":
            return sympy.S.Zero
        ins = info.instr
        arr = ins.block.mean(ins.member)
        return self._data_ref(("mean", id(ins.block), ins.member), arr, list(a.args), ins.out.axes,
                              f"mean of {self.name(ins.out)}", ins)

    def atom_cov(self, a, b, axes):
        """Cov(a, b) of two atoms (in the context whose index symbols they use)."""
        A, B = atom_of(a), atom_of(b)
        if A.group != B.group:
            return sympy.S.Zero
        if A.group[0] == "init":
            ia, ib = A.instr, B.instr
            arr = ia.block.cov(ia.member, ib.member)
            return self._data_ref(("cov", id(ia.block), ia.member, ib.member), arr, list(a.args) + list(b.args),
                                  ia.out.axes + ib.out.axes,
                                  f"Cov({self.name(ia.out)}, {self.name(ib.out)})", ia)
        pair = a * b if a != b else a ** 2
        g, gaxes, syms = canonical(pair, axes)
        key = (g, gaxes)
        if key not in self._cov_q:
            self._cov_q[key] = self._matmul_cov(g, gaxes)
        return reindex(self._cov_q[key], syms)

    def prime_covariances(self, atom, ins):
        """Derive the covariances of a new Zhat with itself and its group now, in program order.

        They would otherwise be derived on first use, recursively through every earlier
        layer (a depth-100 network would need a recursion 100 layers deep).
        """
        k = len(ins.out.axes)
        mine = INDEX[:k]
        for other in self._group_atoms.setdefault(atom.group, []) + [atom]:
            ko = len(other.value.axes)
            theirs = INDEX[k:k + ko]
            self.atom_cov(atom(*mine), other(*theirs), ins.out.axes + other.value.axes)
            if other.value.axes == ins.out.axes and k:
                self.atom_cov(atom(*mine), other(*mine), ins.out.axes)
        self._group_atoms[atom.group].append(atom)

    def _matmul_cov(self, pair, axes):
        """sigma^2 (rho) E[Z^x Z^y] for the two Zhat atoms in ``pair`` (canonical index symbols)."""
        facs = sorted(atoms_in(pair), key=sympy.default_sort_key)
        a, b = (facs[0], facs[0]) if len(facs) == 1 else facs
        A, B = atom_of(a), atom_of(b)
        xa = reindex(self.Z[A.instr.arg.value.id], _compose(A.instr.arg.index, a.args))
        xb = reindex(self.Z[B.instr.arg.value.id], _compose(B.instr.arg.index, b.args))
        outer, self._current = self._current, A.instr  # what this covariance needs belongs to the MatMul
        try:
            moment = self.engine.expect(xa * xb, axes)
        finally:
            self._current = outer
        scale = self._matmul_scale(A.instr)
        value = sympy.sympify(scale * moment)
        if value.is_number:
            return value
        q = self.add(new_quantity("Σ", axes, value, "cov", origin=(A.label, A.instr.pos),
                                  method=f"{sympy.sstr(scale)}·E[Z^x Z^y]", meaning=("cov", a, b)))
        return q.ref()

    def _data_ref(self, key, arr, args, axes, text, ins):
        arr = np.asarray(arr, dtype=np.float64)
        if arr.size and np.all(arr == arr.flat[0]):
            return exact_number(arr.flat[0])
        if key not in self._data_q:
            self._data_q[key] = self.add(new_quantity("C", axes, Data(arr, text), "data", method="data",
                                                      origin=(self.name(ins.out), ins.pos), meaning=text))
        return self._data_q[key](*args)

    def _matmul_scale(self, ins):
        """sigma^2 for the covariance and Zdot of W x; sigma^2 rho (rho = rows/cols) for W^T x (THEORY §3)."""
        s2 = self.sigma2[ins.matrix.id]
        rows, cols = ins.matrix.dim
        return s2 * sympy.nsimplify(rows / cols) if ins.transposed else s2


# ---------------------------------------------------------------------- the rules

def _init_vector(d: Deriver, ins: InitVector):
    atom = new_atom(ins.out, ("init", id(ins.block)), d.name(ins.out), ins)
    d.atom[ins.out.id] = atom
    d.Z[ins.out.id] = atom(*INDEX[:len(ins.out.axes)])


def _init_matrix(d: Deriver, ins: InitMatrix):
    rows, cols = ins.out.dim
    s2 = sympy.limit(ins.variance * cols * WIDTH, WIDTH, sympy.oo)
    if not s2.is_finite or not s2.is_real:
        raise LimitError(f"the entry variance {ins.variance} times the fan-in {cols}n diverges as n -> oo; "
                         "write the variance as sigma^2/n")
    d.sigma2[ins.out.id] = s2


def _init_scalar(d: Deriver, ins: InitScalar):
    if ins.is_data:
        d.set_scalar(ins, d._data_ref(("scalar", ins.out.id), ins.value, list(INDEX[:len(ins.out.axes)]),
                                      ins.out.axes, f"data for {d.name(ins.out)}", ins), kind="scalar")
        return
    lim = sympy.limit(ins.value, WIDTH, sympy.oo) if ins.value.has(WIDTH) else ins.value
    if not lim.is_finite or not lim.is_real:
        raise LimitError(f"the scalar {ins.value} has no finite limit as n -> oo")
    d.set_scalar(ins, lim)


def _nonlin(d: Deriver, ins: Nonlin):
    d.Z[ins.out.id] = d.substitute(ins)


def _moment(d: Deriver, ins: Moment):
    axes = ins.out.axes
    d.set_scalar(ins, d.engine.expect(d.substitute(ins), axes))


def _scalar_fn(d: Deriver, ins: ScalarFn):
    d.set_scalar(ins, d.substitute(ins))


def _matmul(d: Deriver, ins: MatMul):
    group = ("W", ins.matrix.id, ins.transposed)
    partner = ("W", ins.matrix.id, not ins.transposed)
    atom = new_atom(ins.out, group, d.name(ins.out), ins)
    d.atom[ins.out.id] = atom
    own = list(INDEX[:len(ins.out.axes)])
    x = d.z_of(ins.arg)
    scale = d._matmul_scale(ins)
    zdot = []
    for a in sorted(atoms_in(x), key=sympy.default_sort_key):
        info = atom_of(a)
        if info.group != partner:
            continue
        src = info.instr
        y = reindex(d.Z[src.arg.value.id], _compose(src.arg.index, a.args))
        coef, method, derivative = d.engine.derivative(x, a, ins.out.axes)
        d.zdot.append(ZdotTerm(ins, a, y, coef, method, scale, derivative))
        if coef != 0:
            zdot.append(y * coef)
    d.Z[ins.out.id] = atom(*own) + scale * sympy.Add(*zdot)
    d.prime_covariances(atom, ins)


_RULES = {
    InitVector: _init_vector,
    InitMatrix: _init_matrix,
    InitScalar: _init_scalar,
    Nonlin: _nonlin,
    Moment: _moment,
    ScalarFn: _scalar_fn,
    MatMul: _matmul,
}


def derive(program):
    """The limit program of a checked Program (see :class:`~tensorprog.limit.program.LimitProgram`)."""
    return Deriver(program).run()
