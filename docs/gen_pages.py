"""Generate the documentation site's sources into build/docs (the docs_dir of mkdocs.yml).

    python docs/gen_pages.py [--out DIR] [--budget SECONDS] && mkdocs build --strict

Every tool output shown in the documentation is produced here, by running ``tpc`` and the Python
API, so it cannot go stale.  The output directory receives:

* every hand-written page docs/*.md, with its directives replaced by what they produce;
* cli.md: the ``--help`` of ``tpc`` and of each sub-command;
* api.md: the public Python API, from the signatures and docstrings (``inspect``);
* cookbook/<example>.md for every examples/*.tp, and cookbook/index.md.

Directives of the hand-written pages, each on a line of its own:

    <!-- file: NAME -->            the ```tp block that follows is also written to NAME
    <!-- run: tpc ARGS | FILTER -->  run tpc, show "$ tpc ARGS" and its output (filters optional)
    <!-- include: PATH -->         the repository file PATH as a ```tp block
    <!-- readme: SECTION -->       the first code block of README.md's section "## SECTION"
    <!-- figure: NAME CAPTION -->  show the image NAME that an earlier command wrote
    <!-- generate: closed-forms -->  the table of closed-form expectations of the limit pass
    ```pyrun                       a Python block: shown as ```python, run, its output shown below

Filters keep part of an output and fail when they keep nothing, so that a change in the tools'
output format stops the build instead of emptying a page: ``section TITLE`` (the block of lines
that starts with a line beginning with TITLE), ``match REGEX`` (the entries of a block -- a line
with its more indented continuation lines -- that contain REGEX), ``head N``.

Commands run in a temporary work directory holding a copy of examples/.  Those of the
hand-written pages run in this process.  Each example of the cookbook runs in a subprocess of its
own (``--jobs`` at a time, while the hand-written pages are made), limited to ``--budget`` seconds:
``tpc derive``, ``tpc eval`` and the table of ``tpc simulate``, computed against the limit that
``tpc eval`` saved rather than evaluating it again.  A page says which of them did not finish in
time; a command that fails stops the build.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tensorprog
import tensorprog.simulate
from tensorprog import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKER = ".generated-by-gen_pages"
HELP_COLUMNS = "100"
SIMULATE_WIDTHS, SIMULATE_SEEDS = (64, 256, 1024), 10
RESULT_CLASSES = ["tensorprog.ir.program.Program", "tensorprog.limit.program.LimitProgram",
                  "tensorprog.numeric.results.Results", "tensorprog.numeric.results.OutputResult"]
GENERATED_PAGES = ("cli.md", "api.md", "cookbook/index.md")  # and cookbook/<example>.md
DIRECTIVE = re.compile(r"^<!-- (file|run|include|readme|figure|generate): (.*?) -->$")


def log(message: str) -> None:
    # sys.__stderr__: the commands run in this process redirect sys.stderr while other threads log.
    print(f"gen_pages: {message}", file=sys.__stderr__, flush=True)


class DocsError(Exception):
    """A page cannot be generated (a command failed, a filter selected nothing, ...)."""


# ---------------------------------------------------------------------------------- running tools

class Tools:
    """Runs ``tpc`` and Python snippets in a work directory and returns what they print."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.env = dict(os.environ, COLUMNS=HELP_COLUMNS,
                        PYTHONPATH=os.pathsep.join(filter(None, [str(Path(tensorprog.__file__).parents[1]),
                                                                 os.environ.get("PYTHONPATH")])))

    @contextlib.contextmanager
    def _captured(self):
        out, err, cwd = io.StringIO(), io.StringIO(), os.getcwd()
        os.chdir(self.workdir)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                yield out, err
        finally:
            os.chdir(cwd)

    def tpc(self, args: list[str]) -> str:
        """``tpc ARGS`` in this process (the commands of the hand-written pages: fast, unlimited)."""
        with self._captured() as (out, err):
            try:
                status = cli.main(args)
            except SystemExit as e:  # --help exits through argparse
                status = e.code
        if status not in (0, None):
            raise DocsError(f"tpc {shlex.join(args)} failed (status {status}):\n{err.getvalue()}")
        return out.getvalue()

    def python(self, code: str, namespace: dict) -> str:
        """Run a ```pyrun block (in the page's namespace) and return what it prints."""
        with self._captured() as (out, _):
            try:
                exec(compile(code, "<docs>", "exec"), namespace)
            except Exception as e:
                raise DocsError(f"this block failed with {type(e).__name__}: {e}\n{code}") from e
        return out.getvalue()


# ---------------------------------------------------------------------------------- output filters

def blocks(text: str) -> list[list[str]]:
    """The blank-line separated blocks of a tool's output."""
    return [b.splitlines() for b in re.split(r"\n\s*\n", text.strip("\n")) if b.strip()]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def entries(block: list[str]) -> tuple[list[str], list[list[str]]]:
    """(title lines, entries): an entry is a line at the block's smallest indentation of its
    indented lines, with the more indented lines that continue it."""
    title = [line for line in block[:1] if _indent(line) == 0 and len(block) > 1]
    body = block[len(title):]
    base = min((_indent(line) for line in body), default=0)
    groups = []
    for line in body:
        if _indent(line) <= base or not groups:
            groups.append([line])
        else:
            groups[-1].append(line)
    return title, groups


def apply_filter(text: str, name: str, arg: str) -> str:
    if name == "section":
        chosen = [b for b in blocks(text) if b[0].lstrip().startswith(arg)]
        if not chosen:
            raise DocsError(f"no section '{arg}' in:\n{text}")
        return "\n".join(chosen[0])
    if name == "match":
        out = []
        for block in blocks(text):
            title, groups = entries(block)
            kept, skipped = [], False
            for g in groups:
                if re.search(arg, "\n".join(g)):
                    if skipped and kept:
                        kept.append(" " * _indent(g[0]) + "...")
                    kept.extend(g)
                    skipped = False
                else:
                    skipped = True
            if kept:
                out.append("\n".join(title + kept))
        if not out:
            raise DocsError(f"nothing matches '{arg}' in:\n{text}")
        return "\n\n".join(out)
    if name == "head":
        return clip(text, int(arg))
    raise DocsError(f"unknown filter '{name}'")


def clip(text: str, max_lines: int) -> str:
    """The first ``max_lines`` lines, and how many were left out."""
    lines = text.rstrip("\n").splitlines()
    if len(lines) <= max_lines:
        return "\n".join(lines)
    return "\n".join(lines[:max_lines] + [f"... ({len(lines) - max_lines} more lines)"])


def clip_blocks(text: str, limits: dict, default: int) -> str:
    """Each block cut, at an entry boundary, to the limit of the first key its first line starts with."""
    out = []
    for block in blocks(text):
        limit = next((n for key, n in limits.items() if block[0].lstrip().startswith(key)), default)
        if len(block) <= limit:
            out.append("\n".join(block))
            continue
        title, groups = entries(block)
        kept = list(title)
        for g in groups:
            if len(kept) + len(g) > limit:
                break
            kept.extend(g)
        out.append("\n".join(kept + [f"  ... ({len(block) - len(kept)} more lines)"]))
    return "\n\n".join(out)


def fence(lang: str, body: str) -> str:
    return f"```{lang}\n{body.rstrip()}\n```"


def shown(args: list[str], output: str, excerpt: bool = False) -> str:
    """A command and its output as a text block."""
    note = "    # excerpt" if excerpt else ""
    return fence("text", f"$ tpc {shlex.join(args)}{note}\n{output.rstrip()}")


# ---------------------------------------------------------------------------------- hand-written pages

def render_page(text: str, tools: Tools, out_dir: Path, page: str) -> str:
    """A hand-written page with its directives and ```pyrun blocks replaced by their results."""
    lines, out, namespace, i = text.splitlines(), [], {"__name__": "__docs__"}, 0
    pending_file = None
    while i < len(lines):
        line = lines[i]
        m = DIRECTIVE.match(line.strip())
        if line.startswith("```"):
            j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("```")), None)
            if j is None:
                raise DocsError(f"{page}:{i + 1}: unclosed code block")
            body = "\n".join(lines[i + 1:j])
            if pending_file:
                (tools.workdir / pending_file).write_text(body + "\n")
                pending_file = None
            if line.strip() == "```pyrun":
                output = tools.python(body, namespace)
                out.append(fence("python", body))
                if output.strip():
                    out.append(fence("text", output))
            else:
                out.extend(lines[i:j + 1])
            i = j + 1
            continue
        if pending_file:
            raise DocsError(f"{page}: 'file: {pending_file}' is not followed by a code block")
        if not m:
            out.append(line)
        elif m.group(1) == "file":
            pending_file = m.group(2).strip()
        elif m.group(1) == "run":
            out.append(run_directive(m.group(2), tools))
        elif m.group(1) == "include":
            out.append(fence("tp", (ROOT / m.group(2).strip()).read_text()))
        elif m.group(1) == "readme":
            out.append(readme_block(m.group(2).strip()))
        elif m.group(1) == "generate":
            out.append(GENERATORS[m.group(2).strip()]())
        else:
            name, _, caption = m.group(2).strip().partition(" ")
            shutil.copy(tools.workdir / name, out_dir / name)
            out.append(f"![{caption}]({name})")
        i += 1
    return "\n".join(out) + "\n"


def run_directive(spec: str, tools: Tools) -> str:
    words = shlex.split(spec)
    parts, current = [], []
    for w in words + ["|"]:
        if w == "|":
            parts.append(current)
            current = []
        else:
            current.append(w)
    command, filters = parts[0], parts[1:]
    if command[:1] != ["tpc"]:
        raise DocsError(f"run: only tpc commands, got '{spec}'")
    output = tools.tpc(command[1:])
    for f in filters:
        output = apply_filter(output, f[0], " ".join(f[1:]))
    return shown(command[1:], output, excerpt=bool(filters))


def readme_block(section: str) -> str:
    readme = (ROOT / "README.md").read_text()
    m = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", readme, flags=re.S | re.M)
    block = m and re.search(r"^```\S*\n.*?^```$", m.group(1), flags=re.S | re.M)
    if not block:
        raise DocsError(f"README.md has no code block in section '{section}'")
    return block.group(0)


def closed_forms_table() -> str:
    """The closed-form Gaussian expectations the limit pass knows, from its own rule table."""
    from tensorprog.limit.closed_forms import closed_form_rules

    rules = [(k, v) for k, v in closed_form_rules().items() if k.startswith("E[")]
    if not rules:
        raise DocsError("closed_form_rules() lists no expectations")
    rows = ["| expectation | closed form |", "|---|---|"]
    rows += [f"| `{k}` | `{v}` |" for k, v in rules]
    return ("One variable: u ~ N(m, s), z = m / sqrt(s), phi and Phi the standard normal density and "
            "distribution function. Two variables: u, v centred with variances a, b and covariance c, "
            "rho = c / sqrt(ab), t = arccos(rho).\n\n" + "\n".join(rows))


GENERATORS = {"closed-forms": closed_forms_table}


# ---------------------------------------------------------------------------------- cli.md

def cli_page(tools: Tools) -> str:
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    out = ["# Command line: `tpc`", "",
           "This page is generated from `tpc --help` and `tpc COMMAND --help`. Every command takes a "
           "`.tp` file and `-D NAME=VALUE` overrides of its constants; see the [tutorial](tutorial.md) "
           "for what the outputs mean.", "", shown(["--help"], tools.tpc(["--help"]))]
    for name in commands:
        out += ["", f"## `tpc {name}`", "", shown([name, "--help"], tools.tpc([name, "--help"]))]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------- api.md

def doc_markdown(doc: str | None) -> str:
    """A reStructuredText-flavoured docstring as Markdown: roles and ``literals`` become code,
    ``::`` blocks and indented blocks become fenced text blocks, and outside code the characters
    Markdown would take as emphasis or HTML are escaped."""
    if not doc:
        return ""
    doc = inspect.cleandoc(doc)
    doc = re.sub(r":\w+:`~?(?:[\w.]*\.)?([\w]+)`", r"``\1``", doc)
    out, code = [], []

    def flush():
        if code:
            out.append(fence("text", inspect.cleandoc("\n".join(code))))
            out.append("")
            code.clear()

    prev_blank = True
    for line in doc.splitlines():
        if line.startswith("    ") and (code or prev_blank):
            code.append(line)
            continue
        if code and not line.strip():
            code.append(line)
            continue
        flush()
        out.append(_escape_prose(re.sub(r"::$", ":", line)))
        prev_blank = not line.strip()
    flush()
    return "\n".join(out).strip()


def _escape_prose(line: str) -> str:
    parts = re.split(r"(``.*?``)", line)
    for k, part in enumerate(parts):
        if k % 2:
            parts[k] = "`" + part[2:-2] + "`"
        else:
            parts[k] = part.replace("\\", "\\\\").replace("*", "\\*").replace("<", "&lt;").replace("_", "\\_")
    return "".join(parts)


def _signature(name: str, obj) -> str:
    try:
        sig = f"{name}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        return name
    # Postponed annotations (from __future__ import annotations) print as strings: unquote them.
    return re.sub(r"(->|:) '([^']*)'", r"\1 \2", sig)


def _resolve(path: str):
    module, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def function_entry(qualname: str, obj) -> list[str]:
    return [f"### `{qualname}`", "", fence("python", _signature(qualname, obj)), "",
            doc_markdown(inspect.getdoc(obj)), ""]


def class_entry(qualname: str, cls) -> list[str]:
    out = [f"### `{qualname}`", "", doc_markdown(inspect.getdoc(cls)), ""]
    fields = getattr(cls, "__dataclass_fields__", None)
    if fields:
        out += ["Fields: " + ", ".join(f"`{f}`" for f in fields) + ".", ""]
    for name, member in vars(cls).items():
        if name.startswith("_") and name != "__getitem__":
            continue
        if isinstance(member, (property, staticmethod, classmethod)) or callable(member) or \
                type(member).__name__ == "cached_property":
            target = getattr(member, "fget", None) or getattr(member, "func", None) or \
                getattr(member, "__func__", None) or member
            if isinstance(member, property) or type(member).__name__ == "cached_property":
                doc = doc_markdown(inspect.getdoc(target))
                out += [f"- `{name}` (property)" + (": " + doc.replace("\n", "\n  ") if doc else "")]
            else:
                sig = _signature(name, target).replace("(self, ", "(").replace("(self)", "()")
                doc = doc_markdown(inspect.getdoc(target))
                out += [f"- `{sig}`" + (": " + doc.replace("\n", "\n  ") if doc else "")]
    out.append("")
    return out


def api_page() -> str:
    out = ["# Python API", "",
           "Generated from the signatures and docstrings of the package. The names below are "
           "`tensorprog.__all__`, the public names of `tensorprog.simulate`, and the classes those "
           "functions return. The [tutorial](tutorial.md#the-same-from-python) shows them at work.", "",
           doc_markdown(inspect.getdoc(tensorprog)), "", "## `tensorprog`", ""]
    for name in tensorprog.__all__:
        obj = getattr(tensorprog, name)
        if name == "__version__":
            out += ["### `tensorprog.__version__`", "", f"The version string, currently `{obj}`.", ""]
        elif name == "simulate":
            out += ["### `tensorprog.simulate`", "",
                    "A module that is also callable: `tensorprog.simulate(program, width, seeds)` is "
                    "`tensorprog.simulate.simulate`. Its contents are listed "
                    "[below](#the-tensorprogsimulate-package).", ""]
        elif name == "scaling":
            out += ["### `tensorprog.scaling`", "",
                    "A module that is also callable: `tensorprog.scaling(program)` is "
                    "`tensorprog.scaling.scaling` ([Is my parametrization right?](scaling.md)).", ""]
            out += function_entry("tensorprog.scaling.scaling", tensorprog.scaling.scaling)
            out += class_entry("tensorprog.scaling.ScalingReport", tensorprog.scaling.ScalingReport)
        elif inspect.isclass(obj):
            out += class_entry(f"tensorprog.{name}", obj)
        else:
            out += function_entry(f"tensorprog.{name}", obj)
    out += ["## Result classes", ""]
    for path in RESULT_CLASSES:
        out += class_entry(path, _resolve(path))
    out += ["## The `tensorprog.simulate` package", "", doc_markdown(inspect.getdoc(tensorprog.simulate)), ""]
    for name in tensorprog.simulate.__all__:
        obj = getattr(tensorprog.simulate, name)
        qual = f"tensorprog.simulate.{name}"
        out += class_entry(qual, obj) if inspect.isclass(obj) else function_entry(qual, obj)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------- cookbook

DERIVE_LIMITS = {"limit of": 3, "random variables": 16, "Zdot terms": 24, "quantities": 30, "outputs": 12}
STEPS = ("derive", "eval", "simulate")


def example_worker(rel: str, into: Path) -> int:
    """Run in a subprocess per example: ``tpc derive``, ``tpc eval`` (which also saves the limit), and
    the convergence table of ``tpc simulate`` computed against that saved limit (so the limit is not
    evaluated twice).  Each result is written to ``into`` as soon as it exists, so a run stopped by
    the budget keeps what it finished."""
    import numpy as np

    from tensorprog.simulate import convergence

    def save(step, text):
        (into / f"{step}.tmp").write_text(text)
        (into / f"{step}.tmp").replace(into / f"{step}.txt")

    def tpc(args):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(args)
        if status != 0:
            sys.stderr.write(err.getvalue())
            raise SystemExit(status)
        return out.getvalue()

    save("derive", tpc(["derive", rel]))
    save("eval", tpc(["eval", rel, "--out", saved_limit(rel)]))
    arrays = np.load(saved_limit(rel))
    prog = tensorprog.parse(rel)
    limit = {o.name: argparse.Namespace(value=arrays[o.name], error=arrays[o.name + "_error"])
             for o in prog.outputs}
    conv = convergence(prog, SIMULATE_WIDTHS, SIMULATE_SEEDS, limit=limit)
    save("simulate", conv.table() + "\n")
    return 0


def saved_limit(rel: str) -> str:
    """Where the worker's ``tpc eval --out`` writes (in the shared work directory, one name per example)."""
    return f"{Path(rel).stem}.npz"


def run_example(rel: str, tools: Tools, budget: float) -> dict:
    """step -> output of the steps that finished within ``budget`` seconds."""
    if budget <= 0:
        return {}
    with tempfile.TemporaryDirectory(prefix="tp-example-") as into:
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, __file__, "--worker", rel, "--into", into], cwd=tools.workdir,
                                  env=tools.env, capture_output=True, text=True, timeout=budget)
            if proc.returncode != 0:
                raise DocsError(f"{rel}:\n{proc.stderr}")
            note = f"{time.perf_counter() - t0:.1f} s"
        except subprocess.TimeoutExpired:
            note = f"stopped after {budget:g} s"
        done = {step: (Path(into) / f"{step}.txt").read_text() for step in STEPS
                if (Path(into) / f"{step}.txt").exists()}
    log(f"{rel}: {', '.join(done) or 'nothing'} in {note}")
    return done


def header_lines(source: str) -> list[str]:
    lines = []
    for line in source.splitlines():
        if not line.startswith("#"):
            break
        lines.append((line[2:] if line.startswith("# ") else line[1:]).rstrip())
    return lines


def first_sentence(head: list[str]) -> str:
    """The header's opening sentence: its unindented first lines, up to a full stop (not that of an
    abbreviation such as e.g.) or a line ending in a colon."""
    words = []
    for line in head:
        if not line.strip() or (words and line[:1].isspace()):
            break
        words.append(line.strip())
        if line.endswith((".", ":")):
            break
    text = " ".join(words)
    m = re.match(r"(.*?[^.\s]{2}\.)(\s|$)", text)
    return m.group(1) if m else text.rstrip(":")


def program_facts(path: Path) -> list[str]:
    """The constants, data sets and outputs of a program, as the compiler sees them."""
    prog = tensorprog.parse(path)
    out = ["| kind | name | value / shape |", "|---|---|---|"]
    out += [f"| constant | `{k}` | `{v}` (override: `-D {k}=...`) |" for k, v in prog.consts.items()]
    out += [f"| data | `{k}` | {' x '.join(map(str, v.shape))} |" for k, v in prog.data.items()]
    out += [f"| output | `{o.name}` | {' x '.join(map(str, o.array_shape)) or 'scalar'} |" for o in prog.outputs]
    return out


def cookbook_page(path: Path, tools: Tools, done: dict, budget: float) -> tuple[str, str]:
    """(page text, one-line description) of one example, from the outputs of its worker."""
    rel = f"examples/{path.name}"
    source = path.read_text()
    head = header_lines(source)
    summary = first_sentence(head) or path.stem
    sim_command = f"tpc simulate {rel} --widths {','.join(map(str, SIMULATE_WIDTHS))} --seeds {SIMULATE_SEEDS}"
    out = [f"# {path.stem}", "", _escape_prose(summary), ""]
    if head:
        out += ["The header of the program says what it computes and what to expect:", "",
                fence("text", "\n".join(head)), ""]
    out += ["## The program", "", fence("tp", source), "",
            "What the compiler sees (constants can be changed from the command line with `-D`, see the "
            "[language reference](../language.md#const-named-numbers)):", "", *program_facts(path), "",
            shown(["check", rel], tools.tpc(["check", rel])), "",
            "## The derived limit", "",
            "The random variables Z of the program's vectors, the correction terms of transposes (Zdot) "
            "when there are any, and the deterministic quantities in evaluation order; the "
            "[theory page](../theory.md#reading-tpc-derive) explains how to read it. Long sections are "
            "cut; run the command for the whole derivation.", ""]
    out += [shown(["derive", rel], clip_blocks(done["derive"], DERIVE_LIMITS, 20)) if "derive" in done
            else not_run(f"tpc derive {rel}", budget), "", "## Numbers", ""]
    out += [shown(["eval", rel, "--out", saved_limit(rel)], clip(done["eval"], 40)) if "eval" in done
            else not_run(f"tpc eval {rel}", budget), "", "## Finite width", ""]
    if "simulate" in done:
        out += [f"The program run at widths {', '.join(map(str, SIMULATE_WIDTHS))}, {SIMULATE_SEEDS} seeds "
                f"each, against the limit above: the table `{sim_command}` prints (see "
                "[simulation](../simulate.md#statistics) for the statistics). Larger widths and more seeds "
                "make the comparison sharper.", "", fence("text", clip(done["simulate"], 40)), ""]
    else:
        out += [not_run(sim_command, budget), ""]
    return "\n".join(out), summary


def not_run(command: str, budget: float) -> str:
    return (f"*Not run while building this page (the build gives each example {budget:g} s).* "
            f"Run `{command}` to see it.")


def cookbook(tools: Tools, out_dir: Path, budget: float, jobs: int, render_meanwhile) -> None:
    """The cookbook pages; ``render_meanwhile()`` runs in this thread while the examples run."""
    (out_dir / "cookbook").mkdir()
    paths = sorted((ROOT / "examples").glob("*.tp"))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(run_example, f"examples/{p.name}", tools, budget) for p in paths]
        render_meanwhile()
        failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:  # every failing example at once, not just the first
        raise DocsError("\n".join(map(str, failed)))
    results = [f.result() for f in futures]
    rows = []
    for path, done in zip(paths, results):
        text, summary = cookbook_page(path, tools, done, budget)
        (out_dir / "cookbook" / f"{path.stem}.md").write_text(text)
        rows.append(f"| [{path.stem}]({path.stem}.md) | {_escape_prose(summary).replace('|', chr(92) + '|')} |")
    index = ["# Cookbook", "",
             "One page per program of `examples/`: the program and its header, what the compiler sees, the "
             "derived limit (`tpc derive`), its numbers (`tpc eval`) and a short finite-width check "
             "(`tpc simulate`). The pages are generated from the examples each time the site is built.", "",
             "| example | what it computes |", "|---|---|", *rows]
    (out_dir / "cookbook" / "index.md").write_text("\n".join(index) + "\n")


# ---------------------------------------------------------------------------------- main

def prepare(out_dir: Path) -> None:
    """An empty output directory; an existing one is removed only if this script made it."""
    if out_dir.exists():
        if any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
            raise DocsError(f"{out_dir} exists and was not made by gen_pages.py; not touching it")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / MARKER).write_text("")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "docs", help="output directory")
    ap.add_argument("--budget", type=float, default=40.0,
                    help="seconds allowed to each example of the cookbook (0: run none of them)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="examples run at the same time")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--into", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return example_worker(args.worker, args.into)
    os.environ["COLUMNS"] = HELP_COLUMNS  # argparse wraps --help to the terminal width
    t0 = time.perf_counter()
    try:
        prepare(args.out)
        with tempfile.TemporaryDirectory(prefix="tp-docs-") as work:
            workdir = Path(work)
            shutil.copytree(ROOT / "examples", workdir / "examples")
            tools = Tools(workdir)

            def hand_written_pages():
                for src in sorted(DOCS.glob("*.md")):
                    t1 = time.perf_counter()
                    (args.out / src.name).write_text(render_page(src.read_text(), tools, args.out, src.name))
                    log(f"{src.name} ({time.perf_counter() - t1:.1f} s)")
                (args.out / "cli.md").write_text(cli_page(tools))
                (args.out / "api.md").write_text(api_page())

            cookbook(tools, args.out, args.budget, args.jobs, hand_written_pages)
    except DocsError as e:
        log(f"error: {e}")
        return 1
    log(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
