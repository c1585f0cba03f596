"""One test per language construct: program text -> the exact IR instructions.

Every expectation is written out by hand here: functions are sympy expressions
built in the test (formal arguments renamed after the values they stand for,
see ``named``), covariances are numpy arrays computed directly from the data.
"""
import json

import numpy as np
import pytest
import sympy

import tensorprog
from tensorprog import functions as F
from tensorprog.nonlinearities.mish import mish
from tensorprog.nonlinearities.rbf import rbf
from tensorprog.ir.core import PARAMS, VEC_ARGS, WIDTH, AxisRef, Kind

n = WIDTH
a0, a1 = AxisRef(0), AxisRef(1)


def S(name):
    """The real symbol ``named`` uses for an argument printed as ``name``."""
    return sympy.Symbol(name, real=True)


def named(ins):
    """The instruction's function with formals x_k / p_k replaced by symbols named after their args."""
    sub = {VEC_ARGS[k]: S(str(a)) for k, a in enumerate(ins.vec_args)}
    sub.update({PARAMS[k]: S(str(a)) for k, a in enumerate(ins.params)})
    return ins.fn.xreplace(sub)


def instr(prog, name):
    """The one instruction defining the value called ``name``."""
    found = [i for i in prog.instructions if i.out.name == name]
    assert len(found) == 1, [i.out.name for i in prog.instructions]
    return found[0]


def ops(prog):
    return [(i.op, i.out.name) for i in prog.instructions]


def args(ins):
    """(name, index terms) of each vector argument, then of each parameter."""
    return ([(a.value.name, a.index) for a in ins.vec_args], [(a.value.name, a.index) for a in ins.params])


def const(src_expr, **defines):
    """The exact value of a const expression (via a program that needs no data)."""
    prog = tensorprog.parse(f"const c = {src_expr}\nvector x ~ N(0, 1)\nout o = mean(x)\n", defines=defines)
    return prog.consts["c"]


X3 = "data X = [[1, 0], [0.5, 2], [3, 1]]\n"
XA = np.array([[1, 0], [0.5, 2], [3, 1]])


# ---------------------------------------------------------------- statements

def test_const_values_are_exact_and_chain():
    prog = tensorprog.parse("const a = 2, b = a * 3 / 4\nvector x ~ N(0, b)\nout o = mean(x)\n")
    assert prog.consts == {"a": 2, "b": sympy.Rational(3, 2)}
    assert prog.instructions[0].block.cov(0, 0) == pytest.approx(1.5, abs=0)


def test_const_overridden_by_defines():
    src = "const L = 2, s = 0.5\nvector x[l] ~ N(0, s) for l in 1..L\nout o[l] = mean(x[l]) for l in 1..L\n"
    prog = tensorprog.parse(src, defines={"L": 4, "s": "1/3"})
    assert prog.consts == {"L": 4, "s": sympy.Rational(1, 3)}
    assert prog.outputs[0].shape == (4,)
    assert prog.instructions[0].block.cov(0, 0) == pytest.approx(1 / 3, rel=1e-15)


def test_comments_blank_lines_and_backslash_continuation():
    src = ("# header\n\nvector x ~ N(0, 1)   # trailing comment\n\n"
           "out o = mean(x *\\\n    x)\n# end\n")
    prog = tensorprog.parse(src)
    assert named(instr(prog, "o")) == S("x") ** 2


def test_data_inline_list():
    prog = tensorprog.parse(X3 + "vector x[i] ~ N(0, 1) for i in X\nout o[i] = mean(x[i])\n")
    np.testing.assert_array_equal(prog.data["X"], XA)
    assert prog.data["X"].dtype == np.float64
    assert prog.axes["X"].size == 3


def test_data_load_npy_and_csv_relative_to_program(tmp_path):
    pts = np.array([[1.0, -2.0], [0.25, 4.0]])
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "pts.npy", pts)
    (tmp_path / "pts.csv").write_text("# x, y\n1, -2\n0.25,4\n")
    (tmp_path / "prog.tp").write_text('data A = load("sub/pts.npy")\ndata B = load("pts.csv")\n'
                                      "vector x[i] ~ N(0, dot(A[i], A[i']))\nout o[i, j] = mean(x[i] * x[j])\n")
    prog = tensorprog.parse(tmp_path / "prog.tp")
    np.testing.assert_array_equal(prog.data["A"], pts)
    np.testing.assert_array_equal(prog.data["B"], pts)
    np.testing.assert_allclose(prog.instructions[0].block.cov(0, 0), pts @ pts.T, rtol=0, atol=0)


def test_width_and_non_square_matrix():
    src = ("width m = 3*n/2\nmatrix A : (m, n) ~ N(0, 1/n)\nmatrix B : (n, m) ~ N(0, 1/m)\n"
           "vector x ~ N(0, 1)\ny = A @ x\nz = B @ y\nw = A.T @ y\nout o = mean(z * w)\n")
    prog = tensorprog.parse(src)
    assert prog.widths == {"n": 1, "m": sympy.Rational(3, 2)}
    assert instr(prog, "A").out.dim == (sympy.Rational(3, 2), 1)
    assert instr(prog, "B").out.dim == (1, sympy.Rational(3, 2))
    assert instr(prog, "B").variance == 2 / (3 * n)
    assert instr(prog, "y").out.dim == sympy.Rational(3, 2)
    assert instr(prog, "z").out.dim == 1
    assert instr(prog, "w").out.dim == 1 and instr(prog, "w").transposed


def test_vector_with_width():
    prog = tensorprog.parse("width m = 2*n\nvector y : m ~ N(0, 1)\nout o = mean(y)\n")
    assert instr(prog, "y").out.dim == 2


def test_matrix_variance_and_layer_loop():
    prog = tensorprog.parse("const sw2 = 2\nmatrix W[l] ~ N(0, sw2/n) for l in 2..3\nvector x ~ N(0, 1)\n"
                            "out o = mean((W[3] @ (W[2] @ x)) * x)\n")
    assert [i.out.name for i in prog.instructions if i.op == "init_matrix"] == ["W[2]", "W[3]"]
    assert instr(prog, "W[2]").variance == 2 / n
    mm = [i for i in prog.instructions if i.op == "matmul"]
    assert [(m.matrix.name, m.arg.value.name, m.transposed) for m in mm] == [("W[2]", "x", False),
                                                                              ("W[3]", mm[0].out.name, False)]


def test_fn_user_function_and_its_derivatives():
    src = "fn f(a, c) = a^3 * c + a\nvector x ~ N(0, 1)\nout o = mean(f(x, 2))\nout d = mean(f''(x, 2))\n"
    prog = tensorprog.parse(src)
    x = S("x")
    assert named(instr(prog, "o")) == 2 * x ** 3 + x
    assert named(instr(prog, "d")) == 12 * x


def test_fn_calling_builtins_and_other_functions():
    src = "fn g(a) = relu(a) + 1\nfn h(a, s) = s * g(a)^2\nvector x ~ N(0, 1)\nscalar k = 0.5\nout o = mean(h(x, k))\n"
    prog = tensorprog.parse(src)
    assert named(instr(prog, "o")) == S("k") * (F.relu(S("x")) + 1) ** 2


def test_fn_of_several_vectors():
    prog = tensorprog.parse("fn glu(a, b) = a * sigmoid(b)\nvector x, y ~ N(0, [[1, 0], [0, 1]])\n"
                            "out o = mean(glu(x, y))\n")
    assert named(instr(prog, "o")) == S("x") * F.sigmoid(S("y"))


BUILTINS = {
    "relu": F.relu, "step": F.step, "sign": sympy.sign, "abs": sympy.Abs, "tanh": F.tanh, "erf": sympy.erf,
    "sigmoid": F.sigmoid, "gelu": F.gelu, "silu": F.silu, "softplus": F.softplus, "sin": sympy.sin,
    "cos": sympy.cos, "exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt, "Phi": F.Phi,
    "identity": lambda t: t, "mish": mish, "rbf": rbf,
}


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_function(name):
    prog = tensorprog.parse(f"vector x ~ N(0, 1)\nout o = mean({name}(x))\n")
    assert named(instr(prog, "o")) == BUILTINS[name](S("x"))


def test_builtin_list_is_documented_by_the_table_above():
    assert set(F.BUILTIN_NAMES) == set(BUILTINS) | {"leaky_relu"}


def test_leaky_relu_with_slope_parameter():
    prog = tensorprog.parse("vector x ~ N(0, 1)\nscalar a = 0.1\nout o = mean(leaky_relu(x, a))\n"
                            "out d = mean(leaky_relu'(x, a))\n")
    x, a = S("x"), S("a")
    assert sympy.simplify(named(instr(prog, "o")) - (a * x + (1 - a) * F.relu(x))) == 0
    assert sympy.simplify(named(instr(prog, "d")) - (a + (1 - a) * F.step(x))) == 0


@pytest.mark.parametrize("call, expected", [
    ("relu'(x)", F.step(S("x"))),
    ("tanh'(x)", 1 - F.tanh(S("x")) ** 2),
    ("step'(x)", sympy.DiracDelta(S("x"))),
    ("sin''(x)", -sympy.sin(S("x"))),
    ("exp'(x)", sympy.exp(S("x"))),
])
def test_builtin_derivatives(call, expected):
    prog = tensorprog.parse(f"vector x ~ N(0, 1)\nout o = mean({call})\n")
    assert named(instr(prog, "o")) == expected


def test_single_vector_mean_and_variance():
    prog = tensorprog.parse("vector x ~ N(1.5, 2)\nout o = mean(x)\n")
    b = instr(prog, "x").block
    assert b.mean(0) == 1.5 and b.cov(0, 0) == 2.0


def test_correlated_vectors_table():
    prog = tensorprog.parse("vector x, y, z ~ N([0, 1, -1], [[2, 1, 0], [1, 3, 0.5], [0, 0.5, 1]])\n"
                            "out o = mean(x * y * z)\n")
    ins = [instr(prog, v) for v in "xyz"]
    assert all(i.block is ins[0].block for i in ins)
    assert [i.member for i in ins] == [0, 1, 2]
    np.testing.assert_array_equal(ins[0].block.joint_cov(), [[2, 1, 0], [1, 3, 0.5], [0, 0.5, 1]])
    assert [float(ins[0].block.mean(k)) for k in range(3)] == [0, 1, -1]


def test_family_covariance_from_data():
    src = X3 + "const sw2 = 2, sb2 = 0.1\nvector g[i] ~ N(0, sw2 * dot(X[i], X[i']) / dim(X) + sb2)\n" \
               "out K[i, j] = mean(g[i] * g[j])\n"
    prog = tensorprog.parse(src)
    g = instr(prog, "g")
    assert g.out.axes == (prog.axes["X"],)
    expected = np.array([[2 * (XA[i] @ XA[j]) / 2 + 0.1 for j in range(3)] for i in range(3)])
    np.testing.assert_allclose(g.block.cov(0, 0), expected, rtol=1e-15)
    np.testing.assert_array_equal(g.block.mean(0), np.zeros(3))


def test_family_without_primed_partner_is_independent_per_point():
    prog = tensorprog.parse(X3 + "vector v[i] ~ N(0, norm(X[i])^2) for i in X\nout o[i] = mean(v[i]^2)\n")
    expected = np.diag([1.0, 4.25, 10.0])
    np.testing.assert_allclose(instr(prog, "v").block.cov(0, 0), expected, rtol=1e-15)


def test_family_mean_from_data():
    prog = tensorprog.parse(X3 + "vector v[i] ~ N(X[i][1], delta(i, i'))\nout o[i] = mean(v[i])\n")
    b = instr(prog, "v").block
    np.testing.assert_array_equal(b.mean(0), [0, 2, 1])
    np.testing.assert_array_equal(b.cov(0, 0), np.eye(3))


def test_unrolled_vectors_with_partner_index_form_one_block():
    prog = tensorprog.parse("vector u[t] ~ N(0, min(t, t')) for t in 1..3\n"
                            "out o = mean(u[1] * u[2] * u[3])\n")
    u = [instr(prog, f"u[{t}]") for t in (1, 2, 3)]
    assert u[0].block is u[1].block is u[2].block
    np.testing.assert_array_equal(u[0].block.joint_cov(), [[1, 1, 1], [1, 2, 2], [1, 2, 3]])


def test_unrolled_vectors_without_partner_index_are_independent_blocks():
    prog = tensorprog.parse("vector b[l] ~ N(0, l) for l in 1..3\nout o = mean(b[1] * b[2] * b[3])\n")
    blocks = [instr(prog, f"b[{l}]").block for l in (1, 2, 3)]
    assert len({id(b) for b in blocks}) == 3
    assert [float(b.cov(0, 0)) for b in blocks] == [1, 2, 3]


def test_unrolled_family_cross_covariance():
    src = ("data S = [[[1, 0], [0, 1]], [[1, 1], [2, 0]], [[0, 3], [1, 1]]]\n"
           "vector u[t][s] ~ N(0, dot(S[s][t], S[s'][t'])) for t in 0..1\n"
           "out K[t][s][t2][s2] = mean(u[t][s] * u[t2][s2]) for t in 0..1, t2 in 0..1\n")
    prog = tensorprog.parse(src)
    sa = np.array([[[1, 0], [0, 1]], [[1, 1], [2, 0]], [[0, 3], [1, 1]]], dtype=float)
    b = instr(prog, "u[0]").block
    for t in range(2):
        for t2 in range(2):
            np.testing.assert_array_equal(b.cov(t, t2), sa[:, t, :] @ sa[:, t2, :].T)


def test_initial_scalars_number_width_and_data():
    src = X3 + "scalar a = 0.25, r = n^(-1/2), c = dot(X[0], X[2])\nscalar y[i] = X[i][0] for i in X\n" \
               "vector x ~ N(0, 1)\nout o[i] = mean(a * r * c * y[i] * x)\n"
    prog = tensorprog.parse(src)
    assert instr(prog, "a").value == sympy.Rational(1, 4)
    assert instr(prog, "r").value == 1 / sympy.sqrt(n)
    assert instr(prog, "c").is_data and float(instr(prog, "c").value) == 3.0
    np.testing.assert_array_equal(instr(prog, "y").value, [1, 0.5, 3])
    assert instr(prog, "y").out.axes == (prog.axes["X"],)


def test_convergent_width_dependent_scalar():
    prog = tensorprog.parse("vector x ~ N(0, 1)\nscalar a = (n + 1) / (2*n)\nout o = mean(a * x)\n")
    assert instr(prog, "a").value == (n + 1) / (2 * n)


def test_width_dependent_number_inside_expression_becomes_initial_scalar():
    prog = tensorprog.parse("vector x ~ N(0, 1)\nout o = mean(n^(-1/2) * x)\n")
    init = [i for i in prog.instructions if i.op == "init_scalar"]
    assert len(init) == 1 and init[0].value == n ** sympy.Rational(-1, 2)
    assert named(instr(prog, "o")) == S(init[0].out.name) * S("x")


def test_assignment_typed_by_right_hand_side():
    src = "vector x ~ N(0, 1)\ny = tanh(x) + 1\nm = mean(y^2)\ns = 2 * m + 1\nc = 3\nout o = s * c\n"
    prog = tensorprog.parse(src)
    assert (instr(prog, "y").op, instr(prog, "y").out.kind) == ("nonlin", Kind.VECTOR)
    assert (instr(prog, "m").op, instr(prog, "m").out.kind) == ("moment", Kind.SCALAR)
    assert (instr(prog, "s").op, instr(prog, "s").out.kind) == ("scalar_fn", Kind.SCALAR)
    assert (instr(prog, "c").op, instr(prog, "c").value) == ("init_scalar", 3)
    assert named(instr(prog, "y")) == F.tanh(S("x")) + 1
    assert named(instr(prog, "m")) == S("y") ** 2
    assert named(instr(prog, "s")) == 2 * S("m") + 1
    assert named(instr(prog, "o")) == S("s") * S("c")


def test_matmul_of_an_expression_first_makes_a_nonlin():
    prog = tensorprog.parse("matrix W ~ N(0, 1/n)\nvector x ~ N(0, 1)\ny = W @ relu(x)\nout o = mean(y)\n")
    (nl,) = [i for i in prog.instructions if i.op == "nonlin"]
    assert named(nl) == F.relu(S("x"))
    mm = instr(prog, "y")
    assert (mm.op, mm.matrix.name, mm.arg.value is nl.out, mm.transposed) == ("matmul", "W", True, False)


def test_transpose_and_scaled_matrix():
    prog = tensorprog.parse("matrix W ~ N(0, 1/n)\nvector x ~ N(0, 1)\nscalar a = 3\n"
                            "y = W.T @ x\nz = (a * W) @ x\nout o = mean(y * z)\n")
    y, z = instr(prog, "y"), instr(prog, "z")
    assert y.op == "matmul" and y.transposed and y.arg.value.name == "x"
    (mm,) = [i for i in prog.instructions if i.op == "matmul" and not i.transposed]
    assert z.op == "nonlin" and named(z) == S("a") * S(mm.out.name)


def test_double_transpose_and_divided_matrix():
    prog = tensorprog.parse("matrix W ~ N(0, 1/n)\nvector x ~ N(0, 1)\ny = W.T.T @ x\nz = W/2 @ x\n"
                            "out o = mean(y * z)\n")
    (mm,) = [i for i in prog.instructions if i.op == "matmul"]
    assert not mm.transposed and instr(prog, "y") is mm
    assert named(instr(prog, "z")) == S("y") / 2


def test_sum_of_arguments_and_of_a_list():
    prog = tensorprog.parse("vector x, y ~ N(0, [[1, 0], [0, 1]])\nz = sum(x, 2 * y)\nw = sum([x, y, x])\n"
                            "out o = mean(z * w)\n")
    assert named(instr(prog, "z")) == S("x") + 2 * S("y")
    assert named(instr(prog, "w")) == 2 * S("x") + S("y")


def test_lincomb_and_nonlin_with_scalar_parameters():
    prog = tensorprog.parse("vector x, y ~ N(0, [[1, 0], [0, 1]])\nscalar a = 2\nm = mean(x)\n"
                            "z = a * x - 3 * y / m\nout o = mean(z)\n")
    z = instr(prog, "z")
    assert args(z) == ([("x", ()), ("y", ())], [("a", ()), ("m", ())])
    assert named(z) == S("a") * S("x") - 3 * S("y") / S("m")


def test_common_subexpressions_are_computed_once():
    prog = tensorprog.parse("matrix W ~ N(0, 1/n)\nvector x ~ N(0, 1)\n"
                            "out o = mean((W @ relu(x)) * (W @ relu(x)))\n")
    assert [i.op for i in prog.instructions] == ["init_matrix", "init_vector", "nonlin", "matmul", "moment"]


def test_unused_code_is_dropped():
    prog = tensorprog.parse("matrix W ~ N(0, 1/n)\nvector x, v ~ N(0, [[1, 0], [0, 1]])\n"
                            "unused = W @ v\nout o = mean(x)\n")
    assert ops(prog) == [("init_vector", "x"), ("moment", "o")]
    assert {i.out.name for i in prog.all_instructions} >= {"W", "unused", "v"}


# ---------------------------------------------------------------- outputs

def test_family_output_is_n_by_n():
    prog = tensorprog.parse(X3 + "vector g[i] ~ N(0, dot(X[i], X[i']))\nout K[i, j] = mean(relu(g[i]) * g[j])\n")
    (o,) = prog.outputs
    assert (o.name, o.layout, o.array_shape) == ("K", (("f", 0), ("f", 1)), (3, 3))
    k = instr(prog, "K")
    assert args(k) == ([("g", (a0,)), ("g", (a1,))], [])
    assert named(k) == F.relu(S("g[a0]")) * S("g[a1]")


def test_output_of_existing_scalar_and_unrolled_output():
    src = "vector x ~ N(0, 1)\nm = mean(x^2)\nout m\nout p[k] = mean(x^k) for k in 2..4\n"
    prog = tensorprog.parse(src)
    m, p = prog.outputs
    assert (m.name, m.array_shape, m.values[0].name) == ("m", (), "m")
    assert (p.layout, p.offsets, p.shape) == ((("u", 0),), (2,), (3,))
    assert [named(instr(prog, v.name)) for v in p.values] == [S("x") ** k for k in (2, 3, 4)]


def test_mixed_unrolled_and_family_output_layout():
    src = ("data S = [[1, 0], [0, 1], [1, 1]]\nvector u[t][s] ~ N(0, dot(S[s], S[s'])) for t in 1..2\n"
           "for t in 1..2, t2 in 1..2: out K[t][s][t2][s2] = mean(u[t][s] * u[t2][s2])\n")
    (o,) = tensorprog.parse(src).outputs
    assert o.layout == (("u", 0), ("f", 0), ("u", 1), ("f", 1))
    assert (o.offsets, o.shape, o.array_shape) == ((1, 1), (2, 2), (2, 3, 2, 3))
    assert [k for k, _ in o.items] == [(1, 1), (1, 2), (2, 1), (2, 2)]


# ---------------------------------------------------------------- loops

def test_for_block_indented_nested_and_one_line():
    src = ("vector x ~ N(0, 1)\nfor a in 1..2:\n    for b in 1..2:\n        p[a][b] = mean(x^(a + 2*b))\n"
           "for a in 1..2: q[a] = p[a][1] + p[a][2]\nout o = q[1] * q[2]\n")
    prog = tensorprog.parse(src)
    assert named(instr(prog, "p[2][1]")) == S("x") ** 4
    assert named(instr(prog, "q[2]")) == S("p[2][1]") + S("p[2][2]")


def test_statement_suffix_loop_with_two_variables():
    prog = tensorprog.parse("vector x ~ N(0, 1)\np[a][b] = mean(x^(10*a + b)) for a in 1..2, b in 0..1\n"
                            "out o = p[1][0] + p[1][1] + p[2][0] + p[2][1]\n")
    assert [named(instr(prog, f"p[{a}][{b}]")) for a in (1, 2) for b in (0, 1)] == \
        [S("x") ** 10, S("x") ** 11, S("x") ** 20, S("x") ** 21]


def test_ranges_are_inclusive_and_may_be_empty():
    prog = tensorprog.parse("const L = 1\nvector x ~ N(0, 1)\nh[1] = x\n"
                            "for l in 2..L: h[l] = relu(h[l-1])\nout o = mean(h[L])\n")
    assert ops(prog) == [("init_vector", "x"), ("moment", "o")]
    prog = tensorprog.parse("vector x ~ N(0, 1)\nout o[k] = mean(x^k) for k in 3..5\n")
    assert prog.outputs[0].offsets == (3,) and prog.outputs[0].shape == (3,)


def test_reversed_range_defines_in_descending_order():
    src = ("matrix W[l] ~ N(0, 1/n) for l in 1..3\nvector v ~ N(0, 1)\nd[3] = v\n"
           "for l in reversed(1..2): d[l] = W[l+1].T @ d[l+1]\nout o = mean(d[1])\n")
    prog = tensorprog.parse(src)
    mm = [(i.out.name, i.matrix.name, i.arg.value.name) for i in prog.instructions if i.op == "matmul"]
    assert mm == [("d[2]", "W[3]", "v"), ("d[1]", "W[2]", "d[2]")]


def test_loop_over_data_set_is_a_family_index():
    prog = tensorprog.parse(X3 + "vector x[i] ~ N(0, dot(X[i], X[i']))\nfor i in X: y[i] = relu(x[i])\n"
                            "out o[i] = mean(y[i])\n")
    y = instr(prog, "y")
    assert y.out.axes == (prog.axes["X"],) and args(y) == ([("x", (a0,))], [])


def test_free_left_hand_index_infers_its_data_set():
    src = ("data X = [[1], [2]]\ndata Y = [[1], [2], [3]]\nvector x[i] ~ N(0, X[i][0] * X[i'][0])\n"
           "vector y[j] ~ N(0, Y[j][0] * Y[j'][0])\nz[a, b] = x[a] * y[b]\nout o[a, b] = mean(z[a, b])\n")
    prog = tensorprog.parse(src)
    z = instr(prog, "z")
    assert [ax.name for ax in z.out.axes] == ["X", "Y"]
    assert args(z) == ([("x", (a0,)), ("y", (a1,))], [])


def test_fixed_member_of_a_family():
    prog = tensorprog.parse(X3 + "vector x[i] ~ N(0, dot(X[i], X[i']))\nout o = mean(x[0] * x[2])\n")
    assert args(instr(prog, "o")) == ([("x", (0,)), ("x", (2,))], [])


# ---------------------------------------------------------------- expressions

@pytest.mark.parametrize("text, value", [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("10 - 3 - 2", 5),
    ("8 / 4 / 2", 1),
    ("2 ^ 3 ^ 2", 512),
    ("-2 ^ 2", -4),
    ("(-2) ^ 2", 4),
    ("2 ^ -1", sympy.Rational(1, 2)),
    ("-3 * -2", 6),
    ("+4 - -1", 5),
    ("2 * 3 ^ 2 / 6", 3),
    ("0.25e1", sympy.Rational(5, 2)),
    ("1e-2", sympy.Rational(1, 100)),
    ("pi", sympy.pi),
    ("min(3, 1, 2) + max(4, 5)", 6),
    ("sqrt(4) + exp(0) + relu(-3)", 3),
])
def test_precedence_and_arithmetic_of_constants(text, value):
    assert const(text) == value


def test_minus_binds_looser_than_power_on_vectors():
    prog = tensorprog.parse("vector x ~ N(0, 1)\ny = -x^2\nout o = mean(y)\n")
    assert named(instr(prog, "y")) == -(S("x") ** 2)


def test_matmul_has_the_precedence_of_times():
    prog = tensorprog.parse("matrix W ~ N(0, 1/n)\nvector x ~ N(0, 1)\ny = 2 * W @ x + x\nout o = mean(y)\n")
    (mm,) = [i for i in prog.instructions if i.op == "matmul"]
    assert mm.arg.value.name == "x"
    assert named(instr(prog, "y")) == 2 * S(mm.out.name) + S("x")


def test_list_and_list_comprehension_indexing():
    assert const("[10, 20, 30][1]") == 20
    assert const("[k^2 for k in 1..4][3]") == 16
    assert const("[[1, 2], [3, 4]][1][0]") == 3


def test_sum_over_a_range():
    prog = tensorprog.parse("vector x ~ N(0, 1)\nout o = sum(mean(x^k) / k for k in 1..3)\n")
    o = instr(prog, "o")
    moments = {named(instr(prog, p.value.name)): p.value.name for p in o.params}
    m = {k: S(moments[S("x") ** k]) for k in (1, 2, 3)}
    assert named(o) == m[1] + m[2] / 2 + m[3] / 3
    assert const("sum(k for k in 1..100)") == 5050


def test_softmax_of_scalars():
    src = "vector x ~ N(0, 1)\na[k] = mean(x^k) for k in 1..3\nout o = softmax([a[1], a[2], a[3]])[1]\n" \
          "out g = softmax(a[k] for k in 1..3)[2]\n"
    prog = tensorprog.parse(src)
    e = [sympy.exp(S(f"a[{k}]")) for k in (1, 2, 3)]
    assert named(instr(prog, "o")) == e[1] / (e[0] + e[1] + e[2])
    assert named(instr(prog, "g")) == e[2] / (e[0] + e[1] + e[2])


def test_data_functions_dot_norm_dim_len_delta():
    assert const("dot([1, 2, 3], [4, 5, 6])") == 32
    assert const("norm([3, 4])") == 5
    d = "data X = [[1, 2, 2], [0, 0, 1]]\n"
    prog = tensorprog.parse(d + "const a = dim(X), b = len(X), c = norm(X[0])\nvector x[i] ~ N(0, delta(i, i')) for i in X\n"
                                "out o[i] = mean(x[i])\n")
    assert (prog.consts["a"], prog.consts["b"], prog.consts["c"]) == (3, 2, 3)
    np.testing.assert_array_equal(instr(prog, "x").block.cov(0, 0), np.eye(2))


def test_data_of_scalar_points():
    prog = tensorprog.parse("data Z = [1, 2, 4]\nconst d = dim(Z), m = len(Z)\nvector z[i] ~ N(0, Z[i] * Z[i'])\n"
                            "out o[i] = mean(z[i])\n")
    assert (prog.consts["d"], prog.consts["m"]) == (1, 3)
    np.testing.assert_array_equal(instr(prog, "z").block.cov(0, 0), np.outer([1, 2, 4], [1, 2, 4]))


def test_const_from_data_is_a_number():
    prog = tensorprog.parse(X3 + "const c = dot(X[1], X[2]), h = X[1][0]\nvector x ~ N(0, c)\nout o = mean(x)\n")
    assert prog.consts["c"] == 3.5 and prog.consts["h"] == 0.5
    assert prog.instructions[0].block.cov(0, 0) == 3.5


def test_data_arithmetic_in_covariance_gram_matrix():
    src = X3 + "vector g[i] ~ N(0, exp(-norm(X[i])^2 / 2 - norm(X[i'])^2 / 2 + dot(X[i], X[i'])))\n" \
               "out K[i, j] = mean(g[i] * g[j])\n"
    prog = tensorprog.parse(src)
    sq = np.array([[np.sum((XA[i] - XA[j]) ** 2) for j in range(3)] for i in range(3)])
    np.testing.assert_allclose(instr(prog, "g").block.cov(0, 0), np.exp(-sq / 2), rtol=1e-14)


def test_data_inside_program_expression_becomes_data_scalar():
    src = X3 + "vector g[i] ~ N(0, dot(X[i], X[i']))\nout K[i, j] = mean(g[i] * g[j]) + dot(X[i], X[j])\n"
    prog = tensorprog.parse(src)
    (init,) = [i for i in prog.instructions if i.op == "init_scalar"]
    np.testing.assert_array_equal(init.value, XA @ XA.T)
    assert [ax.name for ax in init.out.axes] == ["X", "X"]


def test_assigning_an_existing_value_names_it():
    prog = tensorprog.parse("vector x ~ N(0, 1)\ny = x\nout o = mean(y^2)\n")
    assert ops(prog) == [("init_vector", "x"), ("moment", "o")]
    assert named(instr(prog, "o")) == S("x") ** 2


def test_chained_and_comma_subscripts_are_the_same():
    prog = tensorprog.parse(X3 + "vector g[t][i] ~ N(0, dot(X[i], X[i'])) for t in 1..2\n"
                                 "out a[i] = mean(g[1][i] * g[2, i])\nout b[i] = mean(g[1, i] * g[2][i])\n")
    assert prog.outputs[0].values[0] is prog.outputs[1].values[0]


def test_primed_variable_names():
    prog = tensorprog.parse("vector h ~ N(0, 1)\nh' = tanh(h)\nh'' = h' * h\nout o = mean(h'')\n")
    assert named(instr(prog, "h''")) == S("h'") * S("h")


# ---------------------------------------------------------------- the Program object

def test_graph_edges_and_roles():
    prog = tensorprog.parse("matrix W ~ N(0, 1/n)\nvector x ~ N(0, 1)\nscalar a = 2\n"
                            "y = W.T @ x\nout o = mean(a * y)\n")
    ids = {i.out.name: i.out.id for i in prog.instructions}
    g = prog.graph
    assert set(g.edges) == {(ids["W"], ids["y"]), (ids["x"], ids["y"]), (ids["y"], ids["o"]), (ids["a"], ids["o"])}
    assert g.edges[ids["W"], ids["y"]]["role"] == "matrix^T"
    assert g.edges[ids["a"], ids["o"]]["role"] == "param"
    assert g.nodes[ids["o"]]["op"] == "moment"


def test_listing_dot_and_json():
    prog = tensorprog.parse(X3 + "vector g[i] ~ N(0, dot(X[i], X[i']))\nout K[i, j] = mean(g[i] * g[j])\n")
    text = str(prog)
    assert "K[a0, a1] : scalar over X x X = moment x0*x1 (g[a0], g[a1])" in text
    assert "out K (3x3)" in text
    data = json.loads(prog.to_json())
    assert [o["shape"] for o in data["outputs"]] == [[3, 3]]
    assert {(e["source"], e["target"]) for e in data["edges"]} == {(0, 1)}
    dot = prog.to_dot()
    assert dot.startswith("digraph") and "v0 -> v1" in dot and dot.rstrip().endswith("}")


def test_summary_counts():
    prog = tensorprog.parse("matrix W ~ N(0, 1/n)\nvector x ~ N(0, 1)\nout o = mean((W @ x)^2)\n")
    assert prog.summary() == "4 instructions (1 init_matrix, 1 init_vector, 1 matmul, 1 moment); " \
                             "0 over families; 1 output"


def test_source_positions_of_instructions():
    prog = tensorprog.parse("vector x ~ N(0, 1)\n\ny = relu(x)\nout o = mean(y)\n")
    assert [(i.out.name, i.pos.line) for i in prog.instructions] == [("x", 1), ("y", 3), ("o", 4)]
