"""The documentation site: docs/*.md, docs/gen_pages.py, docs/hooks.py and mkdocs.yml.

Fast checks: every page of the nav exists (as a source or as a page gen_pages.py writes) and every
source is in the nav; the directives of the hand-written pages are valid; every ```tp block parses;
cli.md lists every sub-command and option of the real parser; api.md mentions every public name;
the output filters keep what they should.  Slow checks build the pages into a temporary directory,
compare the numbers they show with closed forms and numerical integrals computed here, and build
the site with ``mkdocs build --strict``.
"""
import argparse
import importlib.util
import inspect
import math
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import tensorprog
import tensorprog.simulate
from tensorprog import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load("gen_pages")
hooks = _load("hooks")


def nav_pages(nav):
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            yield from nav_pages(value)
        else:
            yield value


def code_blocks(text, lang):
    return re.findall(rf"^```{re.escape(lang)}\n(.*?)^```$", text, flags=re.S | re.M)


def directives(text):
    return [(m.group(1), m.group(2)) for m in map(gen.DIRECTIVE.match, text.splitlines()) if m]


@pytest.fixture(scope="module")
def config():
    """The settings of mkdocs.yml these tests need, read without a YAML library (the test extra has
    none): docs_dir, hooks and the nav (a flat list of "- Title: page.md" entries)."""
    text = (ROOT / "mkdocs.yml").read_text()
    return {"docs_dir": re.search(r"^docs_dir: (\S+)", text, flags=re.M).group(1),
            "hooks": re.findall(r"^  - (\S+\.py)\b", text, flags=re.M),
            "nav": [{m.group(1): m.group(2)}
                    for m in re.finditer(r"^  - ([^:\n]+): (\S+\.md)$", text, flags=re.M)]}


@pytest.fixture(scope="module")
def sources():
    return {p.name: p.read_text() for p in sorted(DOCS.glob("*.md"))}


# ---------------------------------------------------------------------------------- structure

def test_nav_pages_exist_and_every_source_is_in_the_nav(config, sources):
    pages = list(nav_pages(config["nav"]))
    assert config["docs_dir"] == "build/docs" and config["hooks"] == ["docs/hooks.py"]
    missing = [p for p in pages if p not in sources and p not in gen.GENERATED_PAGES]
    assert not missing, f"nav pages that are neither in docs/ nor generated: {missing}"
    assert sorted(set(sources) - set(pages)) == [], "pages in docs/ missing from the nav"
    assert {"index.md", "tutorial.md", "language.md", "theory.md", "cli.md", "api.md", "simulate.md",
            "cookbook/index.md"} <= set(pages)


def test_hook_lists_every_cookbook_page(tmp_path, config):
    (tmp_path / "cookbook").mkdir()
    for name in ["index", "rnn", "attention"]:
        (tmp_path / "cookbook" / f"{name}.md").write_text("# x\n")
    fake = types.SimpleNamespace(docs_dir=str(tmp_path), nav=list(config["nav"]))
    nav = hooks.on_config(fake).nav
    cookbook = [e for e in nav if "Cookbook" in e][0]["Cookbook"]
    assert cookbook == [{"Overview": "cookbook/index.md"}, "cookbook/attention.md", "cookbook/rnn.md"]
    assert nav[:-1] == config["nav"][:-1]


def test_directives_of_the_hand_written_pages_are_valid(sources):
    parser = cli.build_parser()
    for page, text in sources.items():
        plots = set()
        lines = text.splitlines()
        for k, line in enumerate(lines):
            m = gen.DIRECTIVE.match(line.strip())
            if not m:
                continue
            kind, arg = m.groups()
            if kind == "run":
                command = shlex.split(arg.split(" | ")[0])
                assert command[0] == "tpc", (page, arg)
                args = parser.parse_args(command[1:])  # exits (fails the test) on an invalid command line
                plots.add(getattr(args, "plot", None))
            elif kind == "file":
                assert lines[k + 1] == "```tp", (page, line)
            elif kind == "include":
                assert (ROOT / arg).is_file(), (page, arg)
            elif kind == "figure":
                assert arg.split()[0] in plots, f"{page}: no earlier command writes {arg.split()[0]}"
            elif kind == "generate":
                assert arg in gen.GENERATORS, (page, arg)
            else:
                assert kind == "readme" and f"## {arg}\n" in (ROOT / "README.md").read_text()


def test_every_tp_block_of_the_sources_parses(sources, data_dir):
    count = 0
    for page, text in sources.items():
        for block in code_blocks(text, "tp"):
            assert tensorprog.parse(block, name=page).outputs
            count += 1
    included = [arg for text in sources.values() for kind, arg in directives(text) if kind == "include"]
    for path in included:
        assert tensorprog.parse(ROOT / path).outputs
    assert count == sum(len(re.findall(r"^```tp$", t, flags=re.M)) for t in sources.values()) >= 16
    assert included


def test_cli_page_lists_every_command_and_option(tmp_path):
    page = gen.cli_page(gen.Tools(tmp_path))
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sections = dict(re.findall(r"^## `tpc (\w+)`\n(.*?)(?=^## |\Z)", page, flags=re.S | re.M))
    assert sorted(sections) == sorted(sub.choices)
    for action in parser._actions:
        for option in action.option_strings:
            assert option in page.split("## ")[0], option
    for name, subparser in sub.choices.items():
        for action in subparser._actions:
            words = list(action.option_strings) + [str(c) for c in action.choices or []]
            if not action.option_strings:
                words.append(action.dest)
            for word in words:
                assert word in sections[name], (name, word)


def test_api_page_mentions_every_public_name():
    page = gen.api_page()
    for name in tensorprog.__all__:
        assert f"`tensorprog.{name}`" in page, name
    for name in tensorprog.simulate.__all__:
        assert f"`tensorprog.simulate.{name}`" in page, name
    for cls in ["LimitProgram", "Results", "OutputResult", "Simulation", "Convergence", "Program"]:
        assert re.search(rf"^### `[\w.]*\.{cls}`$", page, flags=re.M), cls
    for fn in [tensorprog.parse, tensorprog.derive, tensorprog.evaluate, tensorprog.simulate.simulate,
               tensorprog.simulate.convergence]:
        for parameter in inspect.signature(fn).parameters:
            assert re.search(rf"\b{parameter}\b", page), (fn.__name__, parameter)
    assert "'str'" not in page


# ---------------------------------------------------------------------------------- helpers of gen_pages

SAMPLE = """limit of p.tp

random variables (Z, in program order):
  line 3    Z[x] = Z[x]
  line 4    Z[y] = relu(Z[x])

quantities (evaluation order):
  C1 = data: Var(x)
      [data]   line 3
  E1 = C1/2
      = E[relu(Z[x])^2]   [closed form (relu)]   line 5
  K = 2·E1
      [scalar arithmetic]   line 5
"""


def test_filters_keep_sections_and_whole_entries():
    assert gen.apply_filter(SAMPLE, "section", "random variables") == \
        "random variables (Z, in program order):\n  line 3    Z[x] = Z[x]\n  line 4    Z[y] = relu(Z[x])"
    assert gen.apply_filter(SAMPLE, "match", "closed form") == \
        "quantities (evaluation order):\n  E1 = C1/2\n      = E[relu(Z[x])^2]   [closed form (relu)]   line 5"
    assert gen.apply_filter(SAMPLE, "match", r"^  (C1|K) ") == (
        "quantities (evaluation order):\n  C1 = data: Var(x)\n      [data]   line 3\n  ...\n"
        "  K = 2·E1\n      [scalar arithmetic]   line 5")
    assert gen.apply_filter(SAMPLE, "head", "2") == "limit of p.tp\n\n... (11 more lines)"
    assert gen.clip_blocks(SAMPLE, {"quantities": 4}, 20) == (
        "limit of p.tp\n\nrandom variables (Z, in program order):\n  line 3    Z[x] = Z[x]\n"
        "  line 4    Z[y] = relu(Z[x])\n\nquantities (evaluation order):\n  C1 = data: Var(x)\n"
        "      [data]   line 3\n  ... (4 more lines)")
    for name, arg in [("section", "Zdot terms"), ("match", "sigmoid")]:
        with pytest.raises(gen.DocsError):
            gen.apply_filter(SAMPLE, name, arg)


def test_docstrings_become_safe_markdown():
    doc = """Run ``f(x)``; see :func:`~tensorprog.simulate.trace`.

    Example::

        out = f(*args, **kw)   # <name>_error

    Values a*b and c*d, file <name>.npz."""
    md = gen.doc_markdown(doc)
    assert "`f(x)`" in md and "`trace`" in md and "Example:" in md
    assert "```text\nout = f(*args, **kw)   # <name>_error\n```" in md
    assert "a\\*b and c\\*d, file &lt;name>.npz" in md


def test_first_sentence_of_a_header():
    head = ["MLP kernels, depth L (any depth, e.g. -D L=10), biases: the NNGP", "and the NTK. More.",
            "  K = E[x x']"]
    assert gen.first_sentence(head) == \
        "MLP kernels, depth L (any depth, e.g. -D L=10), biases: the NNGP and the NTK."
    assert gen.first_sentence(["GRU kernel (gates: sigmoids):", "  z = sigmoid(...)"]) == \
        "GRU kernel (gates: sigmoids)"


# ---------------------------------------------------------------------------------- built pages (slow)

def arccos_kernel(a, b, c):
    """E[relu(u) relu(v)] for centred (u, v) with variances a, b and covariance c (Cho & Saul)."""
    rho = np.clip(c / np.sqrt(a * b), -1, 1)
    t = np.arccos(rho)
    return np.sqrt(a * b) / (2 * np.pi) * (np.sin(t) + (np.pi - t) * rho)


def relu_nngp(X, depth, sw2, sb2):
    """sw2 E[relu relu] + sb2 applied ``depth`` times to Sigma_1 = sw2 X X^T / d + sb2."""
    S = sw2 * X @ X.T / X.shape[1] + sb2
    for _ in range(depth):
        d = np.diag(S)
        S = sw2 * arccos_kernel(d[:, None], d[None, :], S) + sb2
    return S


def printed(page, command, name="K"):
    """The array or scalar that the page shows for output ``name`` after ``$ tpc COMMAND``, and the
    (largest) error estimate shown with it."""
    block = page.split(f"$ tpc {command}\n", 1)[1].split("```", 1)[0]
    m = re.search(rf"^{name} = (\S+) ± (\S+)", block, flags=re.M)
    if m:
        return float(m.group(1)), float(m.group(2))
    head, body = block.split(f"\n{name}  [", 1)[1].split("\n", 1)
    rows = body.split("\n\n")[0].strip().splitlines()
    numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d*)?(?:e[-+]?\d+)?", "\n".join(rows))]
    error = float(re.search(r"max error estimate (\S+)", head).group(1))
    return np.array(numbers).reshape(len(rows), -1), error


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """gen_pages.py run as in CI, into a temporary directory, without the cookbook's commands."""
    out = tmp_path_factory.mktemp("site") / "docs"
    proc = subprocess.run([sys.executable, str(DOCS / "gen_pages.py"), "--out", str(out), "--budget", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.slow
def test_tutorial_numbers_match_the_arccos_recursion(built):
    page = (built / "tutorial.md").read_text()
    X = np.array([[1, 0], [0.6, 0.8], [-1, 0.5]])
    for command, sw2 in [("eval first.tp", 2.0), ("eval first.tp -D sw2=1", 1.0)]:
        # first.tp: g1 ~ Sigma_1, g2 = W relu(g1) + b, K = sw2 E[relu(g2) relu(g2')] + sb2: two steps.
        np.testing.assert_allclose(printed(page, command)[0], relu_nngp(X, 2, sw2, 0.1), rtol=2e-8, atol=1e-8)
    assert abs(printed(page, "eval first.tp")[0][0, 0] - 1.3) < 1e-8  # the hand check in the text


def tanh_tanh(S, order=160):
    """E[tanh(u) tanh(v)] for every pair of a covariance S, by tensor Gauss-Hermite quadrature over
    the Cholesky factor of each 2 x 2 block (1-D on the diagonal)."""
    z, w = np.polynomial.hermite_e.hermegauss(order)
    w = w / w.sum()
    out = np.empty_like(S)
    for i in range(len(S)):
        out[i, i] = np.sum(w * np.tanh(np.sqrt(S[i, i]) * z) ** 2)
        for j in range(len(S)):
            if i != j:
                L = np.linalg.cholesky(S[np.ix_([i, j], [i, j])])
                u, v = L[0, 0] * z[:, None], L[1, 0] * z[:, None] + L[1, 1] * z[None, :]
                out[i, j] = np.sum(w[:, None] * w[None, :] * np.tanh(u) * np.tanh(v))
    return out


@pytest.mark.slow
def test_tutorial_tanh_numbers_match_gauss_hermite(built):
    page = (built / "tutorial.md").read_text()
    X = np.array([[1, 0], [0.6, 0.8], [-1, 0.5]])
    S1 = 2 * X @ X.T / 2 + 0.1
    truth = tanh_tanh(2 * tanh_tanh(S1) + 0.1)
    for command in ["eval tanh.tp", "eval tanh.tp --method series"]:
        value, error = printed(page, command)
        assert error < 1e-9
        np.testing.assert_allclose(value, truth, atol=2e-8)  # 8 significant digits are shown
    value, stderr = printed(page, "eval tanh.tp --method mc --samples 200000")
    assert 1e-4 < stderr < 1e-2 and np.max(np.abs(value - truth)) < 5 * stderr


@pytest.mark.slow
def test_index_and_theory_numbers_match_closed_forms(built):
    index = (built / "index.md").read_text()
    X = np.array([[1, 0], [0.6, 0.8], [-1, 0.5]])
    S = 2 * X @ X.T / 2
    for _ in range(2):  # E[erf(u) erf(v)] = (2/pi) asin(2c / sqrt((1 + 2a)(1 + 2b))), then Sigma = 2 E
        d = np.diag(S)
        E = 2 / np.pi * np.arcsin(2 * S / np.sqrt((1 + 2 * d[:, None]) * (1 + 2 * d[None, :])))
        S = 2 * E
    np.testing.assert_allclose(printed(index, "eval taste.tp")[0], E, atol=2e-8)

    theory = (built / "theory.md").read_text()
    assert abs(printed(theory, "eval stein.tp")[0] - 1 / math.sqrt(2 * math.pi)) < 1e-10
    prog = tensorprog.parse(ROOT / "examples" / "mlp_nngp.tp")
    X, c = prog.data["X"], prog.consts
    truth = relu_nngp(X, int(c["L"]), float(c["sw2"]), float(c["sb2"]))
    np.testing.assert_allclose(printed(theory, "eval examples/mlp_nngp.tp")[0], truth, rtol=2e-8, atol=1e-8)


@pytest.mark.slow
def test_generated_pages_have_their_parts(built):
    for page in gen.GENERATED_PAGES:
        assert (built / page).is_file(), page
    examples = sorted((ROOT / "examples").glob("*.tp"))
    for path in examples:
        text = (built / "cookbook" / f"{path.stem}.md").read_text()
        assert code_blocks(text, "tp")[0].rstrip() == path.read_text().rstrip()
        assert f"$ tpc check examples/{path.name}\nok: " in text
    index = (built / "cookbook" / "index.md").read_text()
    assert len(re.findall(r"^\| \[\w+\]\(\w+\.md\) \|", index, flags=re.M)) == len(examples)
    assert (built / "convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for page in built.rglob("*.md"):
        assert "<!--" not in page.read_text() and "```pyrun" not in page.read_text(), page


@pytest.mark.slow
def test_site_builds_strict(built, tmp_path):
    pytest.importorskip("mkdocs")
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config.update(docs_dir=str(built), site_dir=str(tmp_path / "site"), hooks=[str(DOCS / "hooks.py")])
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tmp_path / "mkdocs.yml")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for page in nav_pages(config["nav"]):
        assert (tmp_path / "site" / page.replace(".md", ".html")).is_file(), page
    for path in (ROOT / "examples").glob("*.tp"):
        assert (tmp_path / "site" / "cookbook" / f"{path.stem}.html").is_file()


@pytest.mark.slow
def test_cookbook_worker_runs_an_example(tmp_path):
    """The three commands of a cookbook page, as the build runs them, on the relu NNGP example."""
    import shutil

    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    done = gen.run_example("examples/mlp_nngp.tp", gen.Tools(tmp_path), budget=300)
    assert sorted(done) == ["derive", "eval", "simulate"]
    prog = tensorprog.parse(ROOT / "examples" / "mlp_nngp.tp")
    truth = relu_nngp(prog.data["X"], int(prog.consts["L"]), float(prog.consts["sw2"]), float(prog.consts["sb2"]))
    np.testing.assert_allclose(printed("$ tpc eval\n" + done["eval"], "eval")[0], truth, rtol=2e-8, atol=1e-8)
    widths = [int(line.split()[0]) for line in done["simulate"].splitlines() if re.match(r"\s+\d+\s", line)]
    assert widths == list(gen.SIMULATE_WIDTHS)
    assert "Zdot terms" not in done["derive"] and "closed form (relu)" in done["derive"]
