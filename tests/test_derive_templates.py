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


_CHILD = r"""
import hashlib, json, sys
import tensorprog.numeric.cache      # an evaluation's process: the template store is active
import tensorprog
from tensorprog.limit import templates
limit = tensorprog.derive(sys.argv[1])
print(json.dumps({"text": hashlib.sha256(str(limit).encode()).hexdigest(), "read": templates._STORE["read"]}))
"""


def _run(path, cache, templates_on=True):
    import json
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TENSORPROG_CACHE_DIR=str(cache), PYTHONWARNINGS="always",
               TENSORPROG_DERIVE_TEMPLATES="1" if templates_on else "0", TENSORPROG_DERIVE_TEMPLATE_STORE="1")
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", _CHILD, os.path.join(root, path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_template_store_is_read_by_the_next_run_and_changes_nothing(tmp_path):
    """A second process finds the first one's templates on disk; the derivation is the direct one."""
    path = "examples/mlp_gelu.tp"
    direct, _ = _run(path, tmp_path / "direct", templates_on=False)
    first, _ = _run(path, tmp_path / "cache")
    second, _ = _run(path, tmp_path / "cache")
    assert first["read"] == 0 and second["read"] > 0
    assert first["text"] == second["text"] == direct["text"]


def test_corrupt_template_store_and_entries_are_bypassed(tmp_path):
    """A store that is not a pickle is ignored with a warning; a corrupt entry is skipped alone."""
    import pickle
    path = "examples/mlp_erf.tp"
    cache = tmp_path / "cache"
    reference, _ = _run(path, cache)
    (store,) = cache.glob("derive-templates-*.pickle")
    blobs = pickle.loads(store.read_bytes())
    total = sum(len(b) for b in blobs.values())
    name = next(n for n, b in blobs.items() if b)
    blobs[name][0] = b"\x80\x05not a pickle"
    store.write_bytes(pickle.dumps(blobs))
    one_bad, _ = _run(path, cache)
    assert one_bad["read"] == total - 1 and one_bad["text"] == reference["text"]
    store.write_bytes(b"garbage")
    garbage, stderr = _run(path, cache)
    assert garbage["read"] == 0 and garbage["text"] == reference["text"]
    assert "ignoring the derive template store" in stderr
    assert pickle.loads(store.read_bytes())      # rewritten by that run
