"""Hyper-parameter sweeps on Dask: ``refimpl sweep sweep.toml`` and ``refimpl sweep report``.

Modules, one idea each:

* :mod:`~refimpl.sweep.config`  -- the TOML file: validation, grid/random expansion, run ids;
* :mod:`~refimpl.sweep.task`    -- one run on a worker: build, train, summarise;
* :mod:`~refimpl.sweep.results` -- the append-only JSON-lines results file;
* :mod:`~refimpl.sweep.runner`  -- the Dask loop: submit, collect, record, survive faults;
* :mod:`~refimpl.sweep.report`  -- tables and plots from a results file.

Python use::

    from refimpl.sweep import load_sweep, open_client, run_sweep
    sweep = load_sweep("examples/sweep.toml", out_dir="runs/demo")
    with open_client(workers=2) as client:
        outcome = run_sweep(client, sweep, "runs/demo")
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import Run, Sweep, SweepConfigError, load_sweep, parse_sweep, run_id
from .results import ResultsLockedError, read_records
from .runner import SweepOutcome, open_client, run_sweep

__all__ = [
    "Run",
    "Sweep",
    "SweepConfigError",
    "SweepOutcome",
    "load_sweep",
    "main",
    "open_client",
    "parse_sweep",
    "read_records",
    "run_id",
    "run_sweep",
]

EXIT_OK, EXIT_FAILED_RUNS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``refimpl sweep``; returns the exit status.

    ``refimpl sweep CONFIG.toml [--cluster tcp://HOST:PORT] [--workers N] [--out DIR]``
    runs a sweep; ``refimpl sweep report RESULTS.jsonl [--out DIR]`` summarises one.
    Exit status: 0 all runs ok, 1 some runs failed, 2 bad usage or config, 130 interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        from .report import main as report_main

        return report_main(argv[1:])
    args = _parser().parse_args(argv)
    out_dir = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    try:
        sweep = load_sweep(args.config, out_dir=out_dir)
    except SweepConfigError as err:
        print(f"refimpl sweep: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run:
        return _dry_run(sweep, out_dir)
    if not _pending(sweep, out_dir, args.retry_failed):  # no cluster needed
        print(f"{sweep.name}: all {len(sweep.runs)} runs are already in "
              f"{out_dir / sweep.results}; nothing to do", file=sys.stderr)
        return EXIT_OK
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with open_client(args.cluster, args.workers) as client:
            outcome = run_sweep(client, sweep, out_dir, progress=not args.no_progress,
                                retry_failed=args.retry_failed)
    except (ValueError, ResultsLockedError, RuntimeError, OSError) as err:
        print(f"refimpl sweep: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # while the cluster was starting or closing
        print("interrupted; results written so far are kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    return _summary(sweep, outcome)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refimpl sweep",
        description="Run a grid or random sweep on Dask (see docs/sweeps.md). "
                    "'refimpl sweep report RESULTS.jsonl' makes a table and plots.")
    parser.add_argument("config", help="the sweep file (TOML), e.g. examples/sweep.toml")
    parser.add_argument("--cluster", metavar="tcp://HOST:PORT",
                        help="use a running Dask scheduler instead of an embedded LocalCluster")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="worker processes of the embedded cluster (default: CPU count)")
    parser.add_argument("--out", metavar="DIR",
                        help="output directory (default: runs/<config name>)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run again the runs recorded as failed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate and list the runs, run nothing")
    return parser


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _pending(sweep: Sweep, out_dir: Path, retry_failed: bool = False) -> list[Run]:
    from .results import finished_ids

    done = finished_ids(read_records(out_dir / sweep.results), retry_failed=retry_failed)
    return [run for run in sweep.runs if run.id not in done]


def _dry_run(sweep: Sweep, out_dir: Path) -> int:
    todo = _pending(sweep, out_dir)
    print(f"{sweep.name}: {len(sweep.runs)} runs ({sweep.duplicates} duplicate points "
          f"dropped), {len(sweep.runs) - len(todo)} already in {out_dir / sweep.results}, "
          f"{len(todo)} to run")
    for run in todo[:10]:
        print(f"  {run.id}  {run.config}")
    if len(todo) > 10:
        print(f"  ... and {len(todo) - 10} more")
    return EXIT_OK


def _summary(sweep: Sweep, outcome: SweepOutcome) -> int:
    print(f"{sweep.name}: {outcome.ok} ok, {outcome.failed} failed, {outcome.already_done} "
          f"already done, {outcome.remaining} not run; {outcome.wall_time:.1f} s; "
          f"results in {outcome.results}", file=sys.stderr)
    if outcome.interrupted:
        print("interrupted: re-run the same command to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED_RUNS if outcome.failed else EXIT_OK
