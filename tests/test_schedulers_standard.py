"""refimpl.schedulers.standard: traces against torch.optim.lr_scheduler, closed forms,
validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refimpl.crosscheck import adversarial_losses, random_losses, replay_scheduler
from refimpl.schedulers import make
from refimpl.schedulers.standard import (
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    ExponentialLR,
    LinearWarmup,
    MultiStepLR,
    ReduceLROnPlateau,
    StepLR,
)

STEPS = 300
N_CONFIGS = 50
# float64 traces: we run torch's own recursion, so any difference is a bug; the bound.
RTOL = 1e-12

EPOCH_SCHEDULERS = ["constant", "step", "multistep", "exponential", "cosine", "cosine-restarts"]


def random_lrs(rng: np.random.Generator) -> list[float]:
    """One to three parameter groups with log-uniform rates."""
    return [float(10 ** rng.uniform(-4, 0)) for _ in range(int(rng.integers(1, 4)))]


def random_kwargs(name: str, rng: np.random.Generator) -> dict:
    """A random valid configuration of scheduler ``name`` (torch keyword names)."""
    if name == "constant":
        return {"factor": float(rng.uniform(0.01, 1.0)), "total_iters": int(rng.integers(1, 400))}
    if name == "step":
        return {"step_size": int(rng.integers(1, 60)), "gamma": float(rng.uniform(0.1, 1.0))}
    if name == "multistep":
        milestones = rng.integers(0, 320, size=int(rng.integers(0, 8))).tolist()
        if rng.random() < 0.2:  # a milestone at 0 acts at construction, as in torch
            milestones.append(0)
        return {"milestones": milestones, "gamma": float(rng.uniform(0.1, 1.0))}
    if name == "exponential":
        return {"gamma": float(rng.uniform(0.9, 1.0))}
    if name == "cosine":
        return {"T_max": int(rng.integers(1, 400)), "eta_min": float(rng.choice([0.0, 1e-5, 1e-3]))}
    if name == "cosine-restarts":
        return {"T_0": int(rng.integers(1, 60)), "T_mult": int(rng.integers(1, 4)),
                "eta_min": float(rng.choice([0.0, 1e-5, 1e-3]))}
    if name == "plateau":
        groups_min_lr = float(rng.choice([0.0, 1e-6, 1e-4]))
        return {"mode": str(rng.choice(["min", "max"])), "factor": float(rng.uniform(0.0, 0.99)),
                "patience": int(rng.integers(0, 12)), "threshold": float(rng.choice([0.0, 1e-4, 0.05])),
                "threshold_mode": str(rng.choice(["rel", "abs"])), "cooldown": int(rng.integers(0, 5)),
                "min_lr": groups_min_lr, "eps": float(rng.choice([0.0, 1e-8, 1e-3]))}
    raise AssertionError(name)


def _losses_for(scheduler, rng, kind):
    plateau = getattr(scheduler, "after", None) or scheduler
    seed = int(rng.integers(2**31))
    if kind == "random":
        losses = random_losses(STEPS, seed)
        return losses if plateau.mode == "min" else [-x for x in losses]
    return adversarial_losses(STEPS, seed, mode=plateau.mode, threshold=plateau.threshold,
                              threshold_mode=plateau.threshold_mode)


@pytest.mark.torch
@pytest.mark.parametrize("name", EPOCH_SCHEDULERS)
def test_epoch_schedulers_match_torch(name):
    pytest.importorskip("torch", reason="trace cross-check needs torch")
    rng = np.random.default_rng(sum(map(ord, name)))
    for _ in range(N_CONFIGS):
        kwargs = random_kwargs(name, rng)
        result = replay_scheduler(make(name, random_lrs(rng), **kwargs), STEPS, rtol=RTOL)
        assert result.equal, f"{name} {kwargs}: {result}"


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["random", "adversarial"])
def test_reduce_on_plateau_matches_torch(kind):
    pytest.importorskip("torch", reason="trace cross-check needs torch")
    rng = np.random.default_rng(7 if kind == "random" else 8)
    n_reduced = 0
    for _ in range(N_CONFIGS):
        lrs = random_lrs(rng)
        kwargs = random_kwargs("plateau", rng)
        if rng.random() < 0.3:  # per-group floors
            kwargs["min_lr"] = [float(rng.choice([0.0, 1e-5, 1e-3])) for _ in lrs]
        scheduler = ReduceLROnPlateau(lrs, **kwargs)
        losses = _losses_for(scheduler, rng, kind)
        result = replay_scheduler(scheduler, STEPS, losses, rtol=RTOL)
        assert result.equal, f"{kwargs}: {result}"
        n_reduced += scheduler.lrs != lrs
    assert n_reduced >= N_CONFIGS // 2  # the traces do exercise reductions


@pytest.mark.torch
def test_linear_warmup_matches_torch_sequential_lr():
    pytest.importorskip("torch", reason="trace cross-check needs torch")
    rng = np.random.default_rng(11)
    afters = [*EPOCH_SCHEDULERS, "plateau", None]
    for index in range(N_CONFIGS + len(afters)):
        after_name = afters[index % len(afters)]
        lrs = random_lrs(rng)
        after = None if after_name is None else make(after_name, lrs,
                                                     **random_kwargs(after_name, rng))
        warmup = LinearWarmup(lrs, after, start_factor=float(rng.uniform(0.01, 1.0)),
                              total_iters=int(rng.integers(1, 100)))
        losses = _losses_for(warmup, rng, "adversarial") if warmup.signal == "loss" else None
        result = replay_scheduler(warmup, STEPS, losses, rtol=RTOL)
        assert result.equal, f"warmup then {after_name}: {result}"


# -- closed forms ---------------------------------------------------------------------------
def test_closed_forms_by_hand():
    assert StepLR(1.0, step_size=3, gamma=0.5).closed_form(7) == [0.25]
    assert MultiStepLR(2.0, milestones=[5, 2, 5], gamma=0.5).closed_form(5) == [0.25]
    assert ExponentialLR([1.0, 2.0], gamma=0.5).closed_form(3) == [0.125, 0.25]
    assert ConstantLR(1.0, factor=0.5, total_iters=4).closed_form(3) == [0.5]
    assert ConstantLR(1.0, factor=0.5, total_iters=4).closed_form(4) == [1.0]
    cosine = CosineAnnealingLR(1.0, T_max=10, eta_min=0.2)
    assert cosine.closed_form(5)[0] == pytest.approx(0.6, rel=1e-15)
    assert cosine.closed_form(10)[0] == pytest.approx(0.2, rel=1e-15)
    restarts = CosineAnnealingWarmRestarts(1.0, T_0=2, T_mult=3)  # cycles [0,2) [2,8) [8,26)
    assert restarts.closed_form(8) == [1.0]
    assert restarts.closed_form(5)[0] == pytest.approx(0.5, rel=1e-15)  # T_cur=3 of T_i=6
    warmup = LinearWarmup(1.0, StepLR(1.0, step_size=2), start_factor=0.2, total_iters=4)
    assert warmup.closed_form(2)[0] == pytest.approx(0.6, rel=1e-15)
    assert warmup.closed_form(7)[0] == pytest.approx(0.1, rel=1e-15)  # StepLR at epoch 3


@pytest.mark.parametrize("name", EPOCH_SCHEDULERS + ["warmup"])
def test_recursive_form_agrees_with_closed_form(name):
    rng = np.random.default_rng(3)
    for _ in range(20):
        lrs = random_lrs(rng)
        if name == "warmup":
            inner = str(rng.choice(EPOCH_SCHEDULERS))
            scheduler = LinearWarmup(lrs, make(inner, lrs, **random_kwargs(inner, rng)),
                                     start_factor=float(rng.uniform(0.01, 1)),
                                     total_iters=int(rng.integers(1, 50)))
        else:
            scheduler = make(name, lrs, **random_kwargs(name, rng))
        closed = np.array([scheduler.closed_form(epoch) for epoch in range(STEPS + 1)])
        recursive = np.array(_trace(scheduler, STEPS))
        np.testing.assert_allclose(recursive, closed, rtol=0,
                                   atol=_closed_form_tolerance(scheduler), err_msg=name)


def _trace(scheduler, steps: int) -> list[list[float]]:
    """Rates of all groups after construction and after each of ``steps`` steps."""
    trace = [list(scheduler.lrs)]
    for _ in range(steps):
        scheduler.step()
        trace.append(list(scheduler.lrs))
    return trace


def _closed_form_tolerance(scheduler) -> float:
    """Absolute tolerance between torch's recursion and the closed form after <= 300 steps.

    Measured against the schedule's scale (largest of the base rates and eta_min), because a
    cosine's rate passes near eta_min (often 0) where relative errors mean nothing.
    Multiplicative recursions accumulate about one ulp per step (measured <= 2e-15 of the
    scale over 200 configs x 300 steps): 1e-12 leaves a 500x margin. torch's cosine
    recursion divides by 1 + cos(pi (e-1)/T), which cancels near e = T and amplifies
    rounding (measured <= 7e-13 of the scale): 1e-11.
    """
    inner = getattr(scheduler, "after", None) or scheduler
    eta_min = getattr(inner, "eta_min", 0.0)
    scale = max([*scheduler.base_lrs, eta_min])
    return (1e-11 if isinstance(inner, CosineAnnealingLR) else 1e-12) * scale


def test_constant_lr_follows_torch_factor_and_total_iters():
    scheduler = ConstantLR(0.3, factor=0.5, total_iters=2)
    trace = [scheduler.lr] + [scheduler.step() for _ in range(3)]
    assert trace == [0.15, 0.15, 0.3, 0.3]


def test_reduce_on_plateau_semantics_by_hand():
    scheduler = ReduceLROnPlateau(1.0, factor=0.5, patience=1, threshold=0.1, cooldown=1)
    # 1.0 is best; 0.9 ties best*(1-0.1) exactly -> bad (1); 0.95 bad (2 > patience) -> 0.5,
    # cooldown 1 swallows the next bad; 0.5 improves (0.5 < 0.9).
    trace = [scheduler.step(loss) for loss in [1.0, 1.0 * (1.0 - 0.1), 0.95, 2.0, 0.5]]
    assert trace == [1.0, 1.0, 0.5, 0.5, 0.5]
    assert scheduler.best == 0.5 and scheduler.num_bad_epochs == 0


def test_per_group_rates_and_min_lr():
    scheduler = ReduceLROnPlateau([1.0, 0.1], factor=0.1, patience=0, min_lr=[0.5, 0.0])
    scheduler.step(1.0)
    scheduler.step(2.0)
    assert scheduler.lrs == [0.5, 0.1 * 0.1]
    assert scheduler.lr == 0.5


def test_interval_and_signal_attributes():
    assert CosineAnnealingLR(0.1, T_max=3).interval == "epoch"
    assert CosineAnnealingLR(0.1, T_max=3, interval="step").interval == "step"
    assert StepLR(0.1, 2).signal == "none"
    assert ReduceLROnPlateau(0.1).signal == "loss"
    warm = LinearWarmup(0.1, ReduceLROnPlateau(0.1, interval="step"), total_iters=2)
    assert (warm.signal, warm.interval) == ("loss", "step")
    assert LinearWarmup(0.1).signal == "none"


@pytest.mark.parametrize("build, name", [
    (lambda: StepLR(-0.1, step_size=2), "lr"),
    (lambda: StepLR(float("nan"), step_size=2), "lr"),
    (lambda: CosineAnnealingLR([0.1, -1.0], T_max=5), "lr"),
    (lambda: ReduceLROnPlateau(0.1, factor=1.0), "factor"),
    (lambda: ReduceLROnPlateau(0.1, factor=1.5), "factor"),
    (lambda: ReduceLROnPlateau(0.1, mode="minimum"), "mode"),
    (lambda: ReduceLROnPlateau(0.1, threshold_mode="relative"), "threshold_mode"),
    (lambda: ReduceLROnPlateau(0.1, patience=-1), "patience"),
    (lambda: ReduceLROnPlateau([0.1, 0.2], min_lr=[0.0]), "min_lr"),
    (lambda: CosineAnnealingLR(0.1, T_max=0), "T_max"),
    (lambda: CosineAnnealingLR(0.1, T_max=2.5), "T_max"),
    (lambda: CosineAnnealingWarmRestarts(0.1, T_0=0), "T_0"),
    (lambda: CosineAnnealingWarmRestarts(0.1, T_0=2, T_mult=0), "T_mult"),
    (lambda: CosineAnnealingLR(0.1, T_max=3, eta_min=-1.0), "eta_min"),
    (lambda: StepLR(0.1, step_size=0), "step_size"),
    (lambda: MultiStepLR(0.1, milestones=5), "milestones"),
    (lambda: ExponentialLR(0.1, gamma=math.inf), "gamma"),
    (lambda: ConstantLR(0.1, factor=0.0), "factor"),
    (lambda: ConstantLR(0.1, factor=1.2), "factor"),
    (lambda: ConstantLR(0.1, total_iters=0), "total_iters"),
    (lambda: LinearWarmup(0.1, start_factor=0.0), "start_factor"),
    (lambda: LinearWarmup(0.1, StepLR(0.2, 2)), "after"),
    (lambda: LinearWarmup(0.1, "cosine"), "after"),
    (lambda: StepLR(0.1, 2, interval="batch"), "interval"),
])
def test_invalid_hyper_parameters_name_the_argument(build, name):
    with pytest.raises(ValueError, match=name):
        build()


def test_plateau_rejects_non_numeric_loss():
    with pytest.raises(ValueError, match="loss"):
        ReduceLROnPlateau(0.1).step("high")
