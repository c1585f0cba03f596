"""The Master Theorem pass: program -> limit program (THEORY.md section 3).

One rule per instruction class (the ``DERIVE`` table; each op's rule lives in its module under
tensorprog/ops/), run in program order by a short interpreter loop that attaches the
instruction's source position to any error; the covariance of two atoms of one Gaussian group is
the ``GAUSSIAN_COV`` rule of the op that created them (the block's data for InitVector in ops/init.py;
sigma^2 E[Z^x Z^y] for MatMul in ops/matmul.py).  The rules:

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

from ..ir.core import PARAMS, VEC_ARGS, AxisRef
from ..ir.describe import describe
from ..ops.registry import DERIVE, GAUSSIAN_COV, GAUSSIAN_MEAN, interpret
from . import printers
from .expectation import Expectations, LimitError
from .symbols import INDEX, Data, atom_of, is_qref, new_quantity, reindex


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
        self._atom_means = {}
        self._atom_covs = {}
        self._current = None

    def _tracked(self):
        """The instructions in order, each the current one (origin of what is derived) while its rule runs."""
        for ins in self.program.instructions:
            self._current = ins
            yield ins

    def name(self, value):
        return describe(value, self.defining)

    # ------------------------------------------------------------------ the interpreter loop

    def run(self):
        for _ in interpret(DERIVE, self._tracked(), self, errors=(LimitError, ValueError, ZeroDivisionError),
                           message=lambda ins, e: f"in the limit of {self.name(ins.out)}: {e}"):
            pass
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
            if expr.has(sympy.zoo):
                raise LimitError("the limit is infinite: a division by zero")
            raise LimitError(f"the limit is not a finite real number: {printers.text(expr, {})}")
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
        """E of an atom: the Gaussian-group rule of the op that created it."""
        if a not in self._atom_means:
            self._atom_means[a] = GAUSSIAN_MEAN[type(atom_of(a).instr)](self, a)
        return self._atom_means[a]

    def atom_cov(self, a, b, axes):
        """Cov(a, b) of two atoms (in the context whose index symbols they use).

        Memoised here (the rules memoise their quantities; this saves re-canonicalising the pair,
        asked for dozens of times per layer of a deep network)."""
        key = (a, b, axes)
        if key not in self._atom_covs:
            A, B = atom_of(a), atom_of(b)
            if A.group != B.group:
                return sympy.S.Zero
            self._atom_covs[key] = GAUSSIAN_COV[type(A.instr)](self, a, b, axes)
        return self._atom_covs[key]

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

    def _data_ref(self, key, arr, args, axes, text, ins):
        arr = np.asarray(arr, dtype=np.float64)
        if arr.size and np.all(arr == arr.flat[0]):
            return exact_number(arr.flat[0])
        if key not in self._data_q:
            self._data_q[key] = self.add(new_quantity("C", axes, Data(arr, text), "data", method="data",
                                                      origin=(self.name(ins.out), ins.pos), meaning=text))
        return self._data_q[key](*args)


def derive(program):
    """The limit program of a checked Program (see :class:`~tensorprog.limit.program.LimitProgram`)."""
    from . import templates
    templates.load_store()
    limit = Deriver(program).run()
    templates.save_store()
    return limit
