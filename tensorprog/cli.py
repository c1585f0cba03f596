"""The ``tpc`` command line: check, graph, derive, eval and simulate Tensor Programs."""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import traceback
import warnings

from . import __version__
from .errors import TPError

EPILOG = """examples:
  tpc check examples/mlp_nngp.tp
  tpc graph examples/mlp_ntk.tp --format dot | dot -Tpng > ntk.png
  tpc check examples/mlp_nngp.tp -D L=5 -D sw2=1.5

Exit status: 0 on success, 2 for an error in the program or the command line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"tpc: error: {message}", file=sys.stderr)
        sys.exit(2)


def _common(p):
    p.add_argument("program", help="a .tp file")
    p.add_argument("-D", dest="defines", action="append", default=[], metavar="NAME=VALUE",
                   help="override a const of the program (repeatable)")
    p.add_argument("--limit", dest="limits", action="append", default=[], metavar="NAME=N",
                   help="raise a front-end limit, e.g. unroll=500000 or source_lines=100000 (repeatable; "
                        "see the language reference, Limits)")


def _latex_or_json(p, latex_help, json_help):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--latex", action="store_true", help=latex_help)
    g.add_argument("--json", action="store_true", help=json_help)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="tpc", description="Compile Tensor Programs and compute their infinite-width limits.",
                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"tpc (tensorprog) {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("check", help="parse and type-check a program; print a summary",
                       description="Parse and type-check a program, print 'ok' and its instruction counts.")
    _common(p)
    p.add_argument("--list", action="store_true", help="also print the instruction listing")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("graph", help="print the dataflow graph (text, dot or json)",
                       description="Print the dataflow graph of the instructions the outputs need.")
    _common(p)
    p.add_argument("--format", choices=["text", "dot", "json"], default="text")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("derive", help="derive the infinite-width limit symbolically",
                       description="Derive the limit (Master Theorem): the random variables Z, the Zdot "
                                   "terms of transposes, and the deterministic quantities in evaluation "
                                   "order, each with the program variable and line it comes from.")
    _common(p)
    _latex_or_json(p, "print LaTeX (an align* block)", "print the full structure as JSON")
    p.set_defaults(func=cmd_derive)

    p = sub.add_parser("eval", help="evaluate the infinite-width limit numerically",
                       description="Evaluate every output of the limit, with its error estimate (or Monte "
                                   "Carlo standard error) and the method that produced it.")
    _common(p)
    p.add_argument("--method", choices=["auto", "closed", "series", "quad", "mc", "sampled"], default="auto",
                   help="how to evaluate expectations without a closed form (default: auto); 'sampled': "
                        "skip the derivation and sample the limit's Z directly (Monte Carlo of the Master "
                        "Theorem, for programs too large to derive, e.g. several training steps)")
    p.add_argument("--samples", type=int, default=None,
                   help="Monte Carlo samples per expectation (default 2^20), or draws in total for --method "
                        "sampled (default 2^18)")
    p.add_argument("--seed", type=int, default=0, help="Monte Carlo seed (results do not depend on --threads)")
    p.add_argument("--threads", type=int, default=None, help="numba threads (default: all cores)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--out", metavar="FILE", help="also write the results to FILE.npz or FILE.json; or evaluate "
                                                 "out of core, tile by tile, into the zarr store FILE.zarr "
                                                 "(docs/large.md)")
    p.add_argument("--memory", metavar="SIZE", help="with --out STORE.zarr: the memory budget, e.g. 2G (default: "
                                                    "half of the available memory)")
    p.add_argument("--chunk", type=int, metavar="POINTS", help="with --out STORE.zarr: the tile side (default: the "
                                                               "largest that fits --memory)")
    p.add_argument("--resume", action="store_true", help="with --out STORE.zarr: continue an interrupted run, "
                                                         "computing only the tiles not yet finished")
    p.add_argument("--scheduler", metavar="ADDRESS", help="with --out STORE.zarr: run the tiles on Dask: 'local' "
                                                          "(a LocalCluster, one worker per core) or tcp://HOST:PORT")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("simulate", help="run the program at finite widths and compare with the limit",
                       description="Run the program literally at each width (several seeds) and compare "
                                   "with the infinite-width limit: per width and output, the RMS deviation "
                                   "of single-seed values from the limit (+- its uncertainty), the largest "
                                   "|mean - limit| / SE over the entries with the mean +- SE there, and the "
                                   "fitted exponent of the RMS deviation against width (about -1/2).")
    _common(p)
    p.add_argument("--widths", default="256,1024,4096", metavar="N1,N2,...",
                   help="widths n, comma-separated (default 256,1024,4096)")
    p.add_argument("--seeds", type=int, default=None,
                   help="independent runs per width (default 20; 5 with --coord-check)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--plot", metavar="FILE", help="write a log-log plot of RMS deviation against width "
                                                  "(with --coord-check: of RMS sizes and changes against width)")
    p.add_argument("--json", action="store_true", help="print every statistic as JSON")
    p.add_argument("--coord-check", action="store_true",
                   help="the empirical coordinate check of a program with gd(...): RMS size of every vector "
                        "and of its change after each step against width, fitted slopes beside the static "
                        "exponents of `tpc scaling` (docs/scaling.md); default --seeds 5")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("scaling", help="width exponents of every value at initialisation and after each step: "
                                       "is the parametrization stable, in the kernel regime, feature learning?",
                       description="Static coordinate check (Tensor Programs IV): for each training gd(...) of "
                                   "the program, the exponent k of Theta(n^k) of every vector and scalar at "
                                   "initialisation and of its change after each step, from the output's scale "
                                   "and the parameters' rates, and a verdict: unstable (naming the value, its "
                                   "line and the step), trivial, kernel regime or feature learning. Nothing "
                                   "is trained. Scalars may depend on the width here (sqrt(n) * mean(...), "
                                   "rates like n, gd's scale = n^a).")
    _common(p)
    _latex_or_json(p, "print LaTeX tables", "print the report as JSON")
    p.set_defaults(func=cmd_scaling)

    p = sub.add_parser("predict", help="predictions of the infinite network: NNGP posterior, NTK gradient flow",
                       description="Evaluate the program's kernels (outputs NNGP and/or NTK) on the train and "
                                   "test points (the program reads its points with one data X = "
                                   "load(\"points.npy\")) and print the NTK gradient-flow or NNGP predictions "
                                   "at the given training times, with train/test MSE and, for one-hot labels, "
                                   "accuracy. See docs/predict.md.")
    _common(p)
    p.add_argument("--train", required=True, metavar="X.npy,Y.npy", help="training points and labels (.npy/.csv)")
    p.add_argument("--test", required=True, metavar="X.npy", help="test points (.npy/.csv)")
    p.add_argument("--test-labels", metavar="Y.npy", help="test labels, for the test MSE and accuracy")
    p.add_argument("--kernel", choices=["nngp", "ntk"], default="ntk",
                   help="ntk: gradient flow of the whole network; nngp: readout-only flow, or with --noise the "
                        "Bayesian posterior (default ntk)")
    p.add_argument("--times", default="inf", metavar="T1,T2,...", help="training times, 'inf' allowed (default inf)")
    p.add_argument("--noise", type=float, default=0.0, help="diagonal noise / ridge sigma^2 (default 0)")
    p.add_argument("--learning-rate", type=float, default=1.0, help="gradient-flow learning rate eta (default 1)")
    p.add_argument("--diag-reg", type=float, default=None,
                   help="regulariser: add DIAG_REG * mean(diag K) to a singular train kernel's diagonal")
    p.add_argument("--nngp-output", default="NNGP", help="name of the NNGP kernel output (default NNGP)")
    p.add_argument("--ntk-output", default="NTK", help="name of the NTK output (default NTK)")
    p.add_argument("--learning-curve", metavar="N1,N2,...",
                   help="training-set sizes (first N points of --train); the kernel is computed once")
    p.add_argument("--plot", metavar="FILE", help="with --learning-curve: write a plot of the test metrics")
    p.set_defaults(func=cmd_predict)
    return ap


def load_program(args, **options):
    from .frontend.limits import parse_limit
    from .frontend.load import parse, parse_define

    limits = dict(parse_limit(text) for text in args.limits)
    defines = dict(parse_define(d) for d in args.defines)
    # always a path on the command line: '.', /dev/zero or a FIFO are refused as files, never read as text
    return parse(pathlib.Path(args.program), defines=defines, limits=limits, **options)


# Monte Carlo streams its samples (memory does not grow with them) but time does: about a second per
# 10^8 samples and expectation on this class of machine, so 10^10 is already minutes per expectation.
MAX_SAMPLES = 10**10
MAX_SEED = 2**63
MAX_WIDTH = 10**7
MAX_SEEDS = 100_000


def _check_range(value, lo, hi, option, what=""):
    from .errors import error

    if not lo <= value <= hi:
        raise error(None, f"{option} must be between {lo} and {hi}{what}, got {value}")


def check_output_path(path, suffixes, option):
    """Refuse, before any work, an output path tpc could not write: a directory, a missing or
    unwritable parent directory, or an extension it cannot produce."""
    from .errors import error

    if not path.lower().endswith(tuple(suffixes)):
        raise error(None, f"{option} {path}: the file name must end in {' or '.join(suffixes)}")
    if os.path.isdir(path):
        raise error(None, f"{option} {path}: is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise error(None, f"{option} {path}: the directory {parent} does not exist")
    try:        # the honest test: create (and remove) a file there, as the atomic write will
        with tempfile.TemporaryFile(dir=parent):
            pass
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise PermissionError(path)
    except OSError:
        raise error(None, f"{option} {path}: not writable") from None


def cmd_check(args):
    prog = load_program(args)
    print(f"ok: {prog.source.name}: {prog.summary()}")
    if args.list:
        print(prog)
    return 0


def cmd_graph(args):
    prog = load_program(args)
    print({"text": prog.to_text, "dot": prog.to_dot, "json": prog.to_json}[args.format]())
    return 0


def cmd_derive(args):
    from .limit.derive import derive

    limit = derive(load_program(args))
    print(limit.latex() if args.latex else limit.to_json() if args.json else limit)
    return 0


def cmd_simulate(args):
    from .errors import error
    from .simulate import convergence

    try:
        widths = [int(w) for w in args.widths.split(",")]
    except ValueError:
        raise error(None, f"--widths expects comma-separated integers, got '{args.widths[:60]}'") from None
    if args.seeds is None:
        args.seeds = 5 if args.coord_check else 20
    if min(widths) < 1 or args.seeds < 2:
        raise error(None, "widths must be positive and --seeds at least 2 (standard errors need two runs)")
    _check_range(max(widths), 1, MAX_WIDTH, "each width")
    _check_range(args.seeds, 2, MAX_SEEDS, "--seeds")
    _check_range(args.seed, 0, MAX_SEED - 1, "--seed")
    if args.plot:
        from .simulate.plot import plot_formats

        check_output_path(args.plot, plot_formats(), "--plot")
    if args.coord_check:
        return _coord_check(args, widths)
    conv = convergence(load_program(args), widths, args.seeds, seed=args.seed, progress=True)
    print(conv.to_json() if args.json else conv.table())
    if args.plot:
        from .simulate.plot import plot_convergence

        plot_convergence(conv, args.plot)
    return 0


def _coord_check(args, widths):
    from .scaling.coordcheck import coord_check

    check = coord_check(load_program(args, coord_check=True), widths, seeds=args.seeds, seed=args.seed,
                        progress=True)
    print(check.to_json() if args.json else check.table())
    if args.plot:
        check.plot(args.plot)
    return 0


def cmd_scaling(args):
    from .scaling import scaling

    report = scaling(load_program(args, width_dependent=True))
    print(report.to_json() if args.json else report.to_latex() if args.latex else report.to_text())
    return 0


def cmd_eval(args):
    import time

    from .errors import error
    from .limit.derive import derive
    from .numeric.evaluate import evaluate

    if args.samples is not None and args.samples <= 0:
        raise error(None, "--samples must be positive")
    if args.samples is not None:
        _check_range(args.samples, 2, MAX_SAMPLES, "--samples", " (a standard error needs two samples)")
    _check_range(args.seed, 0, MAX_SEED - 1, "--seed")
    if args.threads is not None:
        _check_range(args.threads, 1, 4096, "--threads")
    store = bool(args.out) and args.out.rstrip("/").endswith(".zarr")
    if not store and (args.memory or args.chunk or args.resume or args.scheduler):
        raise error(None, "--memory, --chunk, --resume and --scheduler go with --out STORE.zarr")
    if args.out and not store:
        check_output_path(args.out, (".npz", ".json"), "--out")
    t0 = time.perf_counter()
    program = load_program(args)
    from .numeric.evaluate import SAMPLE_FROM_STEPS
    if args.method == "auto" and program.training_steps >= SAMPLE_FROM_STEPS:
        print(f"note: {program.training_steps} training steps: sampling the limit (--method sampled); "
              "--method quad or mc derives and integrates it instead (slow)", file=sys.stderr)
        args.method = "sampled"
    limit = program if args.method == "sampled" else derive(program)
    if store:
        if args.method == "sampled":
            raise error(None, "--out STORE.zarr needs a derived limit; --method sampled is not evaluated in tiles")
        from .numeric.outofcore import run_cli

        return run_cli(args, limit)
    res = evaluate(limit, method=args.method, samples=args.samples, seed=args.seed, threads=args.threads,
                   progress=True)
    if args.out:
        try:
            res.save(args.out)
        except OSError as e:
            raise error(None, f"--out {args.out}: cannot write ({e.strerror or e})") from None
    if args.json:
        print(res.to_json())
    else:
        n = len(res.outputs)
        how = "sampled" if args.method == "sampled" else "derived and evaluated"
        print(f"{program.source.name}: {n} output{'s' if n != 1 else ''} "
              f"({how} in {time.perf_counter() - t0:.2f} s)\n")
        print(res.format())
    return 0


def _format_warning(message, category, filename, lineno, line=None):
    return f"tpc: warning: {message}\n"


def _number_list(text, what, convert):
    from .errors import error

    try:
        return [convert(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise error(None, f"{what}: expected comma-separated numbers, got '{text}'") from None


def cmd_predict(args):
    import warnings

    from .errors import error
    from .frontend.load import parse_define
    from .predict_program import predict

    parts = args.train.split(",")
    if len(parts) != 2:
        raise error(None, "--train takes two files: X_train.npy,y_train.npy")
    times = _number_list(args.times, "--times", float)
    if args.plot:
        if not args.learning_curve:
            raise error(None, "--plot needs --learning-curve")
        from .simulate.plot import plot_formats

        check_output_path(args.plot, plot_formats(), "--plot")
    defines = dict(parse_define(d) for d in args.defines)
    common = dict(y_test=args.test_labels, times=times, kernel=args.kernel, noise=args.noise,
                  learning_rate=args.learning_rate, diag_reg=args.diag_reg, defines=defines,
                  nngp_output=args.nngp_output, ntk_output=args.ntk_output)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.learning_curve:
            from .predict_curve import learning_curve

            sizes = _number_list(args.learning_curve, "--learning-curve", int)
            curve = learning_curve(args.program, parts[0], parts[1], args.test, sizes, **common)
            print(curve.summary())
            if args.plot:
                curve.plot(args.plot)
        else:
            print(predict(args.program, parts[0], parts[1], args.test, **common).summary())
    for w in caught:
        print(f"tpc: warning: {w.message}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    warnings.formatwarning = _format_warning     # one line, no source excerpt of tensorprog's code
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except TPError as e:
        print(e.report(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tpc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except MemoryError as e:  # a resource limit, not a bug: the estimates before large steps missed it
        print(f"tpc: error: out of memory ({e}); the program's data or width is too large for the memory "
              "available", file=sys.stderr)
        return 2
    except Exception:  # an internal error, not the user's: say so, keep the trace for bug reports
        if os.environ.get("TPC_DEBUG"):
            traceback.print_exc()
        else:
            etype, value = sys.exc_info()[:2]
            print(f"tpc: internal error ({etype.__name__}: {value}); rerun with TPC_DEBUG=1 for a traceback "
                  "and please report it", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
