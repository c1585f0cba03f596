"""The scaling report: rows of exponents, the verdict, and its text / JSON / LaTeX forms."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import sympy

from ..ir.core import VEC_ARGS, Kind
from ..ops.init import InitScalar, InitVector
from .analysis import Analysis
from .orders import INF, ZERO, show

@dataclass
class Row:
    """One value: its exponent at initialisation and of its change after steps 1..T."""

    name: str
    kind: str            # "vector" or "scalar"
    role: str            # "parameter", "input", "hidden", "scalar", "output"
    line: int
    init: object
    changes: list = field(default_factory=list)
    note: str = ""

    def as_dict(self):
        return {"name": self.name, "kind": self.kind, "role": self.role, "line": self.line,
                "init": _json_order(self.init), "changes": [_json_order(c) for c in self.changes],
                "undecided": self.note or None}


@dataclass
class TrainingReport:
    """The analysis of one training (or of the program at initialisation, without one)."""

    title: str
    scale: object
    rates: dict            # parameter name -> exponent of its rate
    steps: int
    rows: list
    verdict: str           # unstable | trivial | kernel regime | feature learning | initialisation | undecided
    summary: str
    culprit: dict = None   # {"name", "line", "step", "exponent"} when unstable
    learning: list = field(default_factory=list)   # hidden vectors that move by Theta(1)

    def as_dict(self):
        return {"training": self.title, "output_scale": _json_order(self.scale),
                "rates": {k: _json_order(v) for k, v in self.rates.items()}, "steps": self.steps,
                "verdict": self.verdict, "summary": self.summary, "culprit": self.culprit,
                "feature_learning": self.learning, "values": [r.as_dict() for r in self.rows]}


@dataclass
class ScalingReport:
    """``tensorprog.scaling(...)``'s result: one :class:`TrainingReport` per training."""

    source: str
    trainings: list

    @property
    def verdict(self):
        """The first training's verdict (most programs have one training)."""
        return self.trainings[0].verdict

    def row(self, name, training=0):
        return next(r for r in self.trainings[training].rows if r.name == name)

    def to_json(self):
        return json.dumps({"program": self.source, "trainings": [t.as_dict() for t in self.trainings]}, indent=2)

    def to_text(self):
        out = []
        for t in self.trainings:
            out.append(f"# {t.title}")
            if t.rates:
                rates = ", ".join(f"{k}: n^{show(v)}" for k, v in t.rates.items())
                out.append(f"# output scale n^{show(t.scale)}; rates {rates}")
            head = ["value", "line", "role", "init"] + [f"step {s}" for s in range(1, t.steps + 1)]
            body = [[r.name, str(r.line), r.role, show(r.init)] + [show(c) for c in r.changes] for r in t.rows]
            widths = [max(len(x) for x in col) for col in zip(head, *body)]
            out.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
            for r, cells in zip(t.rows, body):
                line = "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
                out.append(line + (f"   (undecided: {r.note})" if r.note else ""))
            out.append(f"verdict: {t.verdict}: {t.summary}")
            out.append("")
        out.append("(exponent k: Theta(n^k); init: the value at initialisation; step t: its change after t steps, "
                   "x_t - x_0; 'zero': does not move)")
        return "\n".join(out)

    def to_latex(self):
        out = []
        for t in self.trainings:
            cols = "llr" + "r" * (1 + t.steps)
            out.append(f"% {t.title}: {t.verdict}")
            out.append(f"\\begin{{tabular}}{{{cols}}}")
            out.append(" & ".join(["value", "role", "init"] + [f"$\\Delta_{s}$" for s in range(1, t.steps + 1)])
                       + r" \\ \hline")
            for r in t.rows:
                cells = [f"\\texttt{{{_tex_escape(r.name)}}}", r.role, _tex_order(r.init)] + \
                        [_tex_order(c) for c in r.changes]
                out.append(" & ".join(cells) + r" \\")
            out.append(r"\end{tabular}")
        return "\n".join(out)

    def __str__(self):
        return self.to_text()


def _json_order(o):
    if o == ZERO:
        return "zero"
    if o == INF:
        return "inf"
    return str(sympy.nsimplify(o))


def _tex_order(o):
    if o == ZERO:
        return "$-\\infty$"
    if o == INF:
        return "$\\infty$"
    return f"${sympy.latex(o)}$"


def _tex_escape(s):
    return s.replace("_", r"\_").replace("%", r"\%")


# ---------------------------------------------------------------------- building the report

@dataclass(frozen=True)
class _Initial:
    """A stand-in TrainingSpec for a program without training: its outputs at initialisation."""

    outputs: tuple
    template: tuple
    scale: object = sympy.S.One
    steps: int = 0
    loss: object = None
    pos: object = None
    rates: tuple = ()


def analyse_program(program):
    specs = list(program.trainings)
    if not specs:
        outs = tuple(v for o in program.outputs for v in o.values)
        specs = [_Initial(outs, tuple(program.instructions))]
    reports = [_analyse(program, spec) for spec in specs]
    return ScalingReport(program.source.name, reports)


def _role(an, ins):
    if ins.out.id in {f.id for f in an.spec.outputs}:
        return "output"
    if ins.out.kind == Kind.SCALAR:
        return "scalar"
    if isinstance(ins, InitVector):
        return ("readout" if _is_readout(an, ins.out) else "parameter") if an.is_trained(ins.out) else "input"
    return "hidden"


def _analyse(program, spec):
    an = Analysis(program, spec)
    steps = max(spec.steps, 1) if spec.rates else 0
    an.spec = dataclasses.replace(spec, steps=steps)
    history = an.run()
    rows = []
    for ins in an.template:
        if ins.out.kind == Kind.MATRIX or (ins.out.name.startswith("%") and ins.out.id not in
                                           {f.id for f in spec.outputs}):
            continue
        rows.append(Row(an.name(ins.out), ins.out.kind.value, _role(an, ins), ins.pos.line if ins.pos else 0,
                        an.init.get(ins.out.id, ZERO), [h.get(ins.out.id, ZERO) for h in history],
                        an.undecided.get(ins.out.id, "")))
    F_init = an.output_order(an.init)
    F_changes = [an.output_order(h) for h in history]
    if spec.rates:
        outputs = ", ".join(an.name(f) for f in spec.outputs)
        rows.append(Row(f"F = n^{show(an.scale)} {outputs}" if an.scale != 0 else f"F = {outputs}", "scalar",
                        "output", spec.pos.line if spec.pos else 0, F_init, F_changes,
                        next((an.undecided[f.id] for f in spec.outputs if f.id in an.undecided), "")))
    title = (f"gd({', '.join(an.name(f) for f in spec.outputs)}, ...) at line {spec.pos.line}, {steps} step(s)"
             if spec.rates else "the program at initialisation (no training)")
    rates = {an.name(an.defining[vid].out): o for vid, o in an.rates.items()}
    verdict, summary, culprit, learning = _verdict(an, history, F_init, F_changes, bool(spec.rates))
    return TrainingReport(title, an.scale, rates, steps, rows, verdict, summary, culprit, learning)


def _verdict(an, history, F_init, F_changes, trained):
    """(verdict, summary, culprit, feature-learning vectors) by the Dichotomy of Tensor Programs IV."""
    def where(ins, step, k):
        return {"name": an.name(ins.out), "line": ins.pos.line if ins.pos else 0, "step": step,
                "exponent": _json_order(k)}

    for ins in an.template:                       # blow-ups at initialisation, in program order
        k = an.init.get(ins.out.id, ZERO)         # (a constant c n^a is a multiplier, not a value that blows up)
        if ins.out.id not in an.undecided and k != ZERO and k > 0 and not isinstance(ins, InitScalar):
            c = where(ins, 0, k)
            return "unstable", (f"{c['name']} (line {c['line']}) grows like n^{show(k)} at initialisation"), c, []
    if F_init != ZERO and F_init > 0:
        return "unstable", f"the output grows like n^{show(F_init)} at initialisation", \
            {"name": "F", "line": an.spec.pos.line if an.spec.pos else 0, "step": 0,
             "exponent": _json_order(F_init)}, []
    for t, h in enumerate(history, start=1):      # then blow-ups of the changes, step by step
        for ins in an.template:
            k = h.get(ins.out.id, ZERO)
            if k != ZERO and k > 0 and ins.out.id not in an.undecided:
                c = where(ins, t, k)
                return "unstable", (f"{c['name']} (line {c['line']}) moves by n^{show(k)} after step {t}: its "
                                    "update blows up"), c, []
    undecided = [an.name(an.defining[v].out) for v in an.undecided if v in an.defining]
    if not trained:
        if undecided:
            return "undecided", f"the orders of {', '.join(undecided)} are undecided", None, []
        return "initialisation", "stable at initialisation: no value grows with n", None, []
    moved = max(F_changes)
    features = [ins for ins in an.template if _is_feature(an, ins)]
    learning = [an.name(ins.out) for ins in features
                if not ins.out.name.startswith("%") and any(h.get(ins.out.id, ZERO) == 0 for h in history)]
    if undecided:
        return "undecided", f"the orders of {', '.join(undecided)} are undecided", None, learning
    if moved == ZERO or moved < 0:
        return "trivial", f"the output does not move in the limit (its change is {_big_o(moved)})", None, []
    if learning:
        return "feature learning", f"the output moves by Theta(1); hidden features move by Theta(1) in " \
                                   f"{', '.join(learning)}", None, learning
    hidden = [h.get(ins.out.id, ZERO) for h in history for ins in features]
    return "kernel regime", f"the output moves by Theta(1); hidden features move by " \
                            f"{_big_o(max(hidden, default=ZERO))} (frozen in the limit)", None, []


def _is_feature(an, ins):
    """A hidden feature: a vector of the cone other than an untrained input and a readout (a trained vector
    the outputs only average against: f = mean(v x))."""
    if ins.out.kind != Kind.VECTOR:
        return False
    if isinstance(ins, InitVector):
        return an.is_trained(ins.out) and not _is_readout(an, ins.out)
    return True


def _is_readout(an, value):
    """Every use of the vector is an output that is linear in it (f = mean(v x))."""
    outs = {f.id for f in an.spec.outputs}
    users = [i for i in an.template if any(a.value.id == value.id for a in i.args())]
    return bool(users) and all(u.out.id in outs and all(
        sympy.diff(u.fn, VEC_ARGS[k], 2) == 0 for k, a in enumerate(u.vec_args) if a.value.id == value.id)
        for u in users)


def _big_o(k):
    return "0" if k == ZERO else f"O(n^{show(k)})"
