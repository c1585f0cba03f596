"""A checked program: its instructions, values, outputs, and the dataflow graph."""
from __future__ import annotations

import json
from collections import Counter
from functools import cached_property

import sympy

from ..ops.registry import EDGES, LISTING
from .core import Kind


class Program:
    """A Tensor Program after elaboration, dead-code elimination and checking.

    Attributes: ``instructions`` (execution order, only what some output needs),
    ``outputs``, ``axes`` (data set name -> Axis), ``data`` (name -> array),
    ``consts``, ``widths`` (name -> multiple of n), ``source``, ``training_steps`` (the most steps a
    ``gd(...)`` in it unrolls; 0 without training), ``trainings`` (a
    :class:`~tensorprog.frontend.train.TrainingSpec` per training: what ``tpc scaling`` reads) and
    ``width_dependent`` (parsed for finite widths: its scalars may grow with n, it has no limit).

    A Program pickles (its data and Gaussian blocks are plain arrays), so it can be sent to another
    process; deriving and evaluating it there gives bit-identical results (the derivation does not
    depend on the process's hash seed); so does a derived limit.
    """

    def __init__(self, source, instructions, outputs, *, consts, data, axes, widths, training_steps=0,
                 trainings=(), width_dependent=False):
        self.source = source
        self.training_steps = training_steps
        self.trainings = tuple(trainings)
        self.width_dependent = width_dependent
        self.outputs = tuple(outputs)
        self.consts = dict(consts)
        self.data = dict(data)
        self.axes = dict(axes)
        self.widths = dict(widths)
        self.all_instructions = tuple(instructions)
        live = self._live_values()
        self.instructions = tuple(i for i in self.all_instructions if i.out.id in live)
        self.defining = {i.out.id: i for i in self.instructions}

    def _live_values(self):
        """Ids of the values some output depends on: one backward traversal from all outputs."""
        inputs = {i.out.id: [v.id for v in i.inputs()] for i in self.all_instructions}
        stack = [v.id for o in self.outputs for v in o.values if v.id in inputs]
        live = set(stack)
        while stack:
            for u in inputs.get(stack.pop(), ()):
                if u not in live:
                    live.add(u)
                    stack.append(u)
        return live

    @cached_property
    def graph(self):
        """Dataflow graph: one node per value (id), an edge from each input to its user."""
        return _graph(self.instructions)

    @property
    def values(self):
        return tuple(i.out for i in self.instructions)

    def summary(self) -> str:
        """One line: instruction counts per op, families and outputs."""
        c = Counter(i.op for i in self.instructions)
        order = ["init_matrix", "init_vector", "init_scalar", "matmul", "nonlin", "moment", "scalar_fn"]
        order += sorted(set(c) - set(order))  # ops registered outside the package
        parts = [f"{c[k]} {k}" for k in order if c[k]]
        fam = sum(1 for i in self.instructions if i.out.axes)
        axes = ", ".join(str(a) for a in self.axes.values())
        return (f"{len(self.instructions)} instructions ({', '.join(parts)}); {fam} over families"
                + (f" of {axes}" if axes else "") + f"; {len(self.outputs)} output{'s' if len(self.outputs) != 1 else ''}")

    def __str__(self):
        lines = [f"program {self.source.name}: {self.summary()}"]
        for ins in self.instructions:
            lines.append("  " + format_instruction(ins))
        for o in self.outputs:
            shape = "x".join(str(s) for s in o.array_shape) or "scalar"
            lines.append(f"  out {o.name} ({shape}) <- " + ", ".join(v.name for v in o.values[:8])
                         + (" ..." if len(o.values) > 8 else ""))
        return "\n".join(lines)

    def __repr__(self):
        return f"<Program {self.source.name}: {len(self.instructions)} instructions>"

    def to_dot(self) -> str:
        shapes = {"matrix": "box", "vector": "ellipse", "scalar": "diamond"}
        out = ["digraph tensorprog {", "  rankdir=TB;"]
        g = self.graph
        for n, d in g.nodes(data=True):
            label = f"{d['name']}\\n{d['op']}" + (f" [{','.join(d['axes'])}]" if d["axes"] else "")
            out.append(f'  v{n} [label="{_esc(label)}", shape={shapes[d["kind"]]}];')
        for a, b, d in g.edges(data=True):
            style = ", style=dashed" if d.get("role") == "param" else ""
            label = ', label="T"' if d.get("role") == "matrix^T" else ""
            out.append(f"  v{a} -> v{b}[{style.lstrip(', ')}{label}];".replace("[]", "").replace("[, ", "["))
        for o in self.outputs:
            out.append(f'  out_{o.name} [label="out {_esc(o.name)}", shape=note];')
            for v in o.values:
                out.append(f"  v{v.id} -> out_{o.name};")
        out.append("}")
        return "\n".join(out)

    def to_json(self) -> str:
        g = self.graph
        nodes = [{"id": n, **d} for n, d in g.nodes(data=True)]
        edges = [{"source": a, "target": b, **d} for a, b, d in g.edges(data=True)]
        outs = [{"name": o.name, "shape": list(o.array_shape), "values": [v.id for v in o.values]}
                for o in self.outputs]
        return json.dumps({"source": self.source.name, "nodes": nodes, "edges": edges, "outputs": outs}, indent=1)

    def to_text(self) -> str:
        return str(self)


def _esc(s):
    return s.replace('"', '\\"')


def _graph(instructions):
    """A networkx DiGraph (imported here: building it is only needed for ``tpc graph`` and the API)."""
    import networkx as nx

    g = nx.DiGraph()
    for ins in instructions:
        v = ins.out
        g.add_node(v.id, name=v.name, kind=v.kind.value, op=ins.op, axes=[a.name for a in v.axes],
                   line=ins.pos.line if ins.pos else None)
        for u, role in EDGES.rule(ins)(ins):
            g.add_edge(u.id, v.id, role=role)
    return g


def _kind_text(v, widths):
    if v.kind == Kind.SCALAR:
        t = "scalar"
    elif v.kind == Kind.VECTOR:
        t = f"vector({_w(v.dim, widths)})"
    else:
        t = f"matrix({_w(v.dim[0], widths)}, {_w(v.dim[1], widths)})"
    if v.axes:
        t += " over " + " x ".join(a.name for a in v.axes)
    return t


def _w(r, widths=None):
    return "n" if r == 1 else f"{r}n"


def _fn_text(fn):
    return sympy.sstr(fn)


def _lhs(v):
    if not v.axes:
        return v.name
    return f"{v.name}[{', '.join(f'a{p}' for p in range(len(v.axes)))}]"


def format_instruction(ins) -> str:
    """One line of the program listing, e.g. ``g[2][a0] : vector(n) over X = matmul W[2] @ %4[a0]``."""
    v = ins.out
    head = f"{_lhs(v)} : {_kind_text(v, None)} = "
    body = LISTING.rule(ins)(ins)
    line = f"  @{ins.pos.line}" if ins.pos else ""
    return head + body + line
