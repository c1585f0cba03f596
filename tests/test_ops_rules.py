"""The per-interpretation rule tables of tensorprog/ops/ and the checks of unused statements.

* every builtin instruction class has a rule in every interpretation table;
* a toy instruction registered from this test (out = c * x, test-local, removed afterwards) is
  checked, listed, named, derived, evaluated and simulated through the tables alone, and its
  limit E[(c x)^2] = c^2 Var(x) (hand derivation) comes out of both the limit and a simulation;
* an unused, ill-typed statement is an error (file:line:col, exit 2), not "ok".
"""
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pytest
import sympy

import tensorprog
from tensorprog.cli import main as tpc_main
from tensorprog.errors import TPError
from tensorprog.ir.checker import check_program
from tensorprog.ir.core import Arg, Instr, Kind, Value
from tensorprog.ir.program import Program, format_instruction
from tensorprog.ops import BUILTIN_OPS, registry
from tensorprog.simulate.simulator import simulate


@pytest.mark.parametrize("table", registry.INTERPRETATIONS, ids=lambda t: t.name)
def test_every_builtin_op_has_a_rule_in_every_interpretation(table):
    assert [cls.__name__ for cls in BUILTIN_OPS if cls not in table] == []


def test_ir_core_reexports_the_op_classes():
    import tensorprog.ir.core as core
    import tensorprog.ops as ops
    for cls in BUILTIN_OPS:
        assert getattr(core, cls.__name__) is getattr(ops, cls.__name__)


# ---------------------------------------------------------------------- a toy op, registered locally

@dataclass(frozen=True, eq=False)
class Scale(Instr):
    """out = c * x (a toy instruction of this test)."""

    arg: Arg = None
    c: float = 1.0
    op: ClassVar[str] = "scale"

    def args(self):
        return (self.arg,)


def _check(ins):
    if ins.arg.value.kind != Kind.VECTOR:
        yield f"'{ins.arg.value.name}' is not a vector"


def _derive(d, ins):
    d.Z[ins.out.id] = sympy.Float(ins.c) * d.z_of(ins.arg)


def _simulate(sim, ins, env, sizes, width, rng, pool):
    env[ins.out.id] = ins.c * env[ins.arg.value.id]


def _memory(sim, ins, nbytes, sizes, born):
    return nbytes[ins.out.id], 0


TOY_RULES = {
    registry.CHECK: _check,
    registry.DERIVE: _derive,
    registry.SIMULATE_PREPARE: registry.nothing,
    registry.SIMULATE: _simulate,
    registry.MEMORY: _memory,
    registry.LISTING: lambda ins: f"scale {ins.c} * {ins.arg}",
    registry.DESCRIBE: lambda ins, arg_text, show: f"{ins.c}*{arg_text(ins.arg, show)}",
    registry.EDGES: lambda ins: ((ins.arg.value, "arg"),),
}


@pytest.fixture
def toy_op():
    """Register Scale's rules for the duration of one test."""
    for table, rule in TOY_RULES.items():
        table.register(Scale)(rule)
    yield Scale
    for table in TOY_RULES:
        del table[Scale]


def _toy_program(c, variance):
    """x ~ N(0, variance); %1 = Scale(x, c); s = mean(%1^2): built from a parsed program."""
    base = tensorprog.parse(f"vector x ~ N(0, {variance})\nout s = mean(x^2)\n")
    init, moment = base.instructions
    y = Value(5, "%5", Kind.VECTOR, (), init.out.dim)
    toy = Scale(y, moment.pos, arg=Arg(init.out), c=c)
    new_moment = replace(moment, vec_args=(Arg(y),))
    return Program(base.source, [init, toy, new_moment], base.outputs, consts={}, data={}, axes={}, widths={})


def test_a_toy_op_runs_through_every_interpretation(toy_op):
    c, variance = 1.5, 2
    prog = _toy_program(c, variance)
    check_program(prog)
    assert "scale 1.5 * x" in format_instruction(prog.instructions[1])
    assert set(prog.graph.predecessors(5)) == {0}
    # limit: E[(c x)^2] = c^2 Var(x) = 4.5
    res = tensorprog.evaluate(prog)
    assert abs(float(res.outputs["s"].value) - c ** 2 * variance) < 1e-12
    # finite width: the mean of n squares of N(0, c^2 variance) has standard error c^2 var sqrt(2/n)/sqrt(seeds)
    sim = simulate(prog, width=4096, seeds=20)
    mean = float(np.mean(sim["s"]))
    assert abs(mean - c ** 2 * variance) < 5 * c ** 2 * variance * np.sqrt(2 / 4096) / np.sqrt(20)


def test_an_op_without_rules_is_an_internal_error_at_its_position():
    base = tensorprog.parse("vector x ~ N(0, 1)\nout s = mean(x^2)\n")
    init, moment = base.instructions
    y = Value(5, "%5", Kind.VECTOR, (), init.out.dim)
    prog = Program(base.source, [init, Scale(y, moment.pos, arg=Arg(init.out), c=2.0),
                                 replace(moment, vec_args=(Arg(y),))], base.outputs,
                   consts={}, data={}, axes={}, widths={})
    with pytest.raises(TPError, match="internal: no 'check' rule for instruction Scale") as e:
        check_program(prog)
    assert e.value.diagnostics[0].pos.line == 2


# ---------------------------------------------------------------------- unused statements are checked

UNUSED_NOT_PSD = "vector z ~ N(0, 1)\nvector x, y ~ N(0, [[1, 2], [2, 1]])\nout s = mean(z^2)\n"
UNUSED_NEGATIVE = "vector z ~ N(0, 1)\nvector u ~ N(0, -1)\nout s = mean(z^2)\n"


@pytest.mark.parametrize("text, line, col, message", [
    # the joint covariance [[1, 2], [2, 1]] has eigenvalues 3 and -1
    (UNUSED_NOT_PSD, 2, 1, "the covariance is not positive semi-definite (smallest eigenvalue -1)"),
    (UNUSED_NEGATIVE, 2, 1, "the covariance has a negative variance: Var(u) = -1"),
])
def test_an_unused_ill_typed_statement_is_an_error(text, line, col, message):
    with pytest.raises(TPError) as e:
        tensorprog.parse(text)
    d = e.value.diagnostics[0]
    assert (d.pos.line, d.pos.col, d.message) == (line, col, message)


def test_unused_non_psd_block_fails_tpc_check_with_exit_2(tmp_path, monkeypatch, capsys):
    # `tpc check` in this process (`python -m tensorprog` exits with main's status)
    (tmp_path / "prog.tp").write_text(UNUSED_NOT_PSD)
    monkeypatch.chdir(tmp_path)
    returncode = tpc_main(["check", "prog.tp"])
    stderr = capsys.readouterr().err
    assert returncode == 2, stderr
    assert "prog.tp:2:1" in stderr and "not positive semi-definite" in stderr
    assert "Traceback" not in stderr


def test_unused_statements_are_still_not_evaluated():
    # the used part of a program with an unused (well-typed) statement keeps its value: E z^2 = 1
    res = tensorprog.evaluate("vector z ~ N(0, 1)\nvector u ~ N(0, 2)\nw = mean(u^4)\nout s = mean(z^2)\n")
    assert float(res.outputs["s"].value) == 1.0
    assert set(res.outputs) == {"s"}
