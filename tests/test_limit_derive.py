"""The Master Theorem pass against hand derivations written here (issue 3)."""

import numpy as np
import pytest
import sympy

import tensorprog
from gaussian_truths import erf_erf, relu_relu
from tensorprog.functions import relu, tanh
from tensorprog.limit.symbols import INDEX, Data, Integral, atom_of, atoms_in, quantity_of, qrefs_in

i, j = INDEX[0], INDEX[1]


def numeric(limit, expr, idx=(), memo=None):
    """Evaluate a closed-form limit expression at index values, quantity by quantity (30 digits)."""
    memo = {} if memo is None else memo
    e = sympy.sympify(expr).xreplace({INDEX[p]: sympy.Integer(v) for p, v in enumerate(idx)})
    values = {}
    for r in qrefs_in(e):
        if r not in memo:
            q = quantity_of(r)
            args = tuple(int(a) for a in r.args)
            if isinstance(q.definition, Data):
                memo[r] = sympy.Float(q.definition.array[args], 30)
            else:
                assert isinstance(q.definition, sympy.Basic), f"{limit.names[q]} is not closed form"
                memo[r] = sympy.Float(numeric(limit, q.definition, args, memo), 30)
        values[r] = memo[r]
    return float(e.xreplace(values).evalf(30))


def output_matrix(limit, name, n):
    (key, expr), = limit.outputs[name]
    memo = {}
    return np.array([[numeric(limit, expr, (a, b), memo) for b in range(n)] for a in range(n)])


X = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [2.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


def mlp_source(phi, L, sw2, sb2):
    rows = ", ".join("[" + ", ".join(repr(float(v)) for v in r) + "]" for r in X)
    return f"""
const L = {L}, sw2 = {sw2}, sb2 = {sb2}
data X = [{rows}]
matrix W[l] ~ N(0, sw2/n) for l in 2..L
vector b[l] ~ N(0, sb2) for l in 2..L
vector g[1][i] ~ N(0, sw2 * dot(X[i], X[i']) / dim(X) + sb2)
for l in 2..L: g[l][i] = W[l] @ {phi}(g[l-1][i]) + b[l]
out K[i, j] = sw2 * mean({phi}(g[L][i]) * {phi}(g[L][j])) + sb2
"""


def hand_nngp(kernel, L, sw2, sb2):
    S = sw2 * X @ X.T / X.shape[1] + sb2
    for _ in range(2, L + 2):
        S = np.array([[sw2 * kernel(S[p, p], S[q, q], S[p, q]) + sb2 for q in range(len(X))]
                      for p in range(len(X))])
    return S


@pytest.mark.parametrize("phi,kernel", [("relu", relu_relu), ("erf", erf_erf)])
@pytest.mark.parametrize("L,sb2", [(2, 0.0), (4, 0.1)])
def test_mlp_nngp_matches_hand_recursion(phi, kernel, L, sb2):
    limit = tensorprog.derive(mlp_source(phi, L, 2.0, sb2))
    K = output_matrix(limit, "K", len(X))
    np.testing.assert_allclose(K, hand_nngp(kernel, L, 2.0, sb2), rtol=1e-12, atol=1e-12)
    assert not [q for q in limit.quantities if isinstance(q.definition, Integral)]


def test_erf_layer_is_the_arcsine_formula_symbolically():
    limit = tensorprog.derive(mlp_source("erf", 1, 2.0, 0.0))
    (_, K), = limit.outputs["K"]
    # One layer: K = 2 E[erf(u) erf(v)], Var u = Sigma(i,i), Cov = Sigma(i,j) of the input layer (data C).
    C = limit.quantity("C1")
    a, b, c = C(i, i), C(j, j), C(i, j)
    hand = 2 * (2 / sympy.pi) * sympy.asin(2 * c / sympy.sqrt((1 + 2 * a) * (1 + 2 * b)))
    derived = limit.inline(K)
    assert sympy.simplify(derived - hand) == 0


def zdot_program(phi):
    return f"""
vector x ~ N(0, 1)
matrix W ~ N(0, 1.5/n)
y = W @ x
z = W.T @ {phi}(y)
out o = mean(z * x)
"""


def _zdot_of(limit, transposed):
    terms = [t for t in limit.zdot if t.matmul.transposed == transposed]
    assert len(terms) == 1
    return terms[0]


def test_zdot_of_transpose_closed_forms():
    """z = W^T phi(W x): Zdot = sigma^2 Z^x E[phi'(Z^y)], Var Z^y = sigma^2 E[x^2] = 1.5."""
    for phi, expected in [("relu", sympy.Rational(1, 2)),
                          ("erf", 2 / sympy.sqrt(sympy.pi) / sympy.sqrt(1 + 2 * sympy.Rational(3, 2)))]:
        limit = tensorprog.derive(zdot_program(phi))
        t = _zdot_of(limit, True)
        assert t.scale == sympy.Rational(3, 2)
        assert sympy.simplify(limit.inline(t.coefficient) - expected) == 0
        xatom = limit.atoms[[v for v in limit.program.values if v.name == "x"][0].id]
        assert t.y_expr == xatom()
        z = [v for v in limit.program.values if v.name == "z"][0]
        zhat = limit.atoms[z.id]
        assert sympy.expand(limit.Z[z.id] - (zhat() + sympy.Rational(3, 2) * xatom() * t.coefficient)) == 0


def test_zdot_of_transpose_tanh_is_an_expectation_of_phi_prime():
    """E[tanh'(Z^y)] = 1 - E[tanh(Z^y)^2] (by linearity), the latter a 1-d integral with Var Z^y = 3/2."""
    limit = tensorprog.derive(zdot_program("tanh"))
    t = _zdot_of(limit, True)
    ref, = qrefs_in(t.coefficient)
    assert t.coefficient == 1 - ref
    q = quantity_of(ref)
    y_atom, = atoms_in(q.meaning)
    assert q.meaning == tanh(y_atom) ** 2
    integral = q.definition
    assert isinstance(integral, Integral) and integral.dim == 1
    u = integral.variables[0]
    assert integral.integrand == tanh(u) ** 2
    assert integral.cov[0, 0] == sympy.Rational(3, 2) and integral.mean[0] == 0


def test_ntk_backward_pass_zdots_are_exactly_zero():
    limit = tensorprog.derive("examples/mlp_ntk.tp")
    assert len(limit.zdot) == 2  # one per transposed matrix W[3].T, W[2].T
    assert all(t.coefficient == 0 for t in limit.zdot)
    assert limit.nonzero_zdot() == []
    # So the backward Z's are Zhat's (no correction): Z[W.T@dg] is a single atom.
    for v in limit.program.values:
        if v.id in limit.atoms and limit.atoms[v.id].group[0] == "W" and limit.atoms[v.id].group[2]:
            assert limit.Z[v.id] == limit.atoms[v.id](i)


def test_mup_one_step_zdot_matches_hand_derivation():
    limit = tensorprog.derive("examples/mup_one_step.tp")
    nonzero = limit.nonzero_zdot()
    assert len(nonzero) == 1
    t = nonzero[0]
    assert t.matmul.matrix.name == "W" and not t.matmul.transposed and t.scale == 1
    by_name = {v.name: v for v in limit.program.values}
    # Atoms: h1 (initial family over the two inputs), v (readout), Zhat^{W x1} = Zhat_h2,
    # Zhat^{W^T dh2} (backward) -- the derivative is taken in the last one.
    h1 = limit.atoms[by_name["h1"].id]
    v = limit.atoms[by_name["v"].id]()
    zh2 = limit.atoms[by_name["h2"].id]()
    zb, = [a for a in atoms_in(limit.Z[by_name["dh1"].id]) if atom_of(a).group[0] == "W"]
    assert atom_of(zb).group[2] is True  # a Zhat of W^T
    assert t.atom == zb
    # Z^{dh2} = v * tanh'(Zhat_h2), and the Zdot term multiplies exactly that.
    assert sympy.simplify(t.y_expr - v * (1 - tanh(zh2) ** 2)) == 0
    # Hand derivation: h1' = h1[1] - eta chi c dh1 with eta = 1, chi = f0 - y0 = 0 - 1, c = <xi0, xi>/3 = 1/6,
    # dh1 = tanh'(h1[0]) Zhat^{W^T dh2}; so dZ^{x1'}/dZhat = tanh'(h1') * tanh'(h1[0]) / 6.
    h1p = h1(1) + sympy.Rational(1, 6) * (1 - tanh(h1(0)) ** 2) * zb
    hand_integrand = (1 - tanh(h1p) ** 2) * (1 - tanh(h1(0)) ** 2) / 6
    assert sympy.simplify(t.derivative - hand_integrand) == 0
    engine = limit._deriver.engine
    assert sympy.expand(engine.expect(hand_integrand, ()) - t.coefficient) == 0
    assert t.method == "derivative (sympy)"


def test_rnn_weight_sharing_is_one_gaussian_family():
    limit = tensorprog.derive("examples/rnn.tp")
    W = [v for v in limit.program.values if v.name == "W"][0]
    zhats = [a for a in limit.atoms.values() if a.group[0] == "W"]
    assert len(zhats) == 4 and {a.group for a in zhats} == {("W", W.id, False)}  # W h(t), t = 1..4
    # Cov(Zhat^{W h_t}(i), Zhat^{W h_s}(j)) = sw2 E[Z^{h_t}(i) Z^{h_s}(j)], sw2 = 1.5.
    for a in zhats:
        for b in zhats:
            cov = limit.atom_cov(a(i), b(j))
            q = quantity_of(cov)
            assert q is not None and q.kind == "cov"
            ha, hb = a.instr.arg.value, b.instr.arg.value
            moment = limit._deriver.engine.expect(limit.Z[ha.id] * limit.Z[hb.id].xreplace({i: j}), (W.axes or ()) +
                                                  (ha.axes[0], hb.axes[0]))
            assert sympy.expand(q.definition.xreplace({INDEX[0]: i, INDEX[1]: j}) - sympy.Rational(3, 2) * moment) == 0


def test_layernorm_substitutes_moment_limits_into_the_nonlin():
    limit = tensorprog.derive("examples/layernorm.tp")
    by_name = {v.name: v for v in limit.program.values}
    s2 = limit.quantity("s2[1]")
    g1 = limit.atoms[by_name["g[1]"].id]
    # mu[1] = E[Z^{g[1]}] = 0 exactly; s2[1] = E[(Z^{g[1]} - 0)^2] = Var, the data covariance's diagonal.
    assert limit.theta[by_name["mu[1]"].id] == 0
    C = limit.quantity("C1")
    assert s2.definition == C(i, i)
    expected = relu(g1(i) / sympy.sqrt(s2(i) + sympy.Rational(1, 100000)))
    assert sympy.simplify(limit.Z[by_name["x[1]"].id] - expected) == 0
    for v in limit.program.values:
        if v.id in limit.Z:
            assert not {s for s in limit.Z[v.id].free_symbols if s.name.startswith(("p", "x"))}


GOLDEN_SOURCE = """
data X = [[1, 0], [0, 1]]
matrix W ~ N(0, 2/n)
vector g[i] ~ N(0, dot(X[i], X[i']))
h[i] = W @ relu(g[i])
out K[i, j] = mean(tanh(h[i]) * tanh(h[j]))
out m = mean(relu(g[0]) * step(g[0]))
"""

# Checked by hand: E1 is the arc-cosine kernel of the data covariance C1 (Cov(g(i), g(j)) = <X_i, X_j>),
# Cov(Zhat_h) = 2 E1 off the diagonal and 2 E[relu(g)^2] = C1(i, i) on it; E2 the tanh kernel
# (no closed form: a 2-d integral); E3 = E[relu(u) step(u)] = E[u; u > 0] = sqrt(Var / (2 pi)).
GOLDEN_TEXT = 'limit of <string>\n  families: X (2 points)\n\nrandom variables (Z, in program order):\n  line 4    Z[g(i)] = Z[g](i)\n  line 5    Z[relu(g)(i)] = relu(Z[g](i))\n  line 5    Z[h(i)] = Ẑ[h](i)\n\nquantities (evaluation order):\n  C1(i, j) = data: Cov(g, g)\n      [data]   line 4\n  E1(i, j) = sqrt(τ1)·sqrt(τ2)·(τ3·(pi - acos(τ3)) + sqrt(1 - τ3^2))/(2·pi)   where τ1 = C1(i, i), τ2 = C1(j, j), τ3 = rho(C1(i, j), τ1, τ2)\n      = E[relu(Z[g](i))·relu(Z[g](j))]   [closed form (relu)]   line 5\n  Σ1(i, j) = 2·E1(i, j)\n      = Cov(Ẑ[h](i), Ẑ[h](j))   [2·E[Z^x Z^y]]   line 5\n  Σ2(i) = C1(i, i)\n      = Cov(Ẑ[h](i), Ẑ[h](i))   [2·E[Z^x Z^y]]   line 5\n  E2(i, j) = E[tanh(u0)·tanh(u1)] over (u0, u1) ~ N((0, 0), [Σ2(i), Σ1(i, j); Σ1(i, j), Σ2(j)])\n      = E[tanh(Ẑ[h](i))·tanh(Ẑ[h](j))]   [numeric, 2-dimensional]   line 6\n  K(i, j) = E2(i, j)\n      [scalar arithmetic]   line 6\n  E3 = sqrt(2)·sqrt(C1(0, 0))/(2·sqrt(pi))\n      = E[relu(Z[g](0))·step(Z[g](0))]   [closed form (relu x step)]   line 7\n  m = E3\n      [scalar arithmetic]   line 7\n\noutputs:\n  K = K(i, j)\n  m = m'

GOLDEN_LATEX = '\\begin{align*}\nC_{1}\\left(i, j\\right) &= \\text{data} \\\\\n\\mathbb{E}_{1}\\left(i, j\\right) &= \\frac{\\left(\\sqrt{1 - \\rho\\left(C_{1}\\left(i, j\\right); C_{1}\\left(i, i\\right), C_{1}\\left(j, j\\right)\\right)^{2}} + \\left(\\pi - \\operatorname{acos}{\\left(\\rho\\left(C_{1}\\left(i, j\\right); C_{1}\\left(i, i\\right), C_{1}\\left(j, j\\right)\\right) \\right)}\\right) \\rho\\left(C_{1}\\left(i, j\\right); C_{1}\\left(i, i\\right), C_{1}\\left(j, j\\right)\\right)\\right) \\sqrt{C_{1}\\left(i, i\\right)} \\sqrt{C_{1}\\left(j, j\\right)}}{2 \\pi} \\\\\n\\Sigma_{1}\\left(i, j\\right) &= 2 \\mathbb{E}_{1}\\left(i, j\\right) \\\\\n\\Sigma_{2}\\left(i\\right) &= C_{1}\\left(i, i\\right) \\\\\n\\mathbb{E}_{2}\\left(i, j\\right) &= \\mathbb{E}_{(u_{0}, u_{1}) \\sim \\mathcal{N}}\\left[\\tanh\\left(u_{0}\\right) \\tanh\\left(u_{1}\\right)\\right],\\ \\Sigma = \\left[\\begin{matrix}\\Sigma_{2}\\left(i\\right) & \\Sigma_{1}\\left(i, j\\right)\\\\\\Sigma_{1}\\left(i, j\\right) & \\Sigma_{2}\\left(j\\right)\\end{matrix}\\right] \\\\\n\\mathrm{K}\\left(i, j\\right) &= \\mathbb{E}_{2}\\left(i, j\\right) \\\\\n\\mathbb{E}_{3} &= \\frac{\\sqrt{2} \\sqrt{C_{1}\\left(0, 0\\right)}}{2 \\sqrt{\\pi}} \\\\\n\\mathrm{m} &= \\mathbb{E}_{3} \\\\\n\\mathrm{K} &= \\mathrm{K}\\left(i, j\\right) \\\\\n\\mathrm{m} &= \\mathrm{m}\n\\end{align*}'


def test_golden_text_and_latex():
    limit = tensorprog.derive(GOLDEN_SOURCE)
    assert str(limit) == GOLDEN_TEXT
    assert limit.latex() == GOLDEN_LATEX


def test_derive_cli_text_latex_json(capsys):
    from tensorprog.cli import main
    import json

    assert main(["derive", "examples/mlp_nngp.tp"]) == 0
    out = capsys.readouterr().out
    assert "quantities (evaluation order):" in out and "K(i, j) = 2·E3(i, j) + 1/10" in out
    assert main(["derive", "examples/mlp_nngp.tp", "--latex"]) == 0
    assert capsys.readouterr().out.startswith("\\begin{align*}")
    assert main(["derive", "examples/mlp_nngp.tp", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = [q["name"] for q in data["quantities"]]
    assert names[0] == "C1" and "K" in names and data["outputs"]["K"][0]["value"] == "K(i, j)"
