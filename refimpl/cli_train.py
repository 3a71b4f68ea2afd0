"""``refimpl train``: its options, their checks, and the run.

    refimpl train --model mlp --data fashion-mnist-sample --optimizer adam --lr 1e-3 \\
        --scheduler greedy --scheduler-args factor=0.9,patience=5 --out history.json

:func:`add_train_args` defines the options (every list of names comes from
:mod:`refimpl.registry`), :func:`cmd_train` checks them all before any file is written,
builds the run and trains; the ``refimpl`` command (:mod:`refimpl.cli`) registers the
subcommand and turns the errors into exit statuses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from refimpl import registry
from refimpl.cli import CLIError, RunFailed, check_parents, say
from refimpl.registry import parse_kv

__all__ = ["RESUME_SETTINGS", "add_train_args", "cmd_train", "load_data", "run_settings"]


# ----------------------------------------------------------------------------- options

def add_train_args(p: argparse.ArgumentParser) -> None:
    """The options of ``refimpl train``; every list of names comes from the registry."""
    g = p.add_argument_group("model and data")
    g.add_argument("--model", default="lrpo_cnn",
                   help=f"{' | '.join(registry.model_names())}, or a spec string such as "
                   "'dense:64,relu,dense:10' (see refimpl.model)")
    g.add_argument("--data", default=None, choices=registry.dataset_names(),
                   help="data set (default: fashion-mnist where it is installed, else the "
                   "embedded fashion-mnist-sample, with a note saying so); an explicit --data "
                   "fashion-mnist must be installed. The synthetic sets are drawn from --seed")
    g.add_argument("--data-path", default=None, metavar="DIR",
                   help="directory with the Fashion-MNIST IDX files, for --data fashion-mnist "
                   "(default: $REFIMPL_DATA, ~/.cache/refimpl, /usr/share/datasets/fashion-mnist)")
    g.add_argument("--subset", type=int, default=None,
                   help="training examples, drawn stratified from the training split")
    g.add_argument("--val", type=int, default=0,
                   help="validation examples held out from the training split (disjoint from "
                   "--subset); 0 validates on the test split")
    g.add_argument("--dtype", default="float32", choices=registry.dtype_names(),
                   help="floating-point type of the data and the parameters")
    g.add_argument("--backend", default="numpy", choices=registry.backend_names(),
                   help="implementation of the ops: the NumPy oracle or a Numba backend")
    g = p.add_argument_group("optimization")
    g.add_argument("--optimizer", default="sgd",
                   help=f"{' | '.join(registry.optimizer_names())}, or an optimizer class "
                   "name such as AdamW")
    g.add_argument("--lr", type=float, default=None,
                   help=f"initial learning rate (default: {_lr_defaults_text()}; the rate "
                   "used is printed)")
    g.add_argument("--momentum", type=float, default=0.0,
                   help="SGD momentum (an optimizer without momentum refuses it)")
    g.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay")
    g.add_argument("--epochs", type=int, default=3,
                   help="epochs of the run (a resumed run continues up to this count)")
    g.add_argument("--batch-size", type=int, default=64, help="training examples per step")
    g.add_argument("--scheduler", default="none",
                   help="none (fixed lr) | step | cosine | greedy | newton | dlrs | ..., or a "
                   "class name such as OneCycleLR (see refimpl.registry.scheduler_names(); "
                   "'constant' is torch's ConstantLR), or lrpo for "
                   "the LRPO protocol (its phases set the epochs; pass e.g. "
                   "--scheduler-args pretrain_epochs=10,finetune_epochs=5)")
    g.add_argument("--scheduler-args", default="", metavar="K=V,...",
                   help="scheduler keyword arguments, e.g. factor=0.9,patience=5 or "
                   "milestones=2;4 or milestones=[2,4]; T_max and total_steps default to the "
                   "run length; lr, epochs and steps_per_epoch come from --lr, --epochs and "
                   "--batch-size")
    g.add_argument("--seed", type=int, default=0,
                   help="seeds the initial weights, the shuffles and the data subsets")
    g.add_argument("--nan-policy", default="raise", choices=registry.nan_policy_names(),
                   help="on a NaN/inf loss: stop (exit 1, history written), skip the batch, or "
                   "return to the last good state with halved rates")
    g.add_argument("--loss", default=None, choices=registry.loss_names(),
                   help="the training loss (default: cross_entropy for class labels, mse for "
                   "real-valued targets such as --data regression)")
    g = p.add_argument_group("output")
    g.add_argument("--checkpoint-dir", type=Path, default=None,
                   help="write last.npz + last.json after every epoch and on SIGINT/SIGTERM")
    g.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="also checkpoint every N steps")
    g.add_argument("--resume", nargs="?", const=True, default=None, metavar="PATH",
                   help="continue from PATH (default: CHECKPOINT_DIR/last.npz)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--out", type=Path, default=None, help="write the History and settings here "
                   "(JSON)")


# ----------------------------------------------------------------------------- defaults

#: ``--lr`` for SGD when not given: the demo's rate (SGD's own signature default, torch's
#: 0.001, is too slow for a few epochs); every other optimizer takes its own default
SGD_LR = 0.05
#: the data set a plain ``refimpl train`` uses ...
DEFAULT_DATA = "fashion-mnist"
#: ... and the one it falls back to where that is not installed
FALLBACK_DATA = "fashion-mnist-sample"
#: an epoch whose mean training loss exceeds this many times the run's first step loss
#: (and is finite) gets a warning: the rate is probably too large
LOSS_GROWTH = 100.0


def default_lr(optimizer: str) -> float:
    """The rate ``--optimizer`` trains at without ``--lr``: :data:`SGD_LR` for SGD, else the
    optimizer's own default (:func:`refimpl.registry.optimizer_default_lr`).

    Raises
    ------
    ValueError
        An unknown optimizer name (the message lists the known ones).
    CLIError
        An optimizer whose constructor has no default rate.
    """
    from refimpl.optim import SGD

    if registry.optimizer_class(optimizer) is SGD:
        return SGD_LR
    lr = registry.optimizer_default_lr(optimizer)
    if lr is None:
        raise CLIError(f"--optimizer {optimizer} has no default learning rate (give --lr)")
    return lr


def _lr_defaults_text() -> str:
    """``--lr``'s default per optimizer, for ``--help``."""
    others = ", ".join(f"{name} {default_lr(name):g}" for name in registry.optimizer_names()
                       if name != "sgd")
    return f"{SGD_LR:g} for sgd; each other optimizer's usual default: {others}"


def resolve_defaults(args) -> list[tuple[str, str]]:
    """Fill ``--data`` and ``--lr`` when the command line leaves them out; return the lines
    that say so, as ``(stream, line)`` with stream ``"stdout"`` or ``"stderr"``, to print
    once every option is checked (:func:`print_notes`).

    ``--data``: :data:`DEFAULT_DATA` where it is installed (or where ``--data-path`` points),
    else the embedded :data:`FALLBACK_DATA`. ``--lr``: :func:`default_lr` of
    ``--optimizer``. The filled values are what the run uses, stores in its checkpoints and
    writes to ``--out``.
    """
    from refimpl.data import DataNotFoundError, find_fashion_mnist

    notes = []
    if args.data is None:
        args.data = DEFAULT_DATA
        if args.data_path is None:
            try:
                find_fashion_mnist()
            except DataNotFoundError:
                args.data = FALLBACK_DATA
                line = ("refimpl train: note: Fashion-MNIST is not installed here (sudo "
                        "apt-get install dataset-fashion-mnist, or set $REFIMPL_DATA); "
                        f"training on the embedded sample {FALLBACK_DATA} instead")
                notes.append(("stderr", line))
    if args.lr is None:
        args.lr = default_lr(args.optimizer)
        notes.append(("stdout", f"lr {args.lr:g}: {args.optimizer}'s default (--lr to change)"))
    return notes


def print_notes(notes: list[tuple[str, str]]) -> None:
    """Print the lines of :func:`resolve_defaults`, each to the stream it names."""
    for stream, text in notes:
        if stream == "stdout":
            say(text)
        else:
            print(text, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the run's parts

def make_scheduler(name: str, lr: float, kwargs: dict, epochs: int, batches: int):
    """The scheduler of a run (:func:`refimpl.registry.make_scheduler`); ``None`` for none."""
    return registry.make_scheduler(name or "none", lr, epochs=epochs, steps_per_epoch=batches,
                                   **kwargs)


#: :func:`refimpl.registry.make_scheduler`'s own arguments, which :func:`make_scheduler`
#: fills from the run, and the option that sets each (as the error message says it)
SET_BY_THE_RUN: dict[str, str] = {
    "name": "the scheduler is named by --scheduler",
    "lr": "the rate is set by --lr",
    "epochs": "the run length is set by --epochs",
    "steps_per_epoch": "the steps per epoch follow from --batch-size and the training set size",
}


def _check_scheduler_args(kwargs: dict) -> None:
    """Refuse a ``--scheduler-args`` key that :func:`make_scheduler` passes to
    :func:`refimpl.registry.make_scheduler` itself (read from its signature: every named
    argument), naming the option that sets it."""
    import inspect

    parameters = inspect.signature(registry.make_scheduler).parameters.values()
    _refuse_keys_set_by_the_run(kwargs, {
        p.name: SET_BY_THE_RUN.get(p.name, f"refimpl train sets {p.name} itself")
        for p in parameters if p.kind is not p.VAR_KEYWORD})


def _refuse_keys_set_by_the_run(kwargs: dict, reasons: dict[str, str]) -> None:
    """Refuse the first ``--scheduler-args`` key in ``reasons`` (key -> which option sets
    it), with that reason and the fix."""
    for key, reason in reasons.items():
        if key in kwargs:
            raise CLIError(f"--scheduler-args {key}={_shown(kwargs[key])}: {reason} "
                           f"(drop {key}= from --scheduler-args)")


def make_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float):
    """The optimizer of a run; ``--momentum`` is passed only when set (SGD's argument)."""
    kwargs = {"lr": lr, "weight_decay": weight_decay}
    if momentum:
        kwargs["momentum"] = momentum
    return registry.make_optimizer(name, params, **kwargs)


def load_data(args) -> tuple[tuple, tuple | None, tuple[int, ...]]:
    """``(train, val, input_shape)`` for ``args.data`` (see ``refimpl train --help``).

    A synthetic set (:func:`refimpl.registry.is_synthetic`) is drawn with ``--subset``
    (default 2,000) training and ``--val`` (default 500) validation examples; the validation
    part keeps the class proportions when the targets are class labels.
    """
    from refimpl import data

    dtype = np.dtype(args.dtype)
    if registry.is_synthetic(args.data):
        n = (args.subset or 2000) + (args.val or 500)
        X, y = registry.load_dataset(args.data, subset=n, seed=args.seed, dtype=dtype)
        train, val = data.train_val_split(X, y, args.val or 500, seed=args.seed,
                                          stratify=_class_labels(y))
        return train, val, X.shape[1:]
    X, y = registry.load_dataset(args.data, "train", path=args.data_path, dtype=dtype)
    if args.subset is not None or args.val:
        wanted = (args.subset or len(y) - args.val) + args.val
        if wanted > len(y):
            raise CLIError(f"--subset + --val = {wanted} exceeds the {len(y)} training images "
                           f"of {args.data} (lower --subset or --val)")
        keep = data.stratified_indices(y, wanted, seed=args.seed)
        X, y = X[keep], y[keep]
    if args.val:
        train, val = data.train_val_split(X, y, args.val, seed=args.seed)
    else:
        train = (X, y)
        val = registry.load_dataset(args.data, "test", path=args.data_path, dtype=dtype)
    return train, val, X.shape[1:]


def _class_labels(y: np.ndarray) -> bool:
    """Whether ``y`` holds class labels (integers, one per example), not regression targets."""
    return y.ndim == 1 and np.issubdtype(y.dtype, np.integer)


def loss_of(args, y: np.ndarray) -> str:
    """``--loss``, or the loss the targets call for: cross-entropy on class labels, mse on
    real-valued targets."""
    if args.loss is not None:
        return args.loss
    return "cross_entropy" if _class_labels(y) else "mse"


def build_model(name: str, input_shape, seed: int, dtype, backend: str):
    """A named model or a spec string (:func:`refimpl.registry.get_model`)."""
    return registry.get_model(name, input_shape, seed=seed, dtype=dtype, backend=backend)


class EpochPrinter:
    """Callback: one line per epoch (the progress bar shows the steps); the accuracies only
    for a classifier (``accuracy=True``)."""

    def __init__(self, epochs: int, stream=None, accuracy: bool = True):
        self.epochs, self.stream = epochs, stream  # None: sys.stdout at print time
        self.accuracy = accuracy

    def on_epoch_end(self, trainer, logs: dict) -> None:
        train_acc = f"  acc {logs['train_acc']:.4f}" if self.accuracy else ""
        val_acc = f"  acc {logs['val_acc']:.4f}" if self.accuracy else ""
        line = (f"epoch {logs['epoch'] + 1:>3}/{self.epochs}  train loss "
                f"{logs['train_loss']:.4f}{train_acc}  val loss {logs['val_loss']:.4f}"
                f"{val_acc}  lr {logs['lr']:.4g}  {logs['time']:.1f}s")
        if self.stream is None:
            say(line)
        else:
            print(line, file=self.stream, flush=True)


class LossGrowthWarning:
    """Callback: one warning per run, on stderr, when an epoch's mean training loss is finite
    and exceeds :data:`LOSS_GROWTH` times the loss the run started from (its first finite
    step loss, before any update had an effect): the learning rate is probably too large
    for the optimizer.

    The first step is the baseline, not the first epoch's mean, because a rate that is far
    too large blows the loss up within the first epoch already.

    Parameters
    ----------
    lr : float
        The run's initial rate (``--lr``).
    optimizer : str
        The optimizer's name as given (``--optimizer``).
    stream : file, optional
        Where the warning goes; ``None``: ``sys.stderr`` at print time.
    """

    def __init__(self, lr: float, optimizer: str, stream=None):
        self.lr, self.optimizer, self.stream = lr, optimizer, stream
        self.warned = False

    def on_epoch_end(self, trainer, logs: dict) -> None:
        if self.warned:
            return
        start = next((loss for loss in trainer.history.loss if np.isfinite(loss)), None)
        loss = logs["train_loss"]
        if start is None or start <= 0 or not np.isfinite(loss) or loss <= LOSS_GROWTH * start:
            return
        self.warned = True
        print(f"refimpl train: warning: the training loss grew from {start:.2g} to {loss:.2g} "
              f"(epoch {logs['epoch'] + 1}): the learning rate {self.lr:g} is probably too "
              f"large for {self.optimizer} (try --lr {smaller_lr(self.lr, self.optimizer):g})",
              file=self.stream or sys.stderr, flush=True)


def smaller_lr(lr: float, optimizer: str) -> float:
    """The rate to suggest after ``lr`` made the loss grow: the optimizer's default
    (:func:`default_lr`) when ``lr`` is above it, else a tenth of ``lr``."""
    usual = default_lr(optimizer)
    return usual if lr > usual else lr / 10


# ----------------------------------------------------------------------------- the command

def cmd_train(args) -> int:
    """Run ``refimpl train``: check every option, load the data, train, write ``--out``."""
    from refimpl.schedulers.base import check_lr
    from refimpl.training import NonFiniteLossError, TrainingInterrupted
    from refimpl.training.signals import InterruptedAgain

    fell_back = args.data is None  # until resolve_defaults has looked for Fashion-MNIST
    notes = resolve_defaults(args)  # --data and --lr when not given, said once all is checked
    fell_back = fell_back and args.data == FALLBACK_DATA
    check_lr(args.lr, "--lr")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.subset is not None and args.subset < 1 or args.val < 0:
        raise CLIError("--subset must be >= 1 and --val >= 0")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed} (seeds are non-negative "
                       "integers, e.g. --seed 0)")
    _check_option_pairs(args)
    _check_outputs(args)
    registry.check_model(args.model)  # a typo is found before the data loads
    sched_kwargs = parse_kv(args.scheduler_args)
    if args.scheduler == "lrpo":  # lrpo's plan goes to run_lrpo, not to make_scheduler
        _check_lrpo_args(args, sched_kwargs)
    else:
        _check_scheduler_args(sched_kwargs)
    settings = run_settings(args, sched_kwargs)
    try:
        train, val, input_shape = load_data(args)
    except CLIError as exc:
        if fell_back:  # e.g. a --subset meant for the full set
            raise CLIError("Fashion-MNIST is not installed here (sudo apt-get install "
                           f"dataset-fashion-mnist), so --data defaults to {args.data}: "
                           f"{exc}") from None
        raise
    loss = loss_of(args, train[1])
    if args.scheduler == "lrpo" and loss != "cross_entropy":
        raise CLIError(f"--scheduler lrpo trains a classifier with cross_entropy, not {loss}; "
                       "choose a data set with class labels or another --scheduler")
    if args.resume:
        _check_resume(args, settings, -(-len(train[1]) // args.batch_size))
    model = build_model(args.model, input_shape, args.seed, np.dtype(args.dtype), args.backend)
    started = time.perf_counter()
    try:  # overflow shows as a non-finite loss, which --nan-policy handles and reports
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if args.scheduler == "lrpo":
                print_notes(notes)
                history = _run_lrpo(args, model, train, val, sched_kwargs)
            else:
                history = _fit(args, model, train, val, sched_kwargs, settings, loss, notes)
    except (NonFiniteLossError, TrainingInterrupted, InterruptedAgain) as exc:
        # InterruptedAgain: a second Ctrl-C while stopping; the record is still written
        history = getattr(exc, "history", None)
        failed = isinstance(exc, NonFiniteLossError)
        reason = str(exc).replace("nan_policy='skip-batch' or 'rollback'",
                                  "--nan-policy skip-batch or rollback")
        written = _write_record(args, history, time.perf_counter() - started,
                                status="failed" if failed else "interrupted", error=reason)
        if failed:
            raise RunFailed(reason + (f"; the history so far is in {written}" if written
                                      else "")) from None
        raise
    wall = time.perf_counter() - started
    accuracy = f"val acc {history.val_acc[-1]:.4f}, " if loss == "cross_entropy" else ""
    say(f"done: {len(history.train_loss)} epochs in {wall:.1f}s; final {accuracy}val loss "
        f"{history.val_loss[-1]:.4f}")
    written = _write_record(args, history, wall, status="ok")
    if written is not None:
        say(f"history written to {written}")
    return 0


def _fit(args, model, train, val, sched_kwargs: dict, settings: dict, loss: str,
         notes: list[tuple[str, str]] = ()):
    """Train with the Trainer; on a failure, the exception carries the History so far.

    ``notes`` (:func:`resolve_defaults`) are printed once the optimizer, the scheduler and
    the Trainer are built, i.e. once nothing on the command line can be refused any more."""
    from refimpl.training import Trainer

    optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum,
                               args.weight_decay)
    batches = -(-len(train[1]) // args.batch_size)
    scheduler = make_scheduler(args.scheduler, args.lr, sched_kwargs, args.epochs, batches)
    trainer = Trainer(model, optimizer, scheduler, batch_size=args.batch_size, loss=loss,
                      seed=args.seed, progress=False if args.no_progress else None,
                      checkpoint_dir=args.checkpoint_dir, nan_policy=args.nan_policy,
                      checkpoint_every=args.checkpoint_every,
                      callbacks=[EpochPrinter(args.epochs, accuracy=loss == "cross_entropy"),
                                 LossGrowthWarning(args.lr, args.optimizer)],
                      metadata={"cli": settings})
    print_notes(notes)
    try:
        return trainer.fit(train, val, epochs=args.epochs, resume=args.resume)
    except (Exception, KeyboardInterrupt) as exc:  # TrainingInterrupted is a KeyboardInterrupt
        exc.history = trainer.history
        raise


#: the settings a resumed run must share with its checkpoint (``--epochs`` may grow)
RESUME_SETTINGS = ("model", "data", "subset", "val", "dtype", "optimizer", "lr", "momentum",
                   "weight_decay", "batch_size", "scheduler", "scheduler_args", "seed")


def run_settings(args, sched_kwargs: dict) -> dict:
    """What defines a run, as stored in its checkpoints (``--scheduler-args`` parsed).

    Call it after :func:`resolve_defaults`, so that ``data`` and ``lr`` are the data set
    and the rate the run uses (a resume compares those), not ``None`` for "not given"."""
    settings = {name: getattr(args, name) for name in RESUME_SETTINGS}
    settings["scheduler_args"] = sched_kwargs
    settings["epochs"] = args.epochs
    return settings


def _check_option_pairs(args) -> None:
    """Options that mean nothing with the others given are refused, not ignored."""
    if args.data_path is not None and args.data != "fashion-mnist":
        raise CLIError(f"--data-path applies to --data fashion-mnist only; --data {args.data} "
                       "is built in or generated: drop --data-path")
    if args.checkpoint_every is not None and args.checkpoint_dir is None:
        raise CLIError("--checkpoint-every needs --checkpoint-dir (where to write)")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise CLIError(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    if args.resume is True and args.checkpoint_dir is None:
        raise CLIError("--resume without a PATH resumes CHECKPOINT_DIR/last.npz: give "
                       "--checkpoint-dir, or --resume PATH")


def _check_outputs(args) -> None:
    """Refuse, before any training, an ``--out`` or ``--checkpoint-dir`` that cannot be
    written (a directory where a file goes, a file where a directory goes, a place where no
    file can be created), and an ``--out`` that the checkpoints would clash with."""
    if args.out is not None:
        if args.out.is_dir():
            raise CLIError(f"--out {args.out} is a directory; give a file path such as "
                           f"{args.out / 'history.json'}")
        check_parents(args.out.parent, "--out", args.out)
    if args.checkpoint_dir is not None:
        if args.checkpoint_dir.exists() and not args.checkpoint_dir.is_dir():
            raise CLIError(f"--checkpoint-dir {args.checkpoint_dir} is a file; give a directory "
                           "(it will hold last.npz and last.json)")
        check_parents(args.checkpoint_dir, "--checkpoint-dir", args.checkpoint_dir)
    if args.out is not None and args.checkpoint_dir is not None:
        _check_out_beside_checkpoints(args.out, args.checkpoint_dir)


def _check_out_beside_checkpoints(out: Path, checkpoint_dir: Path) -> None:
    """Refuse an ``--out`` that is one of the files the trainer writes in ``--checkpoint-dir``
    (the history JSON would replace the checkpoint), or the checkpoint directory itself or
    a directory above it (the checkpoints would make ``--out`` a directory)."""
    from refimpl.training.resume import CHECKPOINT_FILES

    out_at, ck_at = out.resolve(), checkpoint_dir.resolve()
    if out_at.parent == ck_at and out_at.name in CHECKPOINT_FILES:
        raise CLIError(f"--out {out} is the checkpoint file {out_at.name} that --checkpoint-dir "
                       f"{checkpoint_dir} holds; the history would overwrite it (give --out "
                       "another name, or a path outside --checkpoint-dir)")
    if out_at == ck_at or out_at in ck_at.parents:
        raise CLIError(f"--out {out} is --checkpoint-dir {checkpoint_dir} or a directory "
                       "above it, where the checkpoints go (give --out a file path such as "
                       f"{checkpoint_dir / 'history.json'})")


def _check_resume(args, settings: dict, n_batches: int) -> None:
    """Refuse to resume a checkpoint of a run with other settings (naming every one), or
    whose position lies outside this run, and say what the schedule does when ``--epochs``
    extends the run.

    The settings are compared first: a changed ``--batch-size`` or ``--subset`` also moves
    the position, and the message should name the option, not the step count it changed.
    """
    from refimpl.checkpoint import load_checkpoint
    from refimpl.training.resume import CHECKPOINT_NAME, check_position

    path = args.checkpoint_dir / CHECKPOINT_NAME if args.resume is True else Path(args.resume)
    state = load_checkpoint(path)
    saved = state.get("metadata", {}).get("cli") if isinstance(state.get("metadata"), dict) \
        else None
    if isinstance(saved, dict):  # else written through the Python API: the Trainer checks it
        _check_same_settings(path, saved, settings)
    check_position(state, n_batches, path)
    if isinstance(saved, dict):
        _explain_extension(args, saved, state.get("scheduler"))


def _check_same_settings(path: Path, saved: dict, settings: dict) -> None:
    """Refuse a checkpoint whose run had other settings (``saved``), naming every one."""
    changed = [f"--{name.replace('_', '-')} {_shown(saved.get(name))} in the checkpoint, "
               f"{_shown(value)} now" for name, value in settings.items()
               if name != "epochs" and saved.get(name) != value]
    if changed:
        raise CLIError(f"--resume {path}: the checkpoint belongs to a run with other settings: "
                       + "; ".join(changed) + ". Resume with the checkpoint's settings, or "
                       "start a new run (another --checkpoint-dir)")


def _shown(value) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "(none)"
    return "(none)" if value is None else str(value)


def _explain_extension(args, saved: dict, scheduler_state) -> None:
    """A schedule laid out over the run's length keeps that length when ``--epochs`` grows."""
    planned = saved.get("epochs")
    if not isinstance(planned, int) or args.epochs <= planned:
        return
    laid_out = {key: scheduler_state[key] for key in ("T_max", "total_steps", "total_iters")
                if isinstance(scheduler_state, dict) and key in scheduler_state}
    if not laid_out:
        return
    name = scheduler_state.get("class", args.scheduler)
    lengths = ", ".join(f"{key}={value}" for key, value in laid_out.items())
    unit = "epochs" if scheduler_state.get("interval") == "epoch" else "steps"
    after = ("the rate rises again toward --lr (cosine is periodic)"
             if name == "CosineAnnealingLR" else "it follows its formula past that end")
    print(f"refimpl train: note: --epochs {args.epochs} extends the run past the {planned} "
          f"epochs of its checkpoint; {name} keeps {lengths} ({unit}) from when the run "
          f"started, so beyond that {after}. For a schedule over {args.epochs} epochs, start "
          "a new run.", file=sys.stderr, flush=True)


def _write_record(args, history, wall: float, status: str, error: str | None = None):
    """Write ``--out`` (settings, status, the History so far); its path, or ``None``."""
    from refimpl.checkpoint import atomic_write_bytes

    if args.out is None:
        return None
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                if k != "func"}
    record = {"settings": settings, "status": status, "wall_time": wall,
              "history": history.to_dict() if history is not None else None}
    if error is not None:
        record["error"] = error
    atomic_write_bytes(args.out, json.dumps(record, indent=1).encode("utf-8"))
    return args.out


#: the option behind each argument :func:`_run_lrpo` gives run_lrpo itself
LRPO_SET_BY_THE_RUN = {"lr": "--lr", "batch_size": "--batch-size", "seed": "--seed",
                       "backend": "--backend", "optimizer": "--optimizer",
                       "momentum": "--momentum", "progress": "--no-progress",
                       "checkpoint_dir": "--checkpoint-dir", "resume": "--resume",
                       "metadata": "refimpl train (the run's settings)"}


def _lrpo_arguments(args) -> dict:
    """What :func:`_run_lrpo` passes to run_lrpo from the command line (besides the model,
    the data, ``metadata`` and the ``--scheduler-args`` plan)."""
    return {"lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
            "backend": args.backend, "optimizer": args.optimizer, "momentum": args.momentum,
            "progress": False if args.no_progress else None,
            "checkpoint_dir": None if args.checkpoint_dir is None else str(args.checkpoint_dir),
            "resume": args.resume}


def _check_lrpo_args(args, kwargs: dict) -> None:
    """Refuse a ``--scheduler-args`` key of ``--scheduler lrpo`` that the run sets from
    another option, naming that option."""
    _refuse_keys_set_by_the_run(kwargs, {
        key: f"set by {LRPO_SET_BY_THE_RUN.get(key, 'refimpl train')} for --scheduler lrpo"
        for key in [*_lrpo_arguments(args), "metadata"]})


def _run_lrpo(args, model, train, val, extra: dict):
    """Hand the run to :func:`refimpl.experiments.lrpo.run_lrpo`; print its phases and alpha.

    ``--scheduler-args`` may set the LRPO plan (``pretrain_epochs``, ``jump_epochs``,
    ``finetune_epochs``, ``finetune_lr``, ``alpha_max``, ``predictor_steps``); ``--epochs``
    does not apply, since the plan fixes the epoch count.
    """
    from refimpl.experiments.lrpo import run_lrpo

    try:
        result = run_lrpo(model, train, val, **_lrpo_arguments(args),
                          metadata={"cli": run_settings(args, extra)}, **extra)
    except TypeError as exc:  # an unknown key in --scheduler-args
        raise CLIError(f"--scheduler-args: {exc}") from None
    say(result.summary())
    return result.history
