"""How the trainer drives a scheduler: when, with which signal, and where its rates go.

A scheduler declares ``interval`` (``"step"``: after every optimizer step; ``"epoch"``:
once per epoch, after validation) and ``signal`` (what ``step`` takes, see
:mod:`refimpl.schedulers.base`). After each scheduler step its rates (and cycled momenta)
are written into the optimizer's parameter groups by
:func:`refimpl.schedulers.apply_to` (:func:`copy_rates`). For an epoch-interval scheduler
whose signal is ``"loss"``, the loss is the validation loss, or the training loss without a
validation set.

A rate is checked where it is used. The step after the last one of a run writes a rate no
step will use, and a schedule evaluated past its end may give one below zero
(``OneCycleLR``'s linear anneal at ``total_steps``, as torch's): :func:`copy_rates` then
leaves the optimizer as it is and returns why, and the trainer raises that only if another
optimizer step would follow.
"""

from __future__ import annotations

from typing import Any

from refimpl.schedulers.base import apply_to
from refimpl.schedulers.checks import check_lr

__all__ = ["INTERVALS", "SIGNALS", "check_scheduler", "copy_rates", "step_scheduler",
           "unusable_rate"]

INTERVALS = ("step", "epoch")
SIGNALS = ("none", "loss", "params", "grads", "batch_losses")

_HOW_TO_BUILD = ("build one, e.g. CosineAnnealingLR(lr, T_max=...) from refimpl.schedulers, "
                 "or by name with refimpl.registry.make_scheduler('cosine', lr, epochs=..., "
                 "steps_per_epoch=...)")


def check_scheduler(scheduler: Any) -> None:
    """Refuse what is not a scheduler (``TypeError``), and a scheduler without a known
    ``interval`` and ``signal`` (``ValueError``)."""
    if isinstance(scheduler, str):
        raise TypeError(f"scheduler must be a scheduler object, got the string {scheduler!r}; "
                        f"{_HOW_TO_BUILD}")
    missing = [name for name in ("step", "state_dict", "load_state_dict", "lrs")
               if not hasattr(scheduler, name)]
    if missing:
        raise TypeError(f"scheduler must be a scheduler (refimpl.schedulers), got "
                        f"{type(scheduler).__name__} without {', '.join(missing)}; "
                        f"{_HOW_TO_BUILD}")
    for attr, allowed in (("interval", INTERVALS), ("signal", SIGNALS)):
        if getattr(scheduler, attr, None) not in allowed:
            raise ValueError(f"scheduler.{attr} must be one of {allowed}, got "
                             f"{getattr(scheduler, attr, None)!r}")


def step_scheduler(scheduler: Any, model: Any, loss: float, batch_losses: list[float]) -> None:
    """One ``scheduler.step`` with the signal it declares.

    ``loss`` is the batch loss (step interval) or the epoch's validation/training loss
    (epoch interval); ``batch_losses`` are the current epoch's batch losses so far.
    """
    kind = scheduler.signal
    if kind == "none":
        scheduler.step()
    elif kind == "loss":
        scheduler.step(float(loss))
    elif kind == "params":
        scheduler.step(model.parameters())
    elif kind == "grads":
        scheduler.step(model.gradients())
    else:  # "batch_losses"
        scheduler.step(list(batch_losses))


def unusable_rate(scheduler: Any) -> str | None:
    """Why an optimizer step could not use the scheduler's rates (a rate that is not a
    finite number >= 0), or ``None`` when it could."""
    for group, lr in enumerate(scheduler.lrs):
        try:
            check_lr(lr, "scheduler lr")
        except ValueError as exc:
            return (f"{exc} (group {group}, from {type(scheduler).__name__}); the next "
                    "optimizer step would use it: check the schedule's arguments (a rate past "
                    "the end of a schedule, e.g. OneCycleLR's beyond total_steps, is not "
                    "meant for use)")
    return None


def copy_rates(scheduler: Any, optimizer: Any) -> str | None:
    """Write ``scheduler.lrs`` (and its cycled momenta) into ``optimizer.param_groups`` with
    :func:`refimpl.schedulers.apply_to` when every rate is usable; otherwise leave the
    optimizer as it is and return :func:`unusable_rate`'s reason."""
    problem = unusable_rate(scheduler)
    if problem is None:
        apply_to(scheduler, optimizer)
    return problem
