"""``refimpl crosscheck``: compare a scheduler with ours from the command line.

    refimpl crosscheck torch --scheduler cosine --steps 300 [--scheduler-args T_max=100]
    refimpl crosscheck torch --scheduler plateau --losses losses.txt --lr 0.1,0.05
    refimpl crosscheck torch --optimizer adam --steps 200 [--optimizer-args lr=0.01]
    refimpl crosscheck transformers --scheduler greedy --scheduler-args max_lr=inf
    refimpl crosscheck replay trace.npz --scheduler dlrs --scheduler-args delta_d=0.5

``torch`` / ``transformers`` build the framework's class of the same name as ours (e.g.
``torch.optim.lr_scheduler.StepLR``) with the same arguments; ``replay`` reads a trace
recorded with :class:`refimpl.trace.TraceRecorder` in any training loop. Exit status: 0
equal, 1 a step differs (the report names it), 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .compare import CheckResult, check
from .frameworks import (
    FRAMEWORK_RTOL,
    RTOL,
    _require_torch,
    crosscheck_optimizer,
    framework_scheduler,
    loss_trace,
    torch_scheduler,
)


class UsageError(ValueError):
    """A mistake on the command line: printed as one line, exit status 2."""


def read_losses(path: str | Path) -> list[float]:
    """One loss per line (blank lines and ``#`` comments skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise UsageError(f"--losses: cannot read {str(path)!r} ({error.strerror})") from None
    losses = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            losses.append(float(text))
        except ValueError:
            raise UsageError(f"--losses: line {number} of {str(path)!r} is not a number: "
                             f"{text!r}; write one loss per line") from None
    if not losses:
        raise UsageError(f"--losses: {str(path)!r} holds no loss; write one per line")
    return losses


def parse_rates(text: str) -> float | list[float]:
    """``"0.1"`` or ``"0.1,0.05"`` (one rate per parameter group)."""
    try:
        rates = [float(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--lr: {text!r} is not a rate or a comma-separated list of rates "
                         "(one per parameter group), e.g. --lr 0.1,0.05") from None
    return rates[0] if len(rates) == 1 else rates


def default_scheduler_kwargs(name: str, steps: int) -> dict[str, Any]:
    """Hyper-parameters the ``torch`` / ``transformers`` commands use when not given."""
    from ..registry import scheduler_class

    cls = scheduler_class(name)
    tenth = max(1, steps // 10)
    return {
        "StepLR": {"step_size": tenth},
        "MultiStepLR": {"milestones": [steps // 3, 2 * steps // 3]},
        "ExponentialLR": {"gamma": 0.99},
        "CosineAnnealingLR": {"T_max": steps},
        "CosineAnnealingWarmRestarts": {"T_0": tenth, "T_mult": 2},
        "LinearWarmup": {"total_iters": tenth, "after": "cosine"},
        "ReduceLROnPlateau": {"patience": 5},
    }.get(getattr(cls, "__name__", ""), {})


def build_parser() -> argparse.ArgumentParser:
    from ..registry import optimizer_names

    parser = argparse.ArgumentParser(
        prog="refimpl crosscheck",
        description="Feed the same trace to refimpl and another implementation; report the "
                    "first step that differs and the rule of ours that fired there.")
    sub = parser.add_subparsers(dest="command", metavar="{torch,transformers,replay}")
    sub.required = True
    for framework in sorted(FRAMEWORK_RTOL):
        p = sub.add_parser(framework, help=f"against the {framework} class of the same name")
        what = p.add_mutually_exclusive_group(required=True)
        what.add_argument("--scheduler", help="a scheduler name, as for refimpl train")
        what.add_argument("--optimizer", choices=optimizer_names(),
                          help="an optimizer name, as for refimpl train (torch only)")
        p.add_argument("--scheduler-args", dest="scheduler_args", default="",
                       help="key=value,key=value, as for refimpl train")
        # the option's earlier name, still accepted; --help shows one name
        p.add_argument("--kwargs", dest="scheduler_args", help=argparse.SUPPRESS)
        p.add_argument("--optimizer-args", default="", help="key=value,... for --optimizer")
        p.add_argument("--steps", type=int, default=None,
                       help="steps (300 for schedulers, 200 for optimizers; a loss file: its "
                            "length)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--lr", default=None,
                       help="initial rate, or one per group: 0.1,0.05 (0.1; 0.01 optimizers)")
        p.add_argument("--losses", default="random",
                       help="random, adversarial, or a file with one loss per line")
        _add_tolerances(p)
    replay = sub.add_parser("replay", help="a trace recorded in your training loop")
    replay.add_argument("trace", help="the .npz written by refimpl.trace.TraceRecorder")
    replay.add_argument("--scheduler", required=True, help="our scheduler, as for refimpl train")
    replay.add_argument("--scheduler-args", dest="scheduler_args", default="",
                        help="key=value,key=value, as for refimpl train")
    replay.add_argument("--lr", default=None,
                        help="initial rate(s) of ours (default: the trace's first row)")
    replay.add_argument("--losses", default=None,
                        help="a file with one loss per line, for a trace without losses")
    _add_tolerances(replay)
    return parser


def _add_tolerances(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rtol", type=float, default=None,
                   help="relative tolerance (1e-12 for float64 rates)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (0)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``refimpl crosscheck`` (``argv`` excludes the word ``crosscheck``); print the
    report; return 0 when equal, 1 when a step differs, 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        result = replay_command(args) if args.command == "replay" else framework_command(args)
    except (ValueError, TypeError, ImportError) as error:
        print(f"refimpl crosscheck: error: {_one_line(error)}", file=sys.stderr)
        return 2
    print(result)
    return 0 if _ok(result) else 1


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _ok(result: Any) -> bool:
    return result.ok if isinstance(result, CheckResult) else result.equal


def _parse_kv(text: str, option: str) -> dict[str, Any]:
    from ..registry import parse_kv

    return parse_kv(text, option=option)


def framework_command(args: argparse.Namespace):
    """``torch`` / ``transformers``: build both, feed both, compare."""
    if args.optimizer is not None:
        if args.command != "torch":
            raise UsageError("optimizers are cross-checked against torch only")
        kwargs = _parse_kv(args.optimizer_args or args.scheduler_args, "--optimizer-args")
        kwargs.setdefault("lr", 0.01 if args.lr is None else float(args.lr))
        return crosscheck_optimizer(args.optimizer, 200 if args.steps is None else args.steps,
                                    args.seed, rtol=RTOL if args.rtol is None else args.rtol,
                                    **kwargs)
    from ..registry import make_scheduler

    losses = read_losses(args.losses) if args.losses not in ("random", "adversarial") else None
    steps = args.steps if args.steps is not None else (len(losses) if losses else 300)
    if losses is not None and len(losses) < steps:
        raise UsageError(f"--losses has {len(losses)} losses but --steps is {steps}")
    lr = parse_rates(args.lr) if args.lr is not None else 0.1
    kwargs = {**default_scheduler_kwargs(args.scheduler, steps),
              **_parse_kv(args.scheduler_args, "--scheduler-args")}
    ours = make_scheduler(args.scheduler, lr, epochs=steps, steps_per_epoch=1, **kwargs)
    if ours is None:
        raise UsageError("--scheduler none has nothing to compare")
    theirs = _build_theirs(args.command, ours, kwargs)
    if ours.signal == "loss":
        signals = losses[:steps] if losses else loss_trace(args.losses, steps, args.seed, ours)
    elif ours.signal == "none":
        signals = None
    else:
        raise UsageError(f"{type(ours).__name__} is fed {ours.signal!r}, which this command "
                         "cannot make up; record a trace and use 'refimpl crosscheck replay'")
    rtol = FRAMEWORK_RTOL[args.command] if args.rtol is None else args.rtol
    return check(theirs, ours, signals, steps=steps, rtol=rtol, atol=args.atol)


def _build_theirs(framework: str, ours, kwargs: dict[str, Any]):
    """The framework's class of our class's name, on a torch SGD with our groups' rates."""
    torch = _require_torch()
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in ours.base_lrs]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr}
                                 for p, lr in zip(params, ours.base_lrs)])
    name = type(ours).__name__
    theirs = framework_scheduler(framework, name, optimizer, kwargs)
    if theirs is None and framework == "torch" and name == "LinearWarmup":
        theirs = torch_scheduler(ours, optimizer)  # warm-up then `after`: composed from parts
    if theirs is None:
        hint = ("use 'refimpl crosscheck transformers --scheduler greedy'; "
                if name == "GreedyLR" and framework == "torch" else "")
        raise UsageError(f"{framework} has no scheduler named {name}; {hint}for another "
                         "implementation record a trace and use 'refimpl crosscheck replay'")
    return theirs


def replay_command(args: argparse.Namespace) -> CheckResult:
    """``replay``: read the trace, build ours from its first row, compare row by row."""
    from ..registry import make_scheduler
    from ..trace import load_trace

    trace = load_trace(args.trace)
    lr = parse_rates(args.lr) if args.lr is not None else [float(v) for v in trace.lrs[0]]
    if isinstance(lr, list) and len(lr) == 1:
        lr = lr[0]
    kwargs = _parse_kv(args.scheduler_args, "--scheduler-args")
    ours = make_scheduler(args.scheduler, lr, steps_per_epoch=trace.batches_per_epoch,
                          **kwargs)
    if ours is None:
        raise UsageError("--scheduler none has nothing to compare")
    if args.losses is not None and ours.signal == "loss":
        signals = read_losses(args.losses)
        if len(signals) < trace.steps:
            raise UsageError(f"--losses has {len(signals)} losses; the trace has "
                             f"{trace.steps} steps")
        signals = signals[: trace.steps]
    else:
        signals = trace.signals(ours.signal)
    rows = trace.lrs
    position = {"t": 0}

    def read_lr(_):
        return rows[position["t"]]

    def feed(_, signal):
        position["t"] += 1

    return check(trace, ours, signals, steps=trace.steps, read_lr=read_lr, feed=feed,
                 rtol=args.rtol, atol=args.atol, label=f"trace {Path(args.trace).name}")
