"""CI: `tpc check` and `tpc eval` of every example given, in `--jobs` worker processes.

Each example is run through the installed `tpc` console-script entry point (tensorprog.cli:main, looked up
in the installed package's metadata) with argv ["check", FILE] and then ["eval", FILE], as the shell loop
`tpc check FILE && tpc eval FILE > /dev/null` did, but a worker imports numba, sympy and the kernel cache
once instead of twice per example, and the two CI cores share the examples (gru.tp's evaluation alone is
single-threaded numpy quadrature for minutes).  The checks' summaries are printed in the order given, the
evaluations' reports discarded.  The exit status is the first non-zero status of any example (0 if none).
Run it with `python -I` so that the installed package, not the source tree in the working directory, is
imported.
"""
import argparse
import contextlib
import io
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import entry_points


def check_and_eval(path):
    """(exit status, transcript): `tpc check path`, then, if it passed, `tpc eval path` (output discarded)."""
    (tpc,) = entry_points(group="console_scripts", name="tpc")
    main_of_tpc = tpc.load()
    transcript = io.StringIO()
    for argv in (["check", path], ["eval", path]):
        transcript.write(f"+ tpc {' '.join(argv)}\n")
        sink = transcript if argv[0] == "check" else open(os.devnull, "w")
        try:
            with contextlib.redirect_stdout(sink):
                status = main_of_tpc(argv)
        except SystemExit as e:  # argparse's usage errors
            status = e.code if isinstance(e.code, int) else 1
        finally:
            if sink is not transcript:
                sink.close()
        if status != 0:
            transcript.write(f"tpc {' '.join(argv)}: exit status {status}\n")
            return status, transcript.getvalue()
    return 0, transcript.getvalue()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    ap.add_argument("paths", nargs="+", metavar="FILE.tp")
    args = ap.parse_args(argv)
    failed = 0
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for status, transcript in pool.map(check_and_eval, args.paths):
            print(transcript, end="", flush=True)
            failed = failed or status
    return failed


if __name__ == "__main__":
    sys.exit(main())
