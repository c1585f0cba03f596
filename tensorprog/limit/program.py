"""The limit program: the ordered deterministic quantities of a Tensor Program's limit.

Printable as text (``str``), LaTeX (``.latex()``, ``_repr_latex_`` for Jupyter)
and JSON (``.to_json()``).  Each quantity is defined once, as a template over its
family axes, in terms of earlier quantities:

* ``C``: data (covariances and means of initial vectors);
* ``Σ``: covariances of Gaussian atoms, sigma^2 E[Z^x Z^y];
* ``E``: expectations (a closed form, or an integral for the numeric backend);
* ``D``: Zdot coefficients E[dZ^x / dZhat] found by Stein's lemma;
* program scalars by their names (Moments, scalar functions, initial scalars).
"""
from __future__ import annotations

import json
from collections import Counter

import sympy

from . import printers
from .symbols import INDEX, Data, Integral, SteinCoefficient, qrefs_in, quantity_of

_PREFIX = {"moment": "E", "cov": "Σ", "data": "C", "zdot": "D"}


class LimitProgram:
    """Result of :func:`tensorprog.derive`.

    Attributes: ``program`` (the source Program), ``quantities`` (evaluation
    order), ``Z`` (vector value id -> Z template), ``zdot`` (every Zdot term the
    rule considered, zero ones included, with the method used), ``outputs``
    (name -> list of (unrolled index, limit expression)), ``names`` (Quantity ->
    display name).
    """

    def __init__(self, deriver):
        self.program = deriver.program
        self.quantities = list(deriver.quantities)
        self.Z = dict(deriver.Z)
        self.theta = dict(deriver.theta)
        self.sigma2 = dict(deriver.sigma2)
        self.zdot = list(deriver.zdot)
        self.scalar_quantity = dict(deriver.scalar_quantity)
        self._deriver_name = deriver.name
        self._deriver = deriver
        self.atoms = dict(deriver.atom)  # value id -> Atom
        self.outputs = {}
        for o in self.program.outputs:
            self.outputs[o.name] = [(key, self.theta[v.id]) for key, v in o.items]
        self.names = self._display_names()

    def _display_names(self):
        names, count, used = {}, Counter(), Counter()
        for q in self.quantities:
            prefix = _PREFIX.get(q.kind)
            if prefix:
                count[prefix] += 1
                names[q] = f"{prefix}{count[prefix]}"
            else:
                used[q.label] += 1
                names[q] = q.label if used[q.label] == 1 else f"{q.label}#{used[q.label]}"
        return names

    # ------------------------------------------------------------------ queries

    def quantity(self, name):
        """The quantity with display name ``name`` (e.g. ``"E3"`` or a program scalar's name)."""
        for q, n in self.names.items():
            if n == name:
                return q
        raise KeyError(name)

    def definition(self, ref):
        """The definition of a quantity reference, with its index symbols substituted."""
        q = quantity_of(ref)
        d = q.definition
        if isinstance(d, sympy.Basic):
            return d.xreplace({INDEX[p]: a for p, a in enumerate(ref.args)})
        return d

    def inline(self, expr, depth=50):
        """``expr`` with every quantity reference replaced by its (closed-form) definition, recursively.

        Integrals, data and Stein coefficients stay as references.
        """
        expr = sympy.sympify(expr)
        for _ in range(depth):
            refs = [r for r in qrefs_in(expr) if isinstance(quantity_of(r).definition, sympy.Basic)]
            if not refs:
                return expr
            expr = expr.xreplace({r: self.definition(r) for r in refs})
        return expr

    def atom_cov(self, a, b):
        """Cov of two atom applications (e.g. ``Z[h](i)``, ``Ẑ[W@x](j)``) as an expression of quantities."""
        axes = {}
        for atom_expr in (a, b):
            info = self._atoms_by_fn()[type(atom_expr)]
            for arg, axis in zip(atom_expr.args, info.value.axes):
                if arg in INDEX:
                    axes[INDEX.index(arg)] = axis
        ctx = tuple(axes.get(p) for p in range(max(axes) + 1)) if axes else ()
        return self._deriver.atom_cov(a, b, ctx)

    def _atoms_by_fn(self):
        return {at.fn: at for at in self.atoms.values()}

    def nonzero_zdot(self):
        return [t for t in self.zdot if not t.is_zero]

    # ------------------------------------------------------------------ printing

    def text(self, expr):
        return printers.text(expr, self.names)

    def _grid(self, q):
        return ", ".join(str(INDEX[p]) for p in range(len(q.axes)))

    def _head(self, q, printer):
        g = self._grid(q)
        return f"{self.names[q]}({g})" if g else self.names[q]

    def _definition_text(self, q):
        d = q.definition
        if isinstance(d, Data):
            return f"data: {d.text}"
        if isinstance(d, Integral):
            vs = ", ".join(v.name for v in d.variables)
            mean = ", ".join(self.text(m) for m in d.mean)
            cov = "[" + "; ".join(", ".join(self.text(d.cov[p, r]) for r in range(d.dim)) for p in range(d.dim)) + "]"
            return f"E[{self.text(d.integrand)}] over ({vs}) ~ N(({mean}), {cov})"
        if isinstance(d, SteinCoefficient):
            ms = ", ".join(self.text(m) for m in d.moments)
            cov = "[" + "; ".join(", ".join(self.text(d.cov[p, r]) for r in range(d.cov.shape[0]))
                                  for p in range(d.cov.shape[0])) + "]"
            return f"(C⁺ m)[{d.target}] with C = {cov}, m = ({ms})"
        return self.text_cse(d)

    def text_cse(self, expr):
        """Text of ``expr``, with subexpressions that occur several times named τ1, τ2, ... (sympy.cse)."""
        expr = sympy.sympify(expr)
        if sympy.count_ops(expr) < 12:
            return self.text(expr)
        taus = sympy.numbered_symbols("τ", start=1)
        subs, (reduced,) = sympy.cse(expr, symbols=taus, order="none")
        if not subs:
            return self.text(expr)
        where = ", ".join(f"{t} = {self.text(v)}" for t, v in subs)
        return f"{self.text(reduced)}   where {where}"

    def _meaning_text(self, q):
        m = q.meaning
        if m is None or isinstance(m, str):
            return None
        if isinstance(m, tuple) and m[0] == "cov":
            return f"Cov({self.text(m[1])}, {self.text(m[2])})"
        if isinstance(m, tuple) and m[0] == "d":
            return f"E[∂({self.text(m[1])}) / ∂{self.text(m[2])}]"
        return f"E[{self.text(m)}]"

    def __str__(self):
        prog = self.program
        lines = [f"limit of {prog.source.name}"]
        if prog.axes:
            lines.append("  families: " + ", ".join(f"{a.name} ({a.size} points)" for a in prog.axes.values()))
        lines.append("")
        lines.append("random variables (Z, in program order):")
        for ins in prog.instructions:
            if ins.out.id in self.Z:
                g = ", ".join(str(INDEX[p]) for p in range(len(ins.out.axes)))
                head = self._deriver_name(ins.out) + (f"({g})" if g else "")
                lines.append(f"  line {ins.pos.line:<4} Z[{head}] = {self.text(self.Z[ins.out.id])}")
        if self.zdot:
            lines.append("")
            lines.append("Zdot terms (sigma^2 Z^y E[dZ^x/dZhat]):")
            for t in self.zdot:
                coef = "0" if t.is_zero else self.text(t.coefficient)
                lines.append(f"  line {t.matmul.pos.line:<4} {self._deriver_name(t.matmul.out)}: "
                             f"∂/∂{self.text(t.atom)} -> {coef}   [{t.method}]")
        lines.append("")
        lines.append("quantities (evaluation order):")
        for q in self.quantities:
            where = f"line {q.origin[1].line}" if q.origin and q.origin[1] else ""
            meaning = self._meaning_text(q)
            lines.append(f"  {self._head(q, None)} = {self._definition_text(q)}")
            extra = [s for s in (meaning and f"= {meaning}", q.method and f"[{q.method}]", where) if s]
            if extra:
                lines.append("      " + "   ".join(extra))
        lines.append("")
        lines.append("outputs:")
        for name, items in self.outputs.items():
            for key, expr in items:
                k = "".join(f"[{x}]" for x in key)
                lines.append(f"  {name}{k} = {self.text(expr)}")
        return "\n".join(lines)

    def latex(self) -> str:
        """A LaTeX ``align*`` block of the quantities and outputs."""
        tex = printers.TexPrinter(self.names)
        rows = []
        for q in self.quantities:
            d = q.definition
            head = tex.doprint(q.ref())
            if isinstance(d, sympy.Basic):
                body = tex.doprint(d)
            elif isinstance(d, Integral):
                vs = ", ".join(tex.doprint(v) for v in d.variables)
                body = (r"\mathbb{E}_{(" + vs + r") \sim \mathcal{N}}\left[" + tex.doprint(d.integrand) + r"\right]"
                        + r",\ \Sigma = " + tex.doprint(d.cov))
            elif isinstance(d, SteinCoefficient):
                body = r"\left(C^{+} m\right)_{" + str(d.target) + r"},\ C = " + tex.doprint(d.cov)
            else:
                body = r"\text{data}"
            rows.append(f"{head} &= {body}")
        for name, items in self.outputs.items():
            for key, expr in items:
                k = "".join(f"[{x}]" for x in key)
                rows.append(r"\mathrm{" + printers.TexPrinter._texname(name + k) + "} &= " + tex.doprint(expr))
        return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}"

    def _repr_latex_(self):
        return "$$" + self.latex().replace("align*", "aligned") + "$$"

    def to_dict(self):
        tex = printers.TexPrinter(self.names)

        def defn(q):
            d = q.definition
            if isinstance(d, sympy.Basic):
                return {"type": "expression", "text": self.text(d), "latex": tex.doprint(d),
                        "depends": sorted(self.names[quantity_of(r)] for r in qrefs_in(d))}
            if isinstance(d, Integral):
                return {"type": "integral", "dimension": d.dim, "integrand": self.text(d.integrand),
                        "variables": [v.name for v in d.variables], "mean": [self.text(m) for m in d.mean],
                        "cov": [[self.text(d.cov[p, r]) for r in range(d.dim)] for p in range(d.dim)]}
            if isinstance(d, SteinCoefficient):
                return {"type": "stein", "target": d.target, "moments": [self.text(m) for m in d.moments],
                        "cov": [[self.text(x) for x in row] for row in d.cov.tolist()]}
            return {"type": "data", "text": d.text, "shape": list(d.array.shape)}

        return {
            "source": self.program.source.name,
            "quantities": [{"name": self.names[q], "kind": q.kind, "axes": [a.name for a in q.axes],
                            "method": q.method, "meaning": self._meaning_text(q),
                            "line": q.origin[1].line if q.origin and q.origin[1] else None,
                            "variable": q.origin[0] if q.origin else None, "definition": defn(q)}
                           for q in self.quantities],
            "random_variables": [{"variable": self._deriver_name(ins.out), "line": ins.pos.line,
                                  "Z": self.text(self.Z[ins.out.id])}
                                 for ins in self.program.instructions if ins.out.id in self.Z],
            "zdot": [{"matmul": self._deriver_name(t.matmul.out), "line": t.matmul.pos.line,
                      "atom": self.text(t.atom), "coefficient": self.text(t.coefficient), "method": t.method}
                     for t in self.zdot],
            "outputs": {name: [{"index": list(k), "value": self.text(e)} for k, e in items]
                        for name, items in self.outputs.items()},
        }

    def to_json(self):
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)
