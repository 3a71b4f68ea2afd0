"""Paper reproductions: one module per study, the table of studies, and ``refimpl reproduce``.

    refimpl reproduce NAME [--quick] [--out DIR] [--seed N] [--results DIR] [--report]

Each study module exposes ``run(quick=False, out=None, seed=0, results=None, report=False)
-> StudyResult`` (:mod:`refimpl.experiments.common`); ``--quick`` is the CI size (5-40 s per
study from the command line on a shared 2-core CPU), the default is the full size whose
tables live in docs/results.md. A full study appends each finished run to
``results/NAME.jsonl`` and skips the runs already there, so it accumulates over several
sittings; ``--report`` trains nothing and builds the tables from the runs that have
finished, stating n per cell (:mod:`refimpl.experiments._records`). Each finished run
prints one line on stderr.
On a machine shared with other jobs, ``NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1`` avoids
threaded kernels competing for an oversubscribed CPU.

:mod:`refimpl.experiments.lrpo` also holds :func:`~refimpl.experiments.lrpo.run_lrpo`, the
LRPO plan as one training run (used by ``refimpl train --scheduler lrpo`` and the ``lrpo``
study).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["STUDIES", "get_study", "main", "run_study"]

#: study name -> (module, one-line description)
STUDIES = {
    "greedy-robustness": ("refimpl.experiments.greedy_robustness",
                          "GreedyLR vs cosine/restarts/exponential under loss noise (§8)"),
    "pinn-helmholtz": ("refimpl.experiments.pinn_helmholtz",
                       "1-D Helmholtz PINN, fixed-lr Adam vs Adam + DLRS (§9)"),
    "lrpo": ("refimpl.experiments.lrpo_study",
             "LRPO vs a traditional fixed-rate run, lrpo_cnn on Fashion-MNIST (§7)"),
    "dlrs-batch": ("refimpl.experiments.dlrs_batch",
                   "Adam with/without DLRS and Adacomp over batch sizes (§6)"),
    "greedy-factor-sweep": ("refimpl.experiments.greedy_factor_sweep",
                            "GreedyLR factor F sweep: stability threshold and spread (§4)"),
    "tlr-robustness": ("refimpl.experiments.tlr_robustness",
                       "SGD + TLR vs a fixed rate over initial rates, MLP + dropout (§5)"),
}


def get_study(name: str):
    """The module of study ``name``."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; choose one of {sorted(STUDIES)}")
    return importlib.import_module(STUDIES[name][0])


def run_study(name: str, quick: bool = False, out: str | Path | None = None, seed: int = 0,
              results: str | Path | None = None, report: bool = False):
    """Run one study (or, with ``report``, tabulate its finished runs from ``results``);
    return its :class:`~refimpl.experiments.common.StudyResult`."""
    return get_study(name).run(quick=quick, out=out, seed=seed, results=results,
                               report=report)


def build_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<20} {text}" for name, (_, text) in STUDIES.items())
    parser = argparse.ArgumentParser(
        prog="refimpl reproduce",
        description="Reproduce one of the papers' studies: print its tables (paper's numbers "
                    "beside ours), save figures and a JSON record. Progress goes to stderr, "
                    "one line per finished run.",
        epilog="studies:\n" + lines, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(STUDIES), metavar="NAME", help="the study")
    parser.add_argument("--quick", action="store_true",
                        help="the small CI size (5-40 s per study on a shared 2-core CPU) "
                             "instead of the scaled full size (1-25 minutes per study)")
    parser.add_argument("--out", type=Path, default=Path("out/reproduce"),
                        help="directory for figures and NAME.json (out/reproduce)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (0)")
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="directory of the full runs' record files NAME.jsonl, one line "
                             "per finished run, read to skip finished runs (results)")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: build the tables and figures from the runs "
                             "recorded so far, with n per cell")
    parser.add_argument("--page", type=Path, default=None, metavar="FILE",
                        help="with --report: write the tables into FILE between the study's "
                             "marker lines (docs/results.md)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``refimpl reproduce``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.seed < 0:
        print("refimpl reproduce: error: --seed must be >= 0", file=sys.stderr)
        return 2
    if args.page is not None:
        from refimpl.experiments.page import read_block

        problem = None
        if not args.report:
            problem = "--page needs --report (a page is written from recorded runs)"
        else:
            try:  # the page and its block must exist before the work starts
                read_block(args.page, args.name)
            except (OSError, ValueError) as exc:
                problem = f"--page {args.page}: {exc}"
        if problem:
            print(f"refimpl reproduce: error: {problem}", file=sys.stderr)
            return 2
    from refimpl.data import DataNotFoundError

    try:
        result = run_study(args.name, quick=args.quick, out=args.out, seed=args.seed,
                           results=args.results, report=args.report)
    except DataNotFoundError as exc:  # full runs need the Fashion-MNIST files
        print(f"refimpl reproduce: error: {exc.message(path_option='', sample='--quick')}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C/SIGTERM (a trainer that checkpointed says so)
        detail = f": {exc}" if str(exc) else ""
        print(f"refimpl reproduce: stopped{detail}; the finished runs are in the record "
              "file, run the same command again to go on", file=sys.stderr)
        return 130
    print(result.markdown())
    print(f"record: {result.save(args.out)}")
    if args.page is not None:
        from refimpl.experiments.page import write_block

        write_block(args.page, args.name, result.page_block())
        print(f"page: {args.page} (block {args.name})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
