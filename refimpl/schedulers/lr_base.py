"""The machinery behind the torch-style schedules (docs/methods.md §3).

torch schedules act on an optimizer's ``param_groups``: they read the rate a group holds,
write the new one back, and remember each group's ``initial_lr``. Two schedulers built on the
same optimizer therefore compose (each multiplies what the other left). :class:`ParamGroups`
stands in for those groups here, so that the same semantics hold without an optimizer:

* pass a float or a list of floats as ``lr``: the scheduler gets private groups;
* pass one :class:`ParamGroups` to several schedulers: they share the rates exactly as torch
  schedulers sharing an optimizer do (``ParamGroups.add_group`` is torch's
  ``optimizer.add_param_group``).

:class:`LRScheduler` is torch's ``LRScheduler`` protocol: construction performs an initial
step (``last_epoch`` goes from ``-1`` to ``0``; from ``k`` to ``k + 1`` when resuming with
``last_epoch=k``), ``step()`` applies the recursive ("chainable") form to the rates the groups
hold now, and ``step(epoch)`` jumps to ``epoch`` through the closed form where there is one.
The classes (:mod:`.decay`, :mod:`.cosine`, :mod:`.functional`, :mod:`.cyclic`, :mod:`.swa`)
take torch's arguments with the optimizer replaced by ``lr``; ``closed_form(epoch)`` gives the
textbook formula from the initial rates, and ``explain()`` its terms at the last epoch.

Resume as torch does with ``last_epoch=k`` (the groups must hold ``initial_lr``: pass
``lr=ParamGroups(lr=current, initial_lr=base)``), or with ``state_dict``/``load_state_dict``.
Every epoch-indexed schedule takes ``interval="epoch"`` (default) or ``"step"``: whether an
"epoch" of the schedule is, for the trainer, an epoch or one optimizer step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from .base import Scheduler
from .checks import check_int, check_interval, check_lr, per_group


# -- the shared groups ------------------------------------------------------------------------
class ParamGroups:
    """The rates (and momenta) an optimizer's parameter groups hold, shareable by schedulers.

    Parameters
    ----------
    lr : float or list of float -- the rate each group holds now.
    initial_lr : float or list, optional -- each group's ``initial_lr`` (the base rate a
        scheduler resumed with ``last_epoch >= 0`` starts from, as torch's groups keep it).
    momentum : float or list, optional -- SGD's momentum (or Adam's beta1) per group.

    ``groups`` is a list of dicts like torch's ``param_groups`` (keys ``"lr"``,
    ``"initial_lr"``, ``"momentum"``); schedulers read and write them in place.
    """

    def __init__(self, lr: float | Sequence[float], *, initial_lr: Any = None,
                 momentum: Any = None):
        lrs = list(lr) if isinstance(lr, (list, tuple)) else [lr]
        if not lrs:
            raise ValueError("lr must be a float or a non-empty list of floats")
        self.groups: list[dict[str, Any]] = [{"lr": check_lr(v)} for v in lrs]
        if initial_lr is not None:
            for group, value in zip(self.groups, per_group(initial_lr, len(lrs), "initial_lr")):
                group["initial_lr"] = value
        if momentum is not None:
            for group, value in zip(self.groups, per_group(momentum, len(lrs), "momentum")):
                group["momentum"] = value

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def lrs(self) -> list[float]:
        return [group["lr"] for group in self.groups]

    @lrs.setter
    def lrs(self, values: Sequence[float]) -> None:
        if len(values) != len(self.groups):
            raise ValueError(f"got {len(values)} rates for {len(self.groups)} groups")
        for group, value in zip(self.groups, values):
            group["lr"] = value

    def add_group(self, lr: float, **extra: Any) -> None:
        """Append a group holding ``lr`` (torch's ``optimizer.add_param_group``)."""
        self.groups.append({"lr": check_lr(lr), **extra})


LrArg = float | Sequence[float] | ParamGroups


def as_param_groups(lr: LrArg) -> ParamGroups:
    return lr if isinstance(lr, ParamGroups) else ParamGroups(lr)


def rule_of(scheduler: Any) -> str:
    """The first paragraph of the class docstring: the scheduler's rule, in one place."""
    doc = type(scheduler).__doc__ or type(scheduler).__name__
    return " ".join(doc.strip().split("\n\n")[0].split())


def number(value: Any) -> str:
    """A number as the rules print it: ints whole, floats in 6 significant digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.6g}"


class Formula(NamedTuple):
    """One group's rate at this step as its schedule's formula, for ``explain()["rule"]``.

    ``name`` (short, e.g. ``"cosine"``), ``symbols`` (the formula), ``numbers`` (the same
    with this step's values), ``value`` (what it evaluates to), ``scale`` (the largest term
    the rate is a difference of, e.g. ``base_lr`` in a cosine near its minimum; ``|value|``
    for a product), ``note`` (how an inner quantity was found, or ``""``).
    """

    name: str
    symbols: str
    numbers: str
    value: float
    scale: float
    note: str = ""


def formula_rule(formulas: Sequence[Formula], held: Sequence[float]) -> str:
    """``"name: symbols = numbers = value"`` for group 0 (and every group's value when there
    are several); says so when a group holds another rate than its formula's (beyond
    rounding: 1e-9 of the largest term), i.e. something else also set it."""
    first = formulas[0]
    text = f"{first.name}: {first.symbols} = {first.numbers} = {number(first.value)}"
    if first.note:
        text += f" ({first.note})"
    if len(formulas) > 1:
        text += f"; group 0 shown, all groups: [{', '.join(number(f.value) for f in formulas)}]"
    apart = [abs(f.value - lr) > 1e-9 * max(abs(f.value), abs(lr), f.scale)
             for f, lr in zip(formulas, held)]
    if any(apart):
        text += (f"; the groups hold [{', '.join(number(lr) for lr in held)}]: their rates "
                 "were also set elsewhere (another scheduler on the same ParamGroups, or a "
                 "loaded state)")
    return text


class GroupRates:
    """Mixin for a scheduler whose rates live in its :class:`ParamGroups` ``self.groups``:
    ``lrs`` reads and writes the rates the groups hold, as a torch scheduler reads and writes
    its optimizer's groups."""

    groups: ParamGroups
    _signed_lrs = True  # the groups hold whatever the formula gives, as torch's do

    @property
    def lrs(self) -> list[float]:
        return self.groups.lrs

    @lrs.setter
    def lrs(self, values: Sequence[float]) -> None:
        self.groups.lrs = list(values)


# -- torch's scheduler protocol ----------------------------------------------------------------
class LRScheduler(GroupRates, Scheduler):
    """Base of the epoch-indexed torch schedules.

    Subclasses implement ``get_lr()`` (torch's recursive form: the new rates from the rates the
    groups hold, ``self.last_epoch`` already advanced) and, where torch has one,
    ``closed_form(epoch)`` (the rates at ``epoch`` from ``base_lrs``), plus ``_terms()``: the
    closed-form terms at ``last_epoch`` that :meth:`explain` reports.

    Attributes: ``base_lrs`` (each group's ``initial_lr``), ``lrs`` (the rates the groups hold),
    ``last_epoch`` (0 after construction), ``groups`` (the :class:`ParamGroups`).
    """

    signal = "none"
    has_closed_form = True

    def __new__(cls, *args: Any, **kwargs: Any):
        scheduler = super().__new__(cls)
        # The constructor's arguments: a composite given schedulers built each from the same
        # rates rebuilds them with these on one shared ParamGroups (composite.shared_groups).
        scheduler._arguments = (args, kwargs)
        return scheduler

    def __init__(self, lr: LrArg, last_epoch: int = -1, *, interval: str = "epoch"):
        self.groups = as_param_groups(lr)
        self.interval = check_interval(interval)
        last_epoch = check_int(last_epoch, "last_epoch", -1)
        if last_epoch == -1:
            for group in self.groups.groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for index, group in enumerate(self.groups.groups):
                if "initial_lr" not in group:
                    raise ValueError(
                        f"resuming with last_epoch={last_epoch} needs each group's initial_lr "
                        f"(group {index} has none); pass lr=ParamGroups(lr=..., initial_lr=...)")
        self.base_lrs = [group["initial_lr"] for group in self.groups.groups]
        self.last_epoch = last_epoch
        self._initial_step()

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def _initial_step(self) -> None:
        """torch's construction step: one step flagged as initial (some rules skip it)."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def step(self, epoch: int | None = None) -> float:
        """Advance one epoch (recursive form), or jump to ``epoch`` (closed form where torch
        has one); return the first group's new rate."""
        self._step_count += 1
        self._update_lr(epoch)
        return self.lr

    def _update_lr(self, epoch: int | None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = check_int(epoch, "epoch", 0)
            values = self.closed_form(epoch) if self.has_closed_form else self.get_lr()
        self.lrs = values

    def get_lr(self) -> list[float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def closed_form(self, epoch: int) -> list[float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _terms(self) -> dict[str, Any]:
        return {}

    def _formula(self, group: int) -> Formula | None:
        """Group ``group``'s rate at ``last_epoch`` as the class's formula with its numbers;
        ``None`` where the class gives none (then ``rule`` is its docstring's sentence)."""
        return None

    def explain(self) -> dict[str, Any]:
        """The last step as a dict: ``rule`` (the formula, the same with this step's numbers,
        and its value: ``"cosine: eta_min + ... = 0 + (0.1 - 0)*(1 + cos(pi*7/50))/2 =
        0.0952414"``), ``last_epoch``, the rates, ``term_scale`` (per group, the largest
        term the rate is computed from, for telling rounding from a rule difference) and
        the closed-form terms at ``last_epoch`` (named as in the class docstring)."""
        formulas = [self._formula(group) for group in range(len(self.base_lrs))]
        explained = {"scheduler": type(self).__name__, "rule": rule_of(self),
                     "last_epoch": self.last_epoch,
                     "lrs": list(self.lrs), "base_lrs": list(self.base_lrs), **self._terms()}
        if formulas and all(f is not None for f in formulas):
            explained["rule"] = formula_rule(formulas, self.lrs)
            explained["term_scale"] = [f.scale for f in formulas]
        return explained

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["_step_count"] = self._step_count
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a state saved by ``state_dict`` (all or nothing, see
        :meth:`refimpl.schedulers.base.Scheduler.load_state_dict`)."""
        step_count = state.get("_step_count", 0) if isinstance(state, dict) else 0
        if not isinstance(step_count, int) or isinstance(step_count, bool):
            raise ValueError(f"state['_step_count'] must be an int, got {step_count!r}")  # noqa: TRY004 - bad input is a ValueError throughout
        if isinstance(state, dict) and isinstance(state.get("lrs"), list) \
                and len(state["lrs"]) != len(self.groups):
            raise ValueError(f"state dict holds {len(state['lrs'])} rates but this scheduler "
                             f"has {len(self.groups)} groups; build it with as many groups")
        super().load_state_dict(state)
        self._step_count = state.get("_step_count", self._step_count)
