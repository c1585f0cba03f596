"""The ``tpc`` command line: check, graph, derive, eval and simulate Tensor Programs."""
from __future__ import annotations

import argparse
import os
import sys
import traceback

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
    return ap


def load_program(args):
    from .frontend.load import parse, parse_define

    defines = dict(parse_define(d) for d in args.defines)
    return parse(args.program, defines=defines)


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


def main(argv=None) -> int:
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
