"""The ``refimpl`` command.

    refimpl demo        train a small CNN on the embedded sample with three schedules
    refimpl train       train a named model (Fashion-MNIST or a synthetic set)
    refimpl crosscheck  compare our schedulers with torch / transformers, step by step
    refimpl bench       numpy / numba / torch timings
    refimpl theory      the theorem checks
    refimpl sweep       many trainings on a Dask cluster

``crosscheck``, ``bench``, ``theory`` and ``sweep`` live in their own modules; this file
imports them only when asked and hands them the rest of the command line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from refimpl import __version__, registry
from refimpl.registry import parse_kv

#: subcommand -> (module, help line); each module exposes ``main(argv) -> int | None``
PASSTHROUGH = {
    "crosscheck": ("refimpl.crosscheck",
                   "replay a trace through our scheduler and torch/transformers"),
    "bench": ("refimpl.bench", "numpy / numba / torch timings, ratios and peak memory"),
    "theory": ("refimpl.theory.cli", "numerical checks of the papers' theorems"),
    "sweep": ("refimpl.sweep", "many trainings from a config, on a Dask cluster"),
    "reproduce": ("refimpl.experiments",
                  "reproduce a paper's study: tables (paper beside ours) and figures"),
}
#: the data sets ``refimpl train --data`` offers (all from :mod:`refimpl.registry`)
DATASETS = ("fashion-mnist", "fashion-mnist-sample", "blobs", "spirals")


class CLIError(Exception):
    """A user mistake on the command line (printed without a traceback, exit status 2)."""


# ----------------------------------------------------------------------------- parsers

def build_parser() -> argparse.ArgumentParser:
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
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_train_args(train)
    for name, (module, text) in PASSTHROUGH.items():
        sub.add_parser(name, help=text, add_help=False,
                       description=f"Forwarded to {module}.main; run 'refimpl {name} --help'.")
    return parser


def _add_demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=3, help="epochs per schedule (3)")
    p.add_argument("--schedulers", default="constant,cosine,greedy",
                   help="comma-separated scheduler names (constant,cosine,greedy)")
    p.add_argument("--lr", type=float, default=0.05, help="initial learning rate (0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed for init and shuffling (0)")
    p.add_argument("--backend", default="numpy", help="numpy | numba | cuda | auto (numpy)")
    p.add_argument("--out-dir", type=Path, default=Path("."),
                   help="where demo.png and demo.json go (.)")
    p.add_argument("--train-size", type=int, default=None,
                   help="train on this many of the 2,000 sample images (all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--model", default="lrpo_cnn", help="mlp | lrpo_cnn, or a spec string such "
                   "as 'dense:64,relu,dense:10' (see refimpl.model)")
    g.add_argument("--data", default="fashion-mnist", choices=DATASETS,
                   help="data set; fashion-mnist falls back to nothing: it must be installed")
    g.add_argument("--data-path", default=None, help="directory with the Fashion-MNIST IDX files "
                   "(default: $REFIMPL_DATA, ~/.cache/refimpl, /usr/share/datasets/fashion-mnist)")
    g.add_argument("--subset", type=int, default=None,
                   help="training examples, drawn stratified from the training split")
    g.add_argument("--val", type=int, default=0,
                   help="validation examples held out from the training split (disjoint from "
                   "--subset); 0 validates on the test split")
    g.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    g.add_argument("--backend", default="numpy", choices=("numpy", "numba", "cuda", "auto"))
    g = p.add_argument_group("optimization")
    g.add_argument("--optimizer", default="sgd", help="sgd | adam | adamw, or any optimizer "
                   "class of refimpl.optim by name (refimpl.registry.optimizer_names())")
    g.add_argument("--lr", type=float, default=0.05, help="initial learning rate")
    g.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--epochs", type=int, default=3)
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--scheduler", default="none",
                   help="none (fixed lr) | step | cosine | greedy | newton | dlrs | ..., or a "
                   "class name such as OneCycleLR (see refimpl.registry.scheduler_names(); "
                   "'constant' is torch's ConstantLR), or lrpo for "
                   "the LRPO protocol (its phases set the epochs; pass e.g. "
                   "--scheduler-args pretrain_epochs=10,finetune_epochs=5)")
    g.add_argument("--scheduler-args", default="", metavar="K=V,...",
                   help="scheduler keyword arguments, e.g. factor=0.9,patience=5 or "
                   "milestones=2;4 or milestones=[2,4]; T_max and total_steps default to the "
                   "run length")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--nan-policy", default="raise", choices=("raise", "skip-batch", "rollback"))
    g = p.add_argument_group("output")
    g.add_argument("--checkpoint-dir", type=Path, default=None,
                   help="write last.npz + last.json after every epoch and on SIGINT/SIGTERM")
    g.add_argument("--checkpoint-every", type=int, default=None, help="also every N steps")
    g.add_argument("--resume", nargs="?", const=True, default=None, metavar="PATH",
                   help="continue from PATH (default: CHECKPOINT_DIR/last.npz)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--out", type=Path, default=None, help="write the History and settings here "
                   "(JSON)")


# ----------------------------------------------------------------------------- helpers

def make_scheduler(name: str, lr: float, kwargs: dict, epochs: int, batches: int):
    """The scheduler of a run (:func:`refimpl.registry.make_scheduler`); ``None`` for none."""
    return registry.make_scheduler(name or "none", lr, epochs=epochs, steps_per_epoch=batches,
                                   **kwargs)


def make_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float):
    """The optimizer of a run; ``--momentum`` is passed only when set (SGD's argument)."""
    kwargs = {"lr": lr, "weight_decay": weight_decay}
    if momentum:
        kwargs["momentum"] = momentum
    return registry.make_optimizer(name, params, **kwargs)


def load_data(args) -> tuple[tuple, tuple | None, tuple[int, ...]]:
    """``(train, val, input_shape)`` for ``args.data`` (see ``refimpl train --help``)."""
    from refimpl import data

    dtype = np.dtype(args.dtype)
    if args.data in ("blobs", "spirals"):
        n = (args.subset or 2000) + (args.val or 500)
        X, y = registry.load_dataset(args.data, subset=n, seed=args.seed, dtype=dtype)
        train, val = data.train_val_split(X, y, args.val or 500, seed=args.seed)
        return train, val, X.shape[1:]
    X, y = registry.load_dataset(args.data, "train", path=args.data_path, dtype=dtype)
    if args.subset is not None or args.val:
        wanted = (args.subset or len(y) - args.val) + args.val
        if wanted > len(y):
            raise CLIError(f"--subset + --val = {wanted} exceeds the {len(y)} training images")
        keep = data.stratified_indices(y, wanted, seed=args.seed)
        X, y = X[keep], y[keep]
    if args.val:
        train, val = data.train_val_split(X, y, args.val, seed=args.seed)
    else:
        train = (X, y)
        val = registry.load_dataset(args.data, "test", path=args.data_path, dtype=dtype)
    return train, val, X.shape[1:]


def build_model(name: str, input_shape, seed: int, dtype, backend: str):
    """A named model or a spec string (:func:`refimpl.registry.get_model`)."""
    return registry.get_model(name, input_shape, seed=seed, dtype=dtype, backend=backend)


class EpochPrinter:
    """Callback: one line per epoch (the progress bar shows the steps)."""

    def __init__(self, epochs: int, stream=None):
        self.epochs, self.stream = epochs, stream  # None: sys.stdout at print time

    def on_epoch_end(self, trainer, logs: dict) -> None:
        print(f"epoch {logs['epoch'] + 1:>3}/{self.epochs}  train loss {logs['train_loss']:.4f}"
              f"  acc {logs['train_acc']:.4f}  val loss {logs['val_loss']:.4f}  acc "
              f"{logs['val_acc']:.4f}  lr {logs['lr']:.4g}  {logs['time']:.1f}s",
              file=self.stream or sys.stdout, flush=True)


# ----------------------------------------------------------------------------- commands

def cmd_train(args) -> int:
    from refimpl.checkpoint import atomic_write_bytes
    from refimpl.schedulers.base import check_lr
    from refimpl.train import Trainer

    check_lr(args.lr, "--lr")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.subset is not None and args.subset < 1 or args.val < 0:
        raise CLIError("--subset must be >= 1 and --val >= 0")
    sched_kwargs = parse_kv(args.scheduler_args)
    train, val, input_shape = load_data(args)
    model = build_model(args.model, input_shape, args.seed, np.dtype(args.dtype), args.backend)
    started = time.perf_counter()
    if args.scheduler == "lrpo":
        history = _run_lrpo(args, model, train, val, sched_kwargs)
    else:
        optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum,
                                   args.weight_decay)
        batches = -(-len(train[1]) // args.batch_size)
        scheduler = make_scheduler(args.scheduler, args.lr, sched_kwargs, args.epochs, batches)
        trainer = Trainer(model, optimizer, scheduler, batch_size=args.batch_size,
                          seed=args.seed, progress=False if args.no_progress else None,
                          checkpoint_dir=args.checkpoint_dir, nan_policy=args.nan_policy,
                          checkpoint_every=args.checkpoint_every,
                          callbacks=[EpochPrinter(args.epochs)])
        history = trainer.fit(train, val, epochs=args.epochs, resume=args.resume)
    wall = time.perf_counter() - started
    print(f"done: {len(history.train_loss)} epochs in {wall:.1f}s; final val acc "
          f"{history.val_acc[-1]:.4f}, val loss {history.val_loss[-1]:.4f}")
    if args.out is not None:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                    if k != "func"}
        record = {"settings": settings, "wall_time": wall, "history": history.to_dict()}
        atomic_write_bytes(args.out, json.dumps(record, indent=1).encode("utf-8"))
        print(f"history written to {args.out}")
    return 0


def _run_lrpo(args, model, train, val, extra: dict):
    """Hand the run to :func:`refimpl.experiments.lrpo.run_lrpo`; print its phases and alpha.

    ``--scheduler-args`` may set the LRPO plan (``pretrain_epochs``, ``jump_epochs``,
    ``finetune_epochs``, ``finetune_lr``, ``alpha_max``, ``predictor_steps``); ``--epochs``
    does not apply, since the plan fixes the epoch count.
    """
    from refimpl.experiments.lrpo import run_lrpo

    try:
        result = run_lrpo(
            model, train, val, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
            backend=args.backend, optimizer=args.optimizer, momentum=args.momentum,
            progress=False if args.no_progress else None,
            checkpoint_dir=None if args.checkpoint_dir is None else str(args.checkpoint_dir),
            **extra,
        )
    except TypeError as exc:  # an unknown key in --scheduler-args
        raise CLIError(f"--scheduler-args: {exc}") from None
    print(result.summary())
    return result.history


def cmd_demo(args) -> int:
    from refimpl.demo import run_demo

    run_demo(epochs=args.epochs, schedulers=[s for s in args.schedulers.split(",") if s],
             lr=args.lr, seed=args.seed, backend=args.backend, out_dir=args.out_dir,
             progress=False if args.no_progress else None, train_size=args.train_size)
    return 0


def run_passthrough(name: str, argv: Sequence[str]) -> int:
    module_name = PASSTHROUGH[name][0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"refimpl {name}: not available: {module_name} cannot be imported ({exc})",
              file=sys.stderr)
        return 2
    if not hasattr(module, "main"):
        print(f"refimpl {name}: {module_name} has no main(argv)", file=sys.stderr)
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
    from refimpl.data import DataNotFoundError
    from refimpl.train import TrainingInterrupted

    try:
        return cmd_train(args) if args.command == "train" else cmd_demo(args)
    except TrainingInterrupted as exc:
        print(f"refimpl {args.command}: {exc}", file=sys.stderr)
        return 128 + int(exc.signum)
    except (CLIError, ValueError, DataNotFoundError, CheckpointError) as exc:
        print(f"refimpl {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
