"""The nonlinearity registry: one record per coordinatewise function a program can call.

A :class:`Nonlinearity` holds everything the compiler knows about a function: its user name and
arity, the sympy constructor (whose class carries the derivative), the numpy implementation, the
numba printer rule, whether it has kinks, whether it is cheap to compile, whether the closed-form
table and Stein's lemma know it, and its row of the docs table.  The tables the rest of the
package used to keep by hand (``functions._BUILTINS``/``NUMPY_IMPL``, ``terms._NUMPY_FUNCS``,
``npfuncs.MODULE``, ``codegen._UNARY``, ``integrals.NONSMOOTH``, ``fused._CHEAP``,
``expectation._TABLE_FUNCTIONS``, ``closed_forms._STEIN_HEADS``) are views generated from here.

The builtins are registered by :mod:`tensorprog.nonlinearities.builtins` (one entry each);
:func:`register_nonlinearity` lets a user add a numeric function without editing the package.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

__all__ = ["Nonlinearity", "REGISTRY", "register", "register_nonlinearity", "docs_table"]


@dataclass(frozen=True)
class Nonlinearity:
    """Everything known about one builtin (or user-registered) coordinatewise function.

    name        the name programs use (``relu``, ``abs``, ``leaky_relu``)
    arity       number of arguments; the first is the coordinatewise input, the rest scalars
    make        sympy constructor: ``make(x, *params)`` is the sympy expression
    sympy_name  the class name of the sympy head ``make`` builds (what printers and lambdify see);
                None when ``make`` builds no head of its own (``identity``, ``leaky_relu``, ``sqrt``)
    numpy       vectorised numpy implementation of the head, or None (then sympy's own numpy
                printing is used: ``exp``, ``sin``, ...)
    data_numpy  numpy implementation used on data arguments (default: ``numpy``)
    numba       numba source: a function name (``"_sp.tanh"``) called with the argument, or a
                callable ``rule(*printed_args) -> source`` for inline forms; None: no code of its own
    kinks       True when the function (or a derivative) is not smooth at 0: quadrature splits there
    cheap       True when it compiles to a few arithmetic operations (no transcendental call)
    closed_form True when the expectation rule table has closed forms with it
    stein       True when Stein's lemma terminates on it (its derivatives end in the table)
    doc         (function, derivative) text of its row in the docs table of docs/language.md
    single      (formula, rule) or (): the closed form of E[f(u)], u ~ N(m, s), as ``rule(m, s)``
                (sympy expressions); a builtin's forms may instead live in closed_forms' tables
    pairs       ((other, formula, rule), ...): closed forms of E[f(u) other(v)] for a centred pair
                with Var u = a, Var v = b, Cov(u, v) = c, as ``rule(a, b, c)``; ``other`` is this
                function's name or another registered one (added to the table in both orders)
    asymptotics (m, g) or (): f(x) ~ x^m as x -> 0 (m = 0 when f(0) != 0) and |f(x)| ~ |x|^g as
                |x| -> oo (g = 0 bounded, -oo vanishing): the width exponents of ``tpc scaling``
                (tensorprog/scaling/orders.py); () makes them undecided
    """

    name: str
    arity: int
    make: Callable
    sympy_name: Optional[str] = None
    numpy: Optional[Callable] = None
    data_numpy: Optional[Callable] = None
    numba: Any = None
    kinks: bool = False
    cheap: bool = False
    closed_form: bool = False
    stein: bool = False
    doc: tuple = ("", "")
    single: tuple = ()   # (formula text, rule(m, s)): E[f(u)] for u ~ N(m, s), a sympy expression
    pairs: tuple = ()    # ((other name, formula text, rule(a, b, c)), ...): E[f(u) other(v)], centred
    asymptotics: tuple = ()   # (m, g): f(x) ~ x^m at 0, |x|^g at infinity (tpc scaling)
    user: bool = field(default=False, compare=False)

    @property
    def head(self):
        """The sympy class of the head (for Stein's lemma), or None."""
        if self.sympy_name is None:
            return None
        return getattr(self.make, "func", self.make) if isinstance(self.make, type) else None


# name -> Nonlinearity, in registration order (the docs table follows it).
REGISTRY: dict = {}
# Views that must stay the same dict objects (other modules hold references to them); they are
# refreshed by ``register``.
BUILTINS_VIEW: dict = {}      # name -> (constructor, arity)            (functions._BUILTINS)
NUMPY_VIEW: dict = {}         # sympy name -> numpy implementation     (functions.NUMPY_IMPL)
DATA_NUMPY_VIEW: dict = {}    # user name -> numpy implementation      (terms._NUMPY_FUNCS)
NUMBA_UNARY_VIEW: dict = {}   # sympy name -> numba function name      (codegen._UNARY)
NUMBA_RULES_VIEW: dict = {}   # sympy name -> rule(*printed args)      (codegen._fn_* hooks)
NONSMOOTH_VIEW: set = set()   # sympy names with kinks                 (integrals.NONSMOOTH)
CHEAP_VIEW: set = set()       # sympy names cheap to compile           (fused._CHEAP)
TABLE_VIEW: set = set()       # sympy names of the closed-form table   (expectation._TABLE_FUNCTIONS)
STEIN_VIEW: set = set()       # sympy classes Stein terminates on      (closed_forms._STEIN_HEADS)
TABLE_VIEW.update({"DiracDelta", "SafeCorr", "Zscore"})  # the limit pass's own table heads
# Called with each entry registered (and, on subscription, with every entry so far): the
# closed-form solver adds the entries' ``single`` and ``pairs`` forms to its table this way.
_LISTENERS: list = []


def subscribe(listener):
    """Call ``listener(entry)`` for every registered entry, now and on each later registration."""
    _LISTENERS.append(listener)
    for entry in list(REGISTRY.values()):
        listener(entry)


def register(entry: Nonlinearity, replace=False):
    """Add ``entry`` to the registry and to every derived view."""
    if entry.name in REGISTRY and not replace:
        raise ValueError(f"a nonlinearity named {entry.name!r} is already registered")
    REGISTRY[entry.name] = entry
    BUILTINS_VIEW[entry.name] = (entry.make, entry.arity)
    key = entry.sympy_name
    if entry.data_numpy is not None or entry.numpy is not None:
        DATA_NUMPY_VIEW[entry.name] = entry.data_numpy or entry.numpy
    if key is None:
        return entry
    if entry.numpy is not None:
        NUMPY_VIEW[key] = entry.numpy
    if isinstance(entry.numba, str):
        NUMBA_UNARY_VIEW[key] = entry.numba
    elif entry.numba is not None:
        NUMBA_RULES_VIEW[key] = entry.numba
    if entry.kinks:
        NONSMOOTH_VIEW.add(key)
    if entry.cheap:
        CHEAP_VIEW.add(key)
    if entry.closed_form or entry.single or entry.pairs:
        TABLE_VIEW.add(key)
    if entry.stein:
        STEIN_VIEW.add(entry.make)
    for listener in _LISTENERS:
        listener(entry)
    return entry


def docs_table():
    """The markdown table of section 5 of docs/language.md: consecutive builtins with the same
    text share a row."""
    rows = []
    for e in REGISTRY.values():
        if e.user:
            continue
        label = f"`{e.name}`" if e.arity == 1 else f"`{e.name}(x, {', '.join('abcd'[:e.arity - 1])})`"
        if rows and rows[-1][1:] == e.doc:
            rows[-1][0].append(label)
        else:
            rows.append(([label],) + tuple(e.doc))
    lines = ["| name | function | derivative |", "|---|---|---|"]
    lines += ["| %s | %s | %s |" % (", ".join(names), f, d) for names, f, d in rows]
    return "\n".join(lines) + "\n"


from .user import register_nonlinearity  # noqa: E402
