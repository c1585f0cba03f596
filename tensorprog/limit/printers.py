"""Printers for limit expressions: unicode text and LaTeX (sympy printers with our symbols).

Atoms print as ``Z[g[1]](i)`` (an initial vector) or ``Ẑ[W[2]@relu(g[1])](i)``
(the Gaussian part of a MatMul); quantities by their display name, ``E3(i, j)``;
index symbols as i, j, ...  The LaTeX printer renders the same objects as
``Z^{g[1]}_{i}``, ``\\hat Z^{W[2] relu(g[1])}_{i}``, ``E_{3}(i, j)``.
"""
from __future__ import annotations

import re

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from .symbols import atom_of, quantity_of


def _is_init(atom):
    return atom.group[0] == "init"


class TextPrinter(StrPrinter):
    """Compact text: quantities and atoms by name, ``*`` as ``·``."""

    def __init__(self, names, settings=None):
        super().__init__(settings or {})
        self.names = names  # Quantity -> display name

    def _print_Function(self, expr):
        a = atom_of(expr)
        if a is not None:
            head = f"Z[{a.label}]" if _is_init(a) else f"Ẑ[{a.label}]"
            return head + (f"({', '.join(self._print(x) for x in expr.args)})" if expr.args else "")
        q = quantity_of(expr)
        if q is not None:
            head = self.names.get(q, q.label)
            return head + (f"({', '.join(self._print(x) for x in expr.args)})" if expr.args else "")
        return super()._print_Function(expr)

    def _print_Mul(self, expr):
        return re.sub(r"(?<!\*)\*(?!\*)", "·", super()._print_Mul(expr))

    def _print_Pow(self, expr, rational=False):
        return super()._print_Pow(expr, rational).replace("**", "^")

    def _print_Dummy(self, expr):
        return expr.name


class TexPrinter(LatexPrinter):
    def __init__(self, names, settings=None):
        super().__init__(settings or {})
        self.names = names

    @staticmethod
    def _texname(label):
        return label.replace("_", r"\_").replace("%", r"\%").replace("@", r"\,").replace("#", r"\#")

    def _args(self, expr):
        return ", ".join(self._print(x) for x in expr.args)

    def _print_Function(self, expr, exp=None):
        a = atom_of(expr)
        if a is not None:
            base = r"Z" if _is_init(a) else r"\hat{Z}"
            tex = f"{base}^{{\\mathrm{{{self._texname(a.label)}}}}}"
            if expr.args:
                tex += f"_{{{self._args(expr)}}}"
            return f"\\left({tex}\\right)^{{{exp}}}" if exp else tex
        q = quantity_of(expr)
        if q is not None:
            name = self.names.get(q, q.label)
            head = _tex_quantity_name(name, self._texname)
            tex = head + (f"\\left({self._args(expr)}\\right)" if expr.args else "")
            return f"{tex}^{{{exp}}}" if exp else tex
        return super()._print_Function(expr, exp)

    def _print_Dummy(self, expr):
        return expr.name[0] + "_{" + expr.name[1:] + "}" if expr.name[1:].isdigit() else expr.name


def _tex_quantity_name(name, esc):
    greek = {"Σ": r"\Sigma", "E": r"\mathbb{E}", "D": r"\dot{D}", "C": "C"}
    head = name.rstrip("0123456789")
    num = name[len(head):]
    if head in greek and num:
        return f"{greek[head]}_{{{num}}}"
    return r"\mathrm{" + esc(name) + "}"


def text(expr, names) -> str:
    return TextPrinter(names).doprint(sympy.sympify(expr))


def latex(expr, names) -> str:
    return TexPrinter(names).doprint(sympy.sympify(expr))
