"""How the trainer drives a scheduler: when, with which signal, and where its rates go.

A scheduler declares ``interval`` (``"step"``: after every optimizer step; ``"epoch"``:
once per epoch, after validation) and ``signal`` (what ``step`` takes, see
:mod:`refimpl.schedulers.base`). After each scheduler step its ``lrs`` are copied into the
optimizer's parameter groups (:func:`copy_rates`). For an epoch-interval scheduler whose
signal is ``"loss"``, the loss is the validation loss, or the training loss without a
validation set.
"""

from __future__ import annotations

from typing import Any

from refimpl.schedulers.base import check_lr

__all__ = ["INTERVALS", "SIGNALS", "check_scheduler", "copy_rates", "step_scheduler"]

INTERVALS = ("step", "epoch")
SIGNALS = ("none", "loss", "params", "grads", "batch_losses")


def check_scheduler(scheduler: Any) -> None:
    """Refuse an object without a known ``interval`` and ``signal``."""
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


def copy_rates(scheduler: Any, optimizer: Any) -> None:
    """Write ``scheduler.lrs`` into ``optimizer.param_groups`` (one rate for all groups, or
    one per group)."""
    groups = optimizer.param_groups
    lrs = list(scheduler.lrs)
    if len(lrs) == 1:
        lrs = lrs * len(groups)
    if len(lrs) != len(groups):
        raise ValueError(f"the scheduler has {len(lrs)} rates but the optimizer has "
                         f"{len(groups)} parameter groups; build them with the same groups")
    for group, lr in zip(groups, lrs):
        group["lr"] = check_lr(lr, "scheduler lr")
    # cycling schedules (CyclicLR, OneCycleLR) move SGD's momentum or Adam's beta1, as torch
    momentums = list(getattr(scheduler, "momentums", None) or [])
    for group, momentum in zip(groups, momentums * len(groups) if len(momentums) == 1
                               else momentums):
        if "betas" in group:
            group["betas"] = (momentum, *group["betas"][1:])
        elif "momentum" in group:
            group["momentum"] = momentum
        else:
            raise ValueError("cycle_momentum needs an optimizer with momentum or betas (SGD, "
                             "Adam); build the scheduler with cycle_momentum=False")
