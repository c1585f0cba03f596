"""Derivation templates (tensorprog/limit/templates.py) change the cost of a derivation, never its result.

Truth: the same derivation with templates turned off (TENSORPROG_DERIVE_TEMPLATES=0, the engine's
direct path): the printed limit program (every quantity's definition, in creation order, which fixes the
order of floating-point sums) and the evaluated outputs must be identical, bit for bit.
"""
import numpy as np
import pytest
import sympy

import tensorprog
from mlp_truths import inline_data, mlp_program, ntk_mlp_program
from tensorprog.limit import templates
from tensorprog.limit.symbols import new_atom, undefined_function

X = np.array([[1.0, 0, 0], [0.6, 0.8, 0], [2, 0, 0], [-1, 0, 0]])

PROGRAMS = {
    "relu mlp, depth 12": mlp_program("relu", 12, 2.0, 0.0, inline_data(X)),
    "erf mlp with biases, depth 6": mlp_program("erf", 6, 1.5, 0.1, inline_data(X)),
    "erf ntk(...), depth 4": ntk_mlp_program("erf", 4, 1.0, 0.05, inline_data(X)),
    "gelu mlp, depth 5": mlp_program("gelu", 5, 2.0, 0.05, inline_data(X)),
}
EXAMPLES = ["examples/mlp_ntk.tp", "examples/rnn.tp", "examples/layernorm.tp", "examples/mup_one_step.tp"]


def _derive(program, flag, monkeypatch):
    """derive(program text or path) with templates on ("1") or off ("0")."""
    monkeypatch.setenv("TENSORPROG_DERIVE_TEMPLATES", flag)
    return tensorprog.derive(program)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_templates_give_the_direct_derivation(name, monkeypatch):
    direct = _derive(PROGRAMS[name], "0", monkeypatch)
    templated = _derive(PROGRAMS[name], "1", monkeypatch)
    again = _derive(PROGRAMS[name], "1", monkeypatch)        # every template warm
    assert str(templated) == str(direct)
    assert str(again) == str(direct)
    a, b = tensorprog.evaluate(direct), tensorprog.evaluate(again)
    for out in ("NNGP", "NTK"):
        np.testing.assert_array_equal(b[out].value, a[out].value)


@pytest.mark.parametrize("path", EXAMPLES)
def test_templates_give_the_direct_derivation_of_examples(path, monkeypatch):
    from pathlib import Path
    path = str(Path(__file__).resolve().parents[1] / path)
    direct = _derive(path, "0", monkeypatch)
    templated = _derive(path, "1", monkeypatch)
    assert str(templated) == str(direct)
    assert templated.to_json() == direct.to_json()


def test_stand_ins_keep_groups_and_the_order_of_names():
    """Two layers' integrands share one template key; atoms of one group share a stand-in group."""
    i, j = sympy.symbols("i j", integer=True, nonnegative=True)
    keys = []
    for layer in range(2):
        w = new_atom(None, ("W", layer, False), f"W{layer}")
        b = new_atom(None, ("init", layer), f"b{layer}")
        f = sympy.Max(b.fn() + w.fn(i), 0) * sympy.Max(b.fn() + w.fn(j), 0)
        stand_in, renaming = templates.placeholders(f)
        assert renaming.back(stand_in) == f
        keys.append(stand_in)
    assert keys[0] == keys[1]
    groups = {templates.atom_of(a).group for a in templates.atoms_in(keys[0])}
    assert len(groups) == 2


def test_fast_function_classes_equal_sympys():
    f, g = undefined_function("Qtest"), sympy.Function("Qtest", real=True)
    x = sympy.Symbol("x")
    assert f == g and g == f and hash(f) == hash(g) and f(x) == g(x) and hash(f(x)) == hash(g(x))
    import pickle
    assert pickle.loads(pickle.dumps(f(x))) == f(x)
