"""``refimpl conformance``: run a framework's catalogue against refimpl from a shell.

    refimpl conformance torch [--seed N] [--configs N] [--quick] [--report FILE]
    refimpl conformance optax --only reduce_on_plateau
    refimpl conformance all --report docs/conformance.md

Prints the table (one row per class) and the findings. ``--report FILE`` also writes the
Markdown report (framework and refimpl versions, machine, date, the command), atomically;
with ``all`` (every framework), the page ``docs/conformance.md`` is made of the four.

Exit status: 0 when every difference is explained (equal, by design or a framework bug
with its reproduction); 1 when a difference is unexplained; 2 on bad input or a framework
that is not installed (one line naming what to install).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from . import FRAMEWORKS, MissingFramework, Report, conformance_page, run_conformance, write_text
from .core import UNEXPLAINED

__all__ = ["build_parser", "main"]


class UsageError(ValueError):
    """A mistake on the command line: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default prints the usage too
        raise UsageError(message)


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="refimpl conformance",
        description="Run a framework's whole catalogue (schedules, optimizers, ops) against "
                    "refimpl on seeded random configurations; each configuration ends equal, "
                    "by design, framework bug or unexplained.")
    parser.add_argument("framework", choices=[*FRAMEWORKS, "all"],
                        help="the framework to check, or all of them")
    parser.add_argument("--seed", type=int, default=0, help="seed of the configurations (0)")
    parser.add_argument("--configs", type=_non_negative, default=None,
                        help="random configurations per class (20; 2 with --quick), on top "
                             "of the fixed edge configurations")
    parser.add_argument("--quick", action="store_true",
                        help="few configurations and short traces")
    parser.add_argument("--only", action="append", default=[], metavar="CLASS",
                        help="run only this class (repeatable)")
    parser.add_argument("--report", default=None, metavar="FILE",
                        help="also write the Markdown report to FILE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``refimpl conformance`` (``argv`` excludes the word ``conformance``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        print(f"refimpl conformance: error: {error}", file=sys.stderr)
        return 2
    command = shlex.join(["refimpl", "conformance", *argv])
    frameworks = list(FRAMEWORKS) if args.framework == "all" else [args.framework]
    if args.only and len(frameworks) > 1:
        print("refimpl conformance: error: --only names classes of one framework; give the "
              "framework instead of all", file=sys.stderr)
        return 2
    reports: list[Report] = []
    try:
        for framework in frameworks:
            reports.append(run_conformance(framework, seed=args.seed, configs=args.configs,
                                           quick=args.quick, only=args.only, command=command))
    except (MissingFramework, ValueError) as error:
        print(f"refimpl conformance: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    for report in reports:
        print(report)
        print()
    if args.report is not None:
        text = conformance_page(reports) if args.framework == "all" else reports[0].markdown()
        try:
            write_text(args.report, text)
        except OSError as error:
            print(f"refimpl conformance: error: --report: cannot write {args.report!r} "
                  f"({error.strerror})", file=sys.stderr)
            return 2
        print(f"report written to {args.report}")
    unexplained = sum(report.totals[UNEXPLAINED] for report in reports)
    return 1 if unexplained else 0
