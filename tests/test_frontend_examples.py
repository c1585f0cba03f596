"""The programs in examples/: each parses, checks, is documented, and lowers to the network it describes.

The structural checks recompute, from each example's data, what its header
comment says (input covariances, output shapes, the muP step of docs/theory.md).
"""
import json

import numpy as np
import pytest
import sympy

import tensorprog
from tensorprog import cli
from tensorprog import functions as F
from tensorprog.ir.core import PARAMS, VEC_ARGS

REQUIRED = ["attention", "layernorm", "mlp_nngp", "mlp_ntk", "mup_one_step", "rnn"]


def named(ins):
    """The instruction's function with formals renamed after the values they stand for."""
    sub = {VEC_ARGS[k]: sympy.Symbol(str(a), real=True) for k, a in enumerate(ins.vec_args)}
    sub.update({PARAMS[k]: sympy.Symbol(str(a), real=True) for k, a in enumerate(ins.params)})
    return ins.fn.xreplace(sub)


def instr(prog, name):
    (found,) = [i for i in prog.instructions if i.out.name == name]
    return found


def S(name):
    return sympy.Symbol(name, real=True)


@pytest.fixture(scope="module")
def programs(example_paths):
    return {p.stem: tensorprog.parse(p) for p in example_paths}


def test_required_examples_exist(example_paths):
    assert set(REQUIRED) <= {p.stem for p in example_paths}


def test_every_example_checks_and_is_documented(example_paths, capsys):
    for path in example_paths:
        lines = path.read_text().splitlines()
        header = []
        for line in lines:
            if not line.startswith("#"):
                break
            header.append(line)
        assert len(header) >= 2, f"{path.name}: no header comment"
        assert "Output" in " ".join(header), f"{path.name}: the header does not say what is output"
        assert len(lines) <= 30, f"{path.name} has {len(lines)} lines"
        assert cli.main(["check", str(path)]) == 0
        out = capsys.readouterr().out
        prog = tensorprog.parse(path)
        assert out == f"ok: {path}: {prog.summary()}\n"
        assert prog.outputs and len(prog.instructions) > 0


def test_mlp_nngp(programs):
    prog = programs["mlp_nngp"]
    X = np.array([[1, 0, 0], [0.6, 0.8, 0], [2, 0, 0], [-1, 0, 0]])
    np.testing.assert_allclose(instr(prog, "g[1]").block.cov(0, 0), 2.0 * X @ X.T / 3 + 0.1, rtol=1e-15)
    assert [float(instr(prog, f"b[{l}]").block.cov(0, 0)) for l in (2, 3)] == [0.1, 0.1]
    assert instr(prog, "b[2]").block is not instr(prog, "b[3]").block
    assert [i.variance for i in prog.instructions if i.op == "init_matrix"] == [2 / tensorprog.ir.core.WIDTH] * 2
    (K,) = prog.outputs
    assert K.array_shape == (4, 4)
    k = instr(prog, "K")
    (m,) = k.params
    assert named(k) == 2 * S(str(m)) + sympy.Rational(1, 10)
    assert named(instr(prog, m.value.name)) == F.relu(S("g[3][a0]")) * F.relu(S("g[3][a1]"))


def test_mlp_nngp_depth_override(repo_root):
    prog = tensorprog.parse(repo_root / "examples" / "mlp_nngp.tp", defines={"L": 6})
    assert sum(i.op == "init_matrix" for i in prog.instructions) == 5
    assert sum(i.op == "matmul" for i in prog.instructions) == 5


def test_mlp_ntk_backward_pass_uses_transposes(programs):
    prog = programs["mlp_ntk"]
    back = [(i.matrix.name, i.transposed) for i in prog.instructions if i.op == "matmul" and i.transposed]
    assert back == [("W[3]", True), ("W[2]", True)]
    assert named(instr(prog, "dg[3]")) == S("v") * F.step(S("g[3][a0]"))
    assert {o.name: o.array_shape for o in prog.outputs} == {"NNGP": (4, 4), "NTK": (4, 4)}
    # NTK = NNGP + sum over layers of E[dg dg'] * (layer-below kernel): 1 + 2 + 1 products of moments
    ntk = instr(prog, "NTK")
    assert len(ntk.params) == 7 and ntk.out.axes == (prog.axes["X"],) * 2


def test_rnn_shares_one_matrix(programs):
    prog = programs["rnn"]
    mm = [i for i in prog.instructions if i.op == "matmul"]
    assert {i.matrix.name for i in mm} == {"W"} and len(mm) == 4
    S_ = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]],
                   [[0, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 1], [1, 0, 1]]], dtype=float)
    block = instr(prog, "u[1]").block
    for t in range(5):
        for t2 in range(5):
            np.testing.assert_allclose(block.cov(t, t2), S_[:, t] @ S_[:, t2].T / 3, rtol=1e-15)
    assert prog.outputs[0].array_shape == (5, 2, 5, 2)


def test_layernorm_moments_feed_the_nonlinearity(programs):
    prog = programs["layernorm"]
    x = instr(prog, "x[1]")
    assert named(x) == F.relu((S("g[1][a0]") - S("mu[1][a0]")) / sympy.sqrt(S("s2[1][a0]") + sympy.Rational(1, 100000)))
    assert named(instr(prog, "s2[1]")) == (S("g[1][a0]") - S("mu[1][a0]")) ** 2
    assert instr(prog, "mu[1]").op == "moment"


def test_attention_softmax_over_moment_logits(programs):
    prog = programs["attention"]
    y = instr(prog, "y[0]")
    logits = [S(str(p)) for p in y.params]
    vs = [S(str(a)) for a in y.vec_args]
    total = sum(sympy.exp(s) for s in logits)
    assert named(y) == sum(sympy.exp(s) / total * v for s, v in zip(logits, vs))
    assert all(instr(prog, p.value.name).op == "moment" for p in y.params)
    assert prog.outputs[0].array_shape == (4, 2, 4, 2)


def test_mup_one_step_matches_theory(programs):
    """docs/theory.md (one step of muP training): h2' = W x1' - eta chi theta dh2, theta = mean(x1 x1'), f1 = mean(v x2') - eta chi mean(x2 x2')."""
    prog = programs["mup_one_step"]
    h2p = instr(prog, "h2'")
    (g,) = [a for a in h2p.vec_args if a.value.name != "dh2"]
    assert instr(prog, g.value.name).op == "matmul" and instr(prog, g.value.name).matrix.name == "W"
    (theta,) = [p for p in h2p.params if p.value.name != "chi"]
    assert named(instr(prog, theta.value.name)) == S("x1") * S("x1'")
    assert named(h2p) == S(str(g)) - S("chi") * S(str(theta)) * S("dh2")  # eta = 1
    c = instr(prog, "c")
    assert float(c.value) == pytest.approx((1 * 0.2 + 0.5 * 1 - 0.5 * 0.4) / 3, rel=1e-15)
    assert [o.name for o in prog.outputs] == ["f0", "f1"]


def test_graph_command_formats(repo_root, capsys):
    path = str(repo_root / "examples" / "mlp_nngp.tp")
    prog = tensorprog.parse(path)
    assert cli.main(["graph", path, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["nodes"]) == len(prog.instructions) == prog.graph.number_of_nodes()
    assert len(data["edges"]) == prog.graph.number_of_edges()
    assert cli.main(["graph", path, "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph tensorprog {") and dot.count("->") == len(data["edges"]) + 1  # + out K
    assert cli.main(["graph", path]) == 0
    assert capsys.readouterr().out.strip() == str(prog)
