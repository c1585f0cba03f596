"""Derivation templates: the expectation engine's work memoised by the *structure* of an integrand.

Layer l of a deep network asks the engine the same questions as layer l - 1 with other atoms and other
quantities: E[relu(b_l + Zhat_l(i)) relu(b_l + Zhat_l(j))] is E[relu(b + Z(i)) relu(b + Z(j))] with the
names changed.  :func:`placeholders` renames the atoms and quantity references of an expression to
positional stand-ins (the k-th atom in creation order becomes ``A_k`` in its group's class, the k-th
quantity ``R_k``), so every layer's question has one key.  A template records the answer over the
stand-ins; replaying it renames them back (:meth:`Renaming.back`).

Exactness: the stand-ins keep the relative order of the names they replace (atoms are named in creation
order, ``Z...`` after ``Q...``), so sympy orders terms, and the engine walks them, as it would on the
real expression; whatever depends on values rather than names (a component that is 0, a covariance
that is a number) is recomputed with the real atoms on replay and checked against what the template
saw (see :class:`~tensorprog.limit.expectation.Expectations`).  ``TENSORPROG_DERIVE_TEMPLATES=0``
turns templates off (the reference path the tests compare with).
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import pickle
import sys
import warnings

from sympy.core.function import AppliedUndef
from sympy.core.operations import AssocOp

from . import dag, symbols
from .symbols import _ATOMS, STAND_IN_ATOMS, STAND_IN_QUANTS, Atom, Quantity, atom_of, atoms_in, qrefs_in, undefined_function

_ATOM_PREFIX = "Z~"   # after every quantity reference ('Q...'), as real atoms ('Z...') are
_QREF_PREFIX = "Q~"


# Larger expressions (the integrands of unrolled training steps) rarely recur, and renaming them
# costs more than a template saves: they are derived directly.
MAX_NODES = 200


def enabled() -> bool:
    return os.environ.get("TENSORPROG_DERIVE_TEMPLATES", "1") != "0"


def worth_it(expr) -> bool:
    """Templates on and ``expr`` small enough (at most MAX_NODES distinct subexpressions)."""
    if not enabled():
        return False
    seen, stack = {expr}, [expr]
    while stack:
        for arg in stack.pop().args:
            if arg not in seen:
                if len(seen) >= MAX_NODES:
                    return False
                seen.add(arg)
                stack.append(arg)
    return True


def _stand_in_atom(k, group):
    name = f"{_ATOM_PREFIX}{k:05d}g{group:05d}"
    atom = STAND_IN_ATOMS.get(name)
    if atom is None:
        atom = Atom(None, ("template", group), f"A{k}", None, undefined_function(name))
        STAND_IN_ATOMS[name] = atom
    return atom


def _stand_in_qref(k):
    name = f"{_QREF_PREFIX}{k:05d}"
    q = STAND_IN_QUANTS.get(name)
    if q is None:
        q = Quantity(-1, f"R{k}", (), None, "template", fn=undefined_function(name))
        STAND_IN_QUANTS[name] = q
    return q


_APPLICATIONS: dict = {}


def apply(cls, args):
    """``cls(*args)`` for an undefined function, memoised: building an application costs ~30 us in
    sympy, and replaying templates builds the same few (an atom at i, at j) again and again."""
    key = (cls.__name__, args)
    out = _APPLICATIONS.get(key)
    if out is None:
        if len(_APPLICATIONS) > 100_000:   # bounded: the classes of finished derivations go
            _APPLICATIONS.clear()
        out = _APPLICATIONS[key] = cls(*args)
    return out


_REBUILT: dict = {}


def rebuilt(func, args):
    """``func(*args, evaluate=False)`` (a function or power of renamed arguments), memoised likewise."""
    key = (func, args)
    out = _REBUILT.get(key)
    if out is None:
        if len(_REBUILT) > 100_000:
            _REBUILT.clear()
        out = _REBUILT[key] = func(*args, evaluate=False)
    return out


class Renaming:
    """An order-preserving bijection between the atom and quantity function classes of an expression
    and stand-ins (the k-th atom class by name -> ``A_k`` of its group, the k-th quantity class -> ``R_k``).

    ``signature`` (the real names in stand-in order) with the renamed expression identifies the
    real expression.
    """

    def __init__(self, atom_classes, qref_classes):
        self.atom_classes, self.qref_classes = tuple(atom_classes), tuple(qref_classes)
        groups = {}
        mapping = {}
        for k, cls in enumerate(self.atom_classes):
            g = groups.setdefault(_ATOMS[cls.__name__].group, len(groups))
            mapping[cls] = _stand_in_atom(k, g).fn
        for k, cls in enumerate(self.qref_classes):
            mapping[cls] = _stand_in_qref(k).fn
        # keyed by class name: hashing an undefined-function class is slow in sympy
        self.to_stand_in = {k.__name__: v for k, v in mapping.items()}
        self.to_real = {v.__name__: k for k, v in mapping.items()}
        self.signature = tuple(c.__name__ for c in self.atom_classes + self.qref_classes)

    def extended(self, exprs):
        """(the renaming of these classes and of the quantity classes in ``exprs``, where each of this
        renaming's quantity classes went in it): numbering over the union keeps the order of names."""
        extra = {type(q) for e in exprs for q in qrefs_in(e)} - set(self.qref_classes)
        if not extra:
            return self, None
        qrefs = sorted(set(self.qref_classes) | extra, key=lambda c: c.__name__)
        return Renaming(self.atom_classes, qrefs), tuple(qrefs.index(c) for c in self.qref_classes)

    @staticmethod
    def _swap(expr, classes):
        """``expr`` with every application f(args) of a class in ``classes`` replaced by classes[f](args).

        Nothing is re-evaluated: the renaming keeps the order of names (stand-ins are numbered in
        the order of the names they replace, and sympy orders undefined functions by name), so
        every sum and product keeps its canonical order of terms, and a function or a power of
        renamed arguments evaluates as its original did (a stand-in has its original's assumptions).
        """
        if not classes or expr.is_Atom:
            return expr
        if isinstance(expr, AppliedUndef):       # an atom or a quantity reference: no walk
            cls = classes.get(type(expr).__name__)
            return expr if cls is None else apply(cls, expr.args)

        def visit(node, args):
            if isinstance(node, AppliedUndef):
                cls = classes.get(type(node).__name__)
                return node if cls is None else apply(cls, node.args)
            if not args or all(a is b for a, b in zip(args, node.args)):
                return node
            if isinstance(node, AssocOp):
                return node.func._from_args(args, node.is_commutative)
            return rebuilt(node.func, args)
        return dag.postorder(expr, visit, {})

    def forth(self, expr):
        return self._swap(expr, self.to_stand_in)

    def back(self, expr):
        return self._swap(expr, self.to_real)

    def back_atom(self, stand_in):
        """The real atom application of a stand-in atom application (no walk)."""
        return apply(self.to_real[type(stand_in).__name__], stand_in.args)


def placeholders(expr):
    """(expr over stand-ins, :class:`Renaming`): atoms and quantity references renamed positionally.

    Atoms keep which of them share a Gaussian group (group numbers by first appearance); the
    numbering follows the names, i.e. creation order, so the stand-ins sort as the originals do.
    """
    renaming = Renaming(sorted({type(a) for a in atoms_in(expr)}, key=lambda c: c.__name__),
                        sorted({type(q) for q in qrefs_in(expr)}, key=lambda c: c.__name__))
    return renaming.forth(expr), renaming


def is_stand_in(expr) -> bool:
    return isinstance(expr, AppliedUndef) and type(expr).__name__.startswith((_ATOM_PREFIX, _QREF_PREFIX))


__all__ = ["Renaming", "placeholders", "enabled", "is_stand_in", "atom_of"]


def _stand_in_class(name):
    """The stand-in class named ``name`` (``Z~<k>g<group>`` or ``Q~<k>``), registered."""
    if name.startswith(_ATOM_PREFIX):
        k, g = name[len(_ATOM_PREFIX):].split("g")
        return _stand_in_atom(int(k), int(g)).fn
    return _stand_in_qref(int(name[len(_QREF_PREFIX):])).fn


symbols.STAND_IN_CLASS = _stand_in_class


# ---------------------------------------------------------------- the template store (across runs)
#
# The engine's template tables (``table(name)``) are kept in the kernel cache directory
# (tensorprog/numeric/cache.py: user-only, trusted, or a private temporary directory), in one file per
# version of the code that makes them (tensorprog's version, sympy's, and the source of the limit
# pass, its op rules and the nonlinearities), so a second run of a program finds the structures of the first
# derived.  Each entry is pickled on its own: one that cannot be read is skipped (a corrupt file or
# entry costs its derivation, never the run), one that cannot be written is left out.

_TABLES: dict = {}
_STORE = {"loaded": False, "sizes": None, "read": 0}
MAX_STORED = 20_000        # entries per table: the store of a long-lived cache stays small
_BLOBS: dict = {}          # (table, key, variants) -> the pickled entry (each pickled once per process)


def table(name) -> dict:
    """The template table ``name`` (a dict kept across derivations, and across runs by the store)."""
    return _TABLES.setdefault(name, {})


def _store_path():
    root = pathlib.Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    from .._version import __version__
    digest.update(f"{__version__} {sympy_version()}".encode())
    sources = [root / "functions.py"] + [p for d in ("limit", "ops", "nonlinearities") for p in (root / d).rglob("*.py")]
    for path in sorted(sources):
        digest.update(path.read_bytes())
    from ..numeric import cache
    return cache.cache_dir() / f"derive-templates-{digest.hexdigest()[:16]}.pickle"


def sympy_version():
    import sympy
    return sympy.__version__


def store_active() -> bool:
    """Templates persist when they are on, TENSORPROG_DERIVE_TEMPLATE_STORE=1, and the numeric backend
    is loaded (an evaluation: a derivation alone does not import numba for its cache directory).

    Opt-in: reading sympy expressions back from a pickle costs about as much as deriving them (measured
    on the examples: mlp_gelu 0.36 s direct, 0.21 s from the store; mlp_ntk 0.16 s direct, 0.61 s with a
    store of 650 entries), so a store pays only for programs whose closed forms are slow to find."""
    return (enabled() and os.environ.get("TENSORPROG_DERIVE_TEMPLATE_STORE", "0") == "1"
            and "tensorprog.numeric.cache" in sys.modules)


def _sizes():
    return {name: len(t) for name, t in _TABLES.items()}


def load_store():
    """Read the stored templates once per process (a missing, unreadable or corrupt store is ignored)."""
    if _STORE["loaded"] or not store_active():
        return
    _STORE["loaded"] = True
    try:
        path = _store_path()
        stored = pickle.loads(path.read_bytes())
        items = [(name, blob) for name, blobs in stored.items() for blob in blobs]
    except FileNotFoundError:
        items = []
    except Exception as e:      # a corrupt store: derived anew, and rewritten
        warnings.warn(f"ignoring the derive template store ({type(e).__name__}: {e})", RuntimeWarning)
        items = []
    count = 0
    for name, blob in items:
        try:
            key, value = pickle.loads(blob)
            hash(key)
        except Exception:       # a corrupt entry: derived anew
            continue
        table(name).setdefault(key, value)
        count += 1
    _STORE["sizes"], _STORE["read"] = _sizes(), count


def save_store():
    """Write the templates if this process added any (an unwritable store is left as it is)."""
    if not store_active() or not _STORE["loaded"] or _STORE["sizes"] == _sizes():
        return
    blobs = {}
    for name, t in _TABLES.items():
        out = blobs[name] = []
        for item in list(t.items())[:MAX_STORED]:
            memo = (name, item[0], len(item[1]) if isinstance(item[1], list) else 0)
            blob = _BLOBS.get(memo)
            if blob is None:
                try:
                    blob = _BLOBS[memo] = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:   # e.g. a function defined by a program: not kept
                    continue
            out.append(blob)
    try:
        path = _store_path()
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(blobs, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)
    except OSError:
        return
    _STORE["sizes"] = _sizes()
