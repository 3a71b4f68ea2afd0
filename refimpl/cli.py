"""The ``refimpl`` command: every subcommand is registered here.

    refimpl demo         train a small CNN on the embedded sample with three schedules
    refimpl train        train a named model (Fashion-MNIST or a synthetic set)
    refimpl crosscheck   compare our schedulers with torch / transformers, step by step
    refimpl bench        numpy / numba / torch timings
    refimpl theory       the theorem checks
    refimpl sweep        many trainings on a Dask cluster
    refimpl reproduce    a paper's study: tables and figures
    refimpl conformance  a framework's whole catalogue against refimpl

:func:`build_parser` registers ``demo`` and ``train``; ``train``'s options, checks and run
are in :mod:`refimpl.cli_train`. The others are listed in :data:`PASSTHROUGH`: they live in
their own modules, which this file imports only when asked and hands the rest of the
command line. The exceptions here (:class:`CLIError`, :class:`RunFailed`) become exit
statuses in :func:`main`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from refimpl import __version__, registry

#: subcommand -> (module, help line); each module exposes ``main(argv) -> int | None``
PASSTHROUGH = {
    "crosscheck": ("refimpl.crosscheck",
                   "replay a trace through our scheduler and torch/transformers"),
    "bench": ("refimpl.bench", "numpy / numba / torch timings, ratios and peak memory"),
    "theory": ("refimpl.theory.cli", "numerical checks of the papers' theorems"),
    "sweep": ("refimpl.sweep", "many trainings from a config, on a Dask cluster"),
    "reproduce": ("refimpl.experiments",
                  "reproduce a paper's study: tables (paper beside ours) and figures"),
    "conformance": ("refimpl.crosscheck.conformance.cli",
                    "a framework's whole catalogue against refimpl, with verdicts"),
}


class CLIError(Exception):
    """A user mistake on the command line (printed without a traceback, exit status 2)."""


class RunFailed(Exception):
    """A run that started and failed (one line, exit status 1; its results are written)."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where it says something: not ``None``/``False``, and not when
    the help text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action)


# ----------------------------------------------------------------------------- parsers

def build_parser() -> argparse.ArgumentParser:
    """The ``refimpl`` parser: ``demo`` and ``train`` here, the rest forwarded whole
    (:data:`PASSTHROUGH`)."""
    from refimpl.cli_train import add_train_args

    parser = argparse.ArgumentParser(
        prog="refimpl",
        description="refimpl: a readable, autodiff-free NumPy trainer and the GreedyLR / TLR "
                    "/ DLRS / LRPO learning-rate methods. Every subcommand has --help.",
    )
    parser.add_argument("--version", action="version", version=f"refimpl {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="train on the embedded sample with three schedules",
                          description="Train a small CNN on the embedded Fashion-MNIST sample "
                          "(2,000 train / 500 test images) with several schedules, print a "
                          "table and save a PNG of the loss and lr curves.")
    _add_demo_args(demo)
    train = sub.add_parser("train", help="train a model, write a history JSON",
                           description="Train a model with a chosen optimizer and scheduler. "
                           "Bad input is refused before any file is written.",
                           formatter_class=HelpFormatter)
    add_train_args(train)
    for name, (module, text) in PASSTHROUGH.items():
        sub.add_parser(name, help=text, add_help=False,
                       description=f"Forwarded to {module}.main; run 'refimpl {name} --help'.")
    return parser


def _add_demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=3, help="epochs per schedule (3)")
    p.add_argument("--schedulers", default="none,cosine,greedy",
                   help="comma-separated schedules: none (a fixed rate), cosine, greedy "
                   "(none,cosine,greedy)")
    p.add_argument("--lr", type=float, default=0.05, help="initial learning rate (0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed for init and shuffling (0)")
    p.add_argument("--backend", default="numpy", choices=registry.backend_names(),
                   help="implementation of the ops (numpy)")
    p.add_argument("--out-dir", type=Path, default=Path("."),
                   help="where demo.png and demo.json go (.)")
    p.add_argument("--train-size", type=int, default=None,
                   help="train on this many of the 2,000 sample images (all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


# ----------------------------------------------------------------------------- helpers

def say(text: str) -> None:
    """Print a line to stdout. When the reader has gone (``refimpl train ... | head``), the
    rest of the output is dropped and the run goes on, so its files are still written."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())  # also silences Python's flush at exit
        except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
        finally:
            os.close(devnull)


def check_parents(directory: Path, option: str, given: Path) -> None:
    """Refuse a path below a file, or in a place that cannot be written: the first existing
    parent of ``directory`` must be a directory in which a file can be created.

    Writability is tried, not guessed from permission bits (which say yes to root, and know
    nothing of read-only mounts or ``/proc``): a temporary file is created there and
    removed, as the atomic writes of the results will do.
    """
    for parent in (directory, *directory.parents):
        if parent.exists():
            if not parent.is_dir():
                raise CLIError(f"{option} {given}: {parent} is a file, not a directory; "
                               "choose another path")
            _check_writable(parent, option, given)
            return


def _check_writable(directory: Path, option: str, given: Path) -> None:
    """Create and remove a temporary file in ``directory``; a :class:`CLIError` naming
    ``option`` when that fails."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=".refimpl-probe-", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise CLIError(f"{option} {given}: {directory} is not writable, creating a file there "
                       f"fails with '{exc.strerror or exc}' (choose a writable path)") from None
    os.close(fd)
    os.unlink(probe)


def interrupted_message(exc: KeyboardInterrupt, checkpoint_dir: Path | None) -> str:
    """The line for a ``KeyboardInterrupt`` that is not the trainer's orderly stop.

    A second signal while the trainer stops after the first (:class:`InterruptedAgain`, or
    a Ctrl-C while the stop's ``--out`` record is written) ends the run at once; checkpoints
    are written atomically, so the last complete one is kept. Any other Ctrl-C came before
    or after the training loop.
    """
    from refimpl.training import TrainingInterrupted
    from refimpl.training.resume import CHECKPOINT_NAME
    from refimpl.training.signals import InterruptedAgain

    stopping = (TrainingInterrupted, InterruptedAgain)
    if not (isinstance(exc, InterruptedAgain) or isinstance(exc.__context__, stopping)):
        return "interrupted"
    if checkpoint_dir is None:
        kept = "no checkpoint (no --checkpoint-dir)"
    elif (Path(checkpoint_dir) / CHECKPOINT_NAME).exists():
        kept = "the last checkpoint is kept"
    else:
        kept = "no checkpoint was written yet"
    return f"interrupted again: stopping now; {kept}"


# ----------------------------------------------------------------------------- commands

def cmd_demo(args) -> int:
    """Run ``refimpl demo``."""
    from refimpl.demo import run_demo

    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise CLIError(f"--out-dir {args.out_dir} is a file; give a directory (it will hold "
                       "demo.png and demo.json)")
    check_parents(args.out_dir, "--out-dir", args.out_dir)
    run_demo(epochs=args.epochs, schedulers=[s for s in args.schedulers.split(",") if s],
             lr=args.lr, seed=args.seed, backend=args.backend, out_dir=args.out_dir,
             progress=False if args.no_progress else None, train_size=args.train_size)
    return 0


def run_passthrough(name: str, argv: Sequence[str]) -> int:
    """Hand ``argv`` to the ``main`` of subcommand ``name``'s module (:data:`PASSTHROUGH`)."""
    module_name = PASSTHROUGH[name][0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"refimpl {name}: error: not available here: {module_name} cannot be imported "
              f"({exc})",
              file=sys.stderr)
        return 2
    if not hasattr(module, "main"):
        print(f"refimpl {name}: error: {module_name} has no main(argv)", file=sys.stderr)
        return 2
    return int(module.main(list(argv)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``refimpl`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        return run_passthrough(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from refimpl.checkpoint import CheckpointError
    from refimpl.cli_train import cmd_train
    from refimpl.data import DataNotFoundError
    from refimpl.training import TrainingInterrupted

    prefix = f"refimpl {args.command}:"
    try:
        return cmd_train(args) if args.command == "train" else cmd_demo(args)
    except TrainingInterrupted as exc:
        print(f"{prefix} {exc}", file=sys.stderr)
        return 128 + int(exc.signum)
    except KeyboardInterrupt as exc:  # a second Ctrl-C while stopping, or one outside training
        print(f"{prefix} {interrupted_message(exc, getattr(args, 'checkpoint_dir', None))}",
              file=sys.stderr)
        return 128 + int(getattr(exc, "signum", signal.SIGINT))
    except RunFailed as exc:
        print(f"{prefix} error: {exc}", file=sys.stderr)
        return 1
    except DataNotFoundError as exc:
        print(f"{prefix} error: {exc.message('--data-path', '--data fashion-mnist-sample')}",
              file=sys.stderr)
        return 2
    except (CLIError, ValueError, CheckpointError) as exc:
        print(f"{prefix} error: {exc}", file=sys.stderr)
        return 2


#: Subcommands that train in this process (or in workers that inherit its environment).
TRAINING_COMMANDS = ("demo", "train", "reproduce", "sweep", "theory")
#: Set to a non-empty value to keep the environment as it is (no restart, see console_main).
KEEP_ENVIRONMENT_VAR = "REFIMPL_KEEP_ENVIRONMENT"


def console_main() -> int:
    """The ``refimpl`` console script and ``python -m refimpl``: :func:`main` on
    ``sys.argv``, for a training subcommand in an environment that makes the thread pools
    share the cores (docs/architecture.md, "Threads").

    Those variables are read when NumPy's BLAS, Numba and OpenMP load, before any code here
    could set them, so where one is missing the command starts itself again (``os.execve``:
    the same process id, the same arguments) with
    :func:`refimpl.kernels.numba.tuning.shared_cores_environment`; a variable the caller set
    keeps its value. Measured on a 2-core VM: two-thread epochs 1.6 (lrpo_cnn) and 4 (mlp)
    times faster than with the libraries' defaults (docs/benchmarks.md). Not on Windows, and
    not when ``REFIMPL_KEEP_ENVIRONMENT`` is set.
    """
    argv = sys.argv[1:]
    if (argv and argv[0] in TRAINING_COMMANDS and os.name == "posix" and sys.executable
            and not os.environ.get(KEEP_ENVIRONMENT_VAR)):
        from refimpl.kernels.numba.tuning import (
            SHARED_CORES_ENVIRONMENT,
            shared_cores_environment,
        )

        if any(name not in os.environ for name in SHARED_CORES_ENVIRONMENT):
            sys.stdout.flush()
            sys.stderr.flush()
            os.execve(sys.executable, [sys.executable, "-m", "refimpl", *argv],
                      shared_cores_environment())
    return main(argv)


if __name__ == "__main__":  # pragma: no cover
    # ``python -m refimpl.cli``: run the imported module's main, so that refimpl.cli_train
    # raises the same CLIError class that main catches (not a copy in __main__)
    from refimpl.cli import main as imported_main

    sys.exit(imported_main())
