"""The symbols of the limit: index variables, Gaussian atoms and deterministic quantities.

Everything in the limit is a sympy expression over three kinds of objects:

* index symbols ``i, j, k, ...`` (``INDEX[p]``): the p-th axis of a family;
* atoms: Gaussian random variables, applied undefined functions ``Ẑ_m(i)`` -- the
  initial vectors and one ``Ẑ`` per MatMul instruction ``m``, indexed by member;
* quantity references ``Q(i, j)``: deterministic limits (scalars, covariances,
  expectations, Zdot coefficients) defined once in the :class:`LimitProgram` and
  looked up by index.

A family template is written with its own axes as ``INDEX[0..k-1]``; using a
member elsewhere is ``reindex(expr, terms)``, a simultaneous substitution of the
index symbols (so ``E[Z^{x}(i) Z^{x}(j)]`` is one template, derived once).
"""
from __future__ import annotations

import copyreg
import functools
import itertools
import os
import weakref
from dataclasses import dataclass, field

import sympy
from sympy.core.function import AppliedUndef, UndefinedFunction

from . import dag

__all__ = ["INDEX", "index_symbol", "reindex", "Atom", "Quantity", "atoms_in", "qrefs_in", "index_symbols_in",
           "is_atom", "is_qref", "atom_of", "quantity_of", "new_atom", "new_quantity", "Integral", "Data",
           "SteinCoefficient"]

_INDEX_NAMES = "ijklmpqrstuvw"


class _IndexSymbols(tuple):
    """The index symbols; asking for more than there are (a family over more than 13 axes, or two
    families' axes side by side in a covariance) is a clear error, never a silently short slice."""

    def __getitem__(self, key):
        stop = (key.stop if key.stop is not None else 0) if isinstance(key, slice) else (key + 1 if key >= 0 else 0)
        if stop > len(self):
            raise ValueError(f"a family (or a pair of families in one covariance) spans {stop} axes; "
                             f"at most {len(self)} are supported")
        return super().__getitem__(key)


INDEX = _IndexSymbols(sympy.Symbol(c, integer=True, nonnegative=True) for c in _INDEX_NAMES)


def index_symbol(p: int) -> sympy.Symbol:
    return INDEX[p]


def reindex(expr, terms):
    """Substitute ``INDEX[p] -> terms[p]`` simultaneously (terms: index symbols or integers)."""
    mapping = {INDEX[p]: sympy.sympify(t) for p, t in enumerate(terms) if INDEX[p] != t}
    return dag.xreplace(expr, mapping) if mapping else expr


# function name -> Atom / Quantity.  Keyed by name, not by the sympy class: hashing a class calls
# into sympy, which fails in the weak dictionaries' callbacks at interpreter shutdown.  Weak values:
# a derivation (its deriver keeps its atoms and quantities) owns them; when its LimitProgram is
# dropped they -- with their data arrays -- go too, instead of living as long as the process.
_ATOMS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_QUANTS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
# sympy identifies undefined functions by name, so a name must never stand for two things: not in
# two derivations alive at once, and not after a derived limit is pickled into another process.
# A name is "Z"/"Q" + this process's random tag + a counter.  The counter is zero-padded and the
# tag common to the process, so sympy's canonical order of terms follows creation order: the same
# structure (a layer of a deep network, or the same program derived in another process) prints --
# and generates code -- identically.  A forked child draws a new tag.
_UIDS = itertools.count()
_TAG = os.urandom(4).hex()


def _new_tag():
    global _TAG
    _TAG = os.urandom(4).hex()


os.register_at_fork(after_in_child=_new_tag)


class _NamedByFunction:
    """An atom or quantity is named by its sympy function (unique, see _TAG).  Unpickling interns
    it: the object already registered under that name when there is one (a copy made in this
    process), else a new one that joins the registry (``_registry``), so that the expressions
    referring to it resolve in any process.  Identity (and hashing) stays the object's own."""

    _registry = None

    def __reduce__(self):
        return _intern, (type(self), self.__dict__)


def _intern(cls, state):
    existing = cls._registry.get(state["fn"].__name__)
    if existing is not None:
        return existing
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    cls._registry[obj.fn.__name__] = obj
    return obj


@dataclass(eq=False)
class Atom(_NamedByFunction):
    """A Gaussian atom: an initial vector (``block``/``member``) or the Ẑ of a MatMul.

    ``group``: atoms in different groups are independent.  Groups are
    ``("init", block id)`` or ``("W", matrix id, transposed)``.
    """

    value: object            # the IR value this atom belongs to (InitVector or MatMul output)
    group: tuple
    label: str
    instr: object = None     # the defining instruction
    fn: object = field(default=None, repr=False)

    def __call__(self, *index):
        return self.fn(*index)



@dataclass(eq=False)
class Quantity(_NamedByFunction):
    """A deterministic limit quantity over a grid of family axes.

    ``definition`` is a sympy expression in the grid's index symbols and other
    quantity references (evaluated pointwise), or an :class:`Integral` /
    :class:`Data` / :class:`SteinCoefficient` object for the numeric backend.
    ``kind``: "scalar" (a program scalar), "moment" (an expectation), "cov"
    (covariance of Gaussian atoms), "zdot" (a Zdot coefficient), "data".
    """

    id: int
    label: str
    axes: tuple
    definition: object
    kind: str
    method: str = ""
    origin: object = None    # (value name, SourcePos) of the program statement it comes from
    meaning: object = None   # what it stands for, for printing: e.g. the integrand of an expectation
    fn: object = field(default=None, repr=False)

    def __call__(self, *index):
        return self.fn(*index)

    @property
    def grid(self):
        return tuple(INDEX[p] for p in range(len(self.axes)))

    def ref(self):
        """The reference with the canonical index symbols of the grid."""
        return self.fn(*self.grid)



Atom._registry = _ATOMS
Quantity._registry = _QUANTS
# The stand-ins of derivation templates (templates.py): positional atoms and quantity references that
# live as long as the process, kept apart from the registries of real derivations.
STAND_IN_ATOMS: dict = {}
STAND_IN_QUANTS: dict = {}


class _UndefinedFunction(UndefinedFunction):
    """sympy's undefined-function class with its hash and class key computed once.

    sympy hashes the class of an applied function whenever it builds one (its constructor cache is
    keyed by the class) and asks for its class key whenever it orders terms; both are recomputed on
    every call, which made them the largest single cost of deriving a deep network.  Equal (same name
    and assumptions) to sympy's own class of that name, with the same hash.
    """

    def __new__(mcl, name, **assumptions):
        if assumptions == {"real": True}:
            cls = super().__new__(mcl, name, bases=(_RealApplied,), real=True)
        else:
            cls = super().__new__(mcl, name, **assumptions)
        key = Function_class_key(cls)
        cls.class_key = classmethod(lambda c, _key=key: _key)
        cls._hash = hash((key, frozenset(cls._kwargs.items())))
        return cls

    def __hash__(cls):
        return cls._hash

    def __eq__(cls, other):
        return cls is other or (isinstance(other, UndefinedFunction) and cls.class_key() == other.class_key()
                                and cls._kwargs == other._kwargs)

    def __ne__(cls, other):
        return not cls == other


Function_class_key = sympy.Function.class_key.__func__
_REFERENCE = sympy.Function("_reference_real_function", real=True)
# what sympy's class preparation derives from the assumption real=True (the same for every such class)
_PREPARED = {k: v for k, v in vars(_REFERENCE).items()
             if k.startswith("is_") or k in ("_explicit_class_assumptions", "default_assumptions", "_prop_handler")}


class _RealApplied(AppliedUndef):
    """Base of the real-valued undefined functions: a new class copies the assumption facts sympy
    derived once for ``_REFERENCE`` instead of deriving them again (a third of a new class's cost)."""

    def __init_subclass__(cls, **kwargs):
        for k, v in _PREPARED.items():
            setattr(cls, k, v)


# set by templates.py: the class of a stand-in by name, registering it (stand-ins read from the
# template store of an earlier run are the registered ones)
STAND_IN_CLASS = None


def _rebuild(name, kwargs):
    if STAND_IN_CLASS is not None and name.startswith(("Z~", "Q~")):
        return STAND_IN_CLASS(name)
    return _UndefinedFunction(name, **kwargs)


copyreg.pickle(_UndefinedFunction, lambda cls: (_rebuild, (cls.name, cls._kwargs)))


def undefined_function(name) -> type:
    """A real-valued undefined sympy function named ``name`` (``sympy.Function(name, real=True)``)."""
    return _UndefinedFunction(name, real=True)


def new_atom(value, group, label, instr=None) -> Atom:
    fn = undefined_function(f"Z{_TAG}{next(_UIDS):09d}")
    a = Atom(value, group, label, instr, fn)
    _ATOMS[fn.__name__] = a
    return a


def new_quantity(label, axes, definition, kind, **kw) -> Quantity:
    uid = next(_UIDS)
    fn = undefined_function(f"Q{_TAG}{uid:09d}")
    q = Quantity(uid, label, tuple(axes), definition, kind, fn=fn, **kw)
    _QUANTS[fn.__name__] = q
    return q


def atom_of(expr) -> Atom | None:
    if not isinstance(expr, AppliedUndef):
        return None
    name = type(expr).__name__
    return _ATOMS.get(name) or STAND_IN_ATOMS.get(name)


def quantity_of(expr) -> Quantity | None:
    if not isinstance(expr, AppliedUndef):
        return None
    name = type(expr).__name__
    return _QUANTS.get(name) or STAND_IN_QUANTS.get(name)


def is_atom(expr) -> bool:
    return isinstance(expr, AppliedUndef) and (type(expr).__name__ in _ATOMS or type(expr).__name__ in STAND_IN_ATOMS)


def is_qref(expr) -> bool:
    return isinstance(expr, AppliedUndef) and (type(expr).__name__ in _QUANTS or type(expr).__name__ in STAND_IN_QUANTS)


def distinct_subexpressions(expr):
    """Every distinct node of ``expr`` once.  Unrolled programs share subexpressions heavily;
    sympy's own traversals (``atoms``, ``free_symbols``, ``has``) walk the expression as a tree,
    which visits a shared node once per path to it."""
    seen = {expr}
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        for arg in node.args:
            if arg not in seen:
                seen.add(arg)
                stack.append(arg)


@functools.lru_cache(maxsize=1 << 16)
def _applied(expr) -> frozenset:
    # distinct_subexpressions inlined, not descending into numbers, symbols and applied functions
    # (whose arguments are indices): this runs for every expression the derivation looks at.
    out = set()
    seen = {expr}
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, AppliedUndef):
            out.add(node)
            continue
        for arg in node.args:
            if not arg.is_Atom and arg not in seen:
                seen.add(arg)
                stack.append(arg)
    return frozenset(out)


def atoms_in(expr) -> set:
    """The Gaussian atoms in ``expr`` (memoised: the same large expressions are asked about often)."""
    return {a for a in _applied(expr) if type(a).__name__ in _ATOMS or type(a).__name__ in STAND_IN_ATOMS}


def qrefs_in(expr) -> set:
    return {a for a in _applied(expr) if type(a).__name__ in _QUANTS or type(a).__name__ in STAND_IN_QUANTS}


def index_symbols_in(expr) -> list:
    """The index symbols occurring in ``expr``, in canonical order (i before j ...)."""
    if not isinstance(expr, sympy.Basic):
        return []
    syms = _symbols(expr)
    return [s for s in INDEX if s in syms]


def symbols_in(expr) -> frozenset:
    """Every Symbol node of ``expr``, each distinct node visited once (memoised).  Equal to
    ``expr.free_symbols`` for expressions without binding constructs (the limit's are free of them)."""
    return _symbols(expr)


@functools.lru_cache(maxsize=1 << 14)
def _symbols(expr) -> frozenset:
    return frozenset(n for n in distinct_subexpressions(expr) if isinstance(n, sympy.Symbol))


# ---------------------------------------------------------------- definitions the numeric backend integrates

@dataclass(eq=False)
class Integral:
    """E[f(u)] for a Gaussian vector u ~ N(mean, cov) of ``len(variables)`` dimensions.

    ``integrand`` is a sympy expression in ``variables`` (and constants: quantity
    references, numbers); ``mean`` and ``cov`` are sympy expressions in quantity
    references and the grid's index symbols, evaluated per grid point.
    """

    integrand: sympy.Expr
    variables: tuple
    mean: tuple
    cov: sympy.Matrix

    @property
    def dim(self):
        return len(self.variables)


@dataclass(eq=False)
class Data:
    """A quantity given by data: ``array`` has one axis per grid axis."""

    array: object
    text: str = ""


@dataclass(eq=False)
class SteinCoefficient:
    """E[d f / d Z_t] = sum_l (C^+)_{t l} E[Z_l f]  (Stein's lemma, C^+ the pseudo-inverse).

    ``cov`` is the covariance of the atoms Z_l of one Gaussian group that f depends
    on (a sympy Matrix), ``moments`` the expressions E[Z_l f], ``target`` the
    position t of the atom we differentiate by.
    """

    target: int
    cov: sympy.Matrix
    moments: tuple
