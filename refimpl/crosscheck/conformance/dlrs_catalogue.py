"""pytorch-dlrs's catalogue: its ``DLRSScheduler`` against refimpl's :class:`~refimpl.
schedulers.DLRS` (docs/methods.md §6), fed the same epochs of batch losses.

The package's defaults differ from ours (``min_lr=1e-8`` and no ``max_lr``; ours 1e-5 and
0.1), so both bounds are given to both sides.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import numpy as np

from ... import schedulers
from .common import generator, log_uniform, schedule_comparison, take
from .core import BY_DESIGN, Case, Comparison, Explanation, Subject

__all__ = ["SLOPE_ONE", "DLRSSlopeOneFlat", "catalogue", "version"]


def version() -> str:
    import dlrs

    return dlrs.__version__


class DLRSSlopeOneFlat(schedulers.DLRS):
    """refimpl's DLRS with pytorch-dlrs's regime boundary: a normalized slope of exactly 1
    is *flat* (``delta_o``), divergent only above 1 (docs/methods.md §6 reads the paper's
    "100% increase" as ``slope >= 1``)."""

    def delta(self, slope: float) -> float:
        if slope > 1.0:
            return self.delta_d
        if slope >= 0.0:
            return self.delta_o
        return self.delta_i


SLOPE_ONE = Explanation(
    key="dlrs-slope-one-is-flat",
    verdict=BY_DESIGN,
    summary=(
        "pytorch-dlrs treats a normalized slope of exactly 1 as flat (`delta_o`) and only a "
        "slope above 1 as divergent; refimpl, reading the DLRS paper's '100% increase', "
        "calls slope 1 divergent (`delta_d`). Re-run with the boundary moved to `slope > 1`, "
        "the two agree."),
    reference="docs/methods.md §6 (DLRS regimes, Interpretation)",
    reproduction='''\
import torch
from dlrs import DLRSScheduler

from refimpl.schedulers import DLRS

optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
theirs = DLRSScheduler(optimizer, min_lr=1e-5, max_lr=0.1)
ours = DLRS(0.01, min_lr=1e-5, max_lr=0.1)
epoch = [1.0, 2.0, 3.0]                  # slope (3 - 1) / 2 = 1 exactly
theirs.step(epoch)
ours.step(epoch)
# flat: 0.01 - delta_o (1.0) * 0.01 * 1 = 0, clipped to min_lr
assert optimizer.param_groups[0]["lr"] == 1e-5
assert ours.lr == 0.01 - 0.5 * 0.01 * 1 == 0.005       # divergent: delta_d = 0.5
''')


def _epochs(rng: np.random.Generator, count: int, batches: tuple[int, int] = (2, 30)
            ) -> list[list[float]]:
    """Epochs of noisy batch losses, each trending up or down by a random amount."""
    epochs = []
    for _ in range(count):
        n = int(rng.integers(*batches))
        trend = rng.uniform(-0.8, 0.5) * np.linspace(0.0, 1.0, n)
        noise = 1 + 0.03 * rng.standard_normal(n)
        epochs.append([float(x) for x in rng.uniform(0.5, 2.0) * np.exp(trend) * noise])
    return epochs


def dlrs_case(lrs: list[float], kwargs: dict, epochs: list[list[float]], label: str) -> Case:
    def build(cls):
        import torch
        from dlrs import DLRSScheduler

        groups = [{"params": [torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))],
                   "lr": lr} for lr in lrs]
        with warnings.catch_warnings():  # its notes on "typical ranges" and short epochs
            warnings.simplefilter("ignore", UserWarning)
            theirs = DLRSScheduler(torch.optim.SGD(groups), **kwargs)
            return schedule_comparison(theirs, cls(lrs if len(lrs) > 1 else lrs[0], **kwargs),
                                       epochs)

    def boundary_moved(_: Comparison) -> bool:
        return build(DLRSSlopeOneFlat).ok

    text = ", ".join(f"{k}={v:.6g}" for k, v in kwargs.items())
    return Case("DLRSScheduler", f"DLRSScheduler({text}), lr={lrs}, {len(epochs)} epochs "
                f"({label})", lambda: build(schedulers.DLRS), [(SLOPE_ONE, boundary_moved)])


def _random_kwargs(rng: np.random.Generator) -> dict:
    return {"delta_d": float(rng.uniform(0.1, 1.0)), "delta_o": float(rng.uniform(0.5, 2.0)),
            "delta_i": float(rng.uniform(0.01, 0.5)), "min_lr": log_uniform(rng, 1e-7, 1e-5),
            "max_lr": log_uniform(rng, 0.05, 1.0)}


def _cases(epochs_per_run: int) -> Callable[[int, int], Iterable[Case]]:
    def random_case(rng: np.random.Generator) -> Case:
        lrs = [log_uniform(rng, 1e-4, 0.05) for _ in range(int(rng.integers(1, 4)))]
        return dlrs_case(lrs, _random_kwargs(rng), _epochs(rng, epochs_per_run), "random")

    def cases(seed: int, configs: int) -> Iterable[Case]:
        rng = generator(seed, "DLRSScheduler")
        bounds = {"min_lr": 1e-5, "max_lr": 0.1}
        with_slope_one = _epochs(rng, epochs_per_run)
        with_slope_one[len(with_slope_one) // 2] = [1.0, 2.0, 3.0]  # slope exactly 1
        single_batches = _epochs(rng, epochs_per_run)
        for index in range(0, len(single_batches), 3):  # the package skips these epochs
            single_batches[index] = single_batches[index][:1]
        edges = [dlrs_case([0.01], bounds, with_slope_one, "an epoch of slope exactly 1"),
                 dlrs_case([0.01, 0.002], bounds, single_batches, "one-batch epochs")]
        yield from take(edges, lambda _: random_case(rng), configs)
    return cases


def catalogue(quick: bool = False) -> list[Subject]:
    epochs = 15 if quick else 60
    return [Subject("DLRSScheduler", "scheduler", ours="refimpl.schedulers.DLRS (min_lr and "
                    "max_lr given)", cases=_cases(epochs)),
            Subject("DLRSOnPlateau", "scheduler", note="no refimpl equivalent")]
