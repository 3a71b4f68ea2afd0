"""The torch-style schedules of refimpl.schedulers: traces against torch.optim.lr_scheduler, closed forms,
validation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from refimpl.crosscheck import adversarial_losses, random_losses, replay_scheduler
from refimpl.registry import make_scheduler
from refimpl.schedulers import (
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
        result = replay_scheduler(make_scheduler(name, random_lrs(rng), **kwargs), STEPS, rtol=RTOL)
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
        after = None if after_name is None else make_scheduler(after_name, lrs,
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
            scheduler = LinearWarmup(lrs, make_scheduler(inner, lrs, **random_kwargs(inner, rng)),
                                     start_factor=float(rng.uniform(0.01, 1)),
                                     total_iters=int(rng.integers(1, 50)))
        else:
            scheduler = make_scheduler(name, lrs, **random_kwargs(name, rng))
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


# -- every torch class, built by its torch name on both sides --------------------------------
# A recipe is (class name, kwargs); the same kwargs go to refimpl's class (on ParamGroups) and
# to torch's (on an optimizer), so the comparison covers the keyword names too.
def _torch_scheduler_class(name: str):
    torch = pytest.importorskip("torch", reason="trace cross-check needs torch")
    if name == "SWALR":
        return torch.optim.swa_utils.SWALR
    return getattr(torch.optim.lr_scheduler, name)


def _torch_optimizer(lrs, *, adam=False, initial_lrs=None):
    torch = pytest.importorskip("torch", reason="trace cross-check needs torch")
    params = [torch.nn.Parameter(torch.zeros(1, dtype=torch.float64)) for _ in lrs]
    cls = torch.optim.Adam if adam else torch.optim.SGD
    optimizer = cls([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)])
    for group, initial in zip(optimizer.param_groups, initial_lrs or []):
        group["initial_lr"] = initial
    return optimizer


def _torch_momentums(optimizer) -> list[float]:
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in optimizer.param_groups]


def _build_both(recipe, lrs, *, adam=False, last_epoch=-1, initial_lrs=None):
    """(ours, theirs, torch optimizer) for one recipe; composites take child recipes."""
    from refimpl import schedulers

    groups = schedulers.ParamGroups(lrs, initial_lr=initial_lrs)
    optimizer = _torch_optimizer(lrs, adam=adam, initial_lrs=initial_lrs)
    ours, theirs = _build_on(recipe, groups, optimizer, last_epoch)
    return ours, theirs, optimizer


def _build_on(recipe, groups, optimizer, last_epoch=-1):
    from refimpl import schedulers

    name, kwargs = recipe
    if name in ("SequentialLR", "ChainedScheduler"):
        pairs = [_build_on(child, groups, optimizer) for child in kwargs["children"]]
        ours_children, their_children = [p[0] for p in pairs], [p[1] for p in pairs]
        if name == "ChainedScheduler":
            return (schedulers.ChainedScheduler(ours_children),
                    _torch_scheduler_class(name)(their_children))
        return (schedulers.SequentialLR(groups, ours_children, kwargs["milestones"]),
                _torch_scheduler_class(name)(optimizer, their_children, kwargs["milestones"]))
    extra = {} if last_epoch == -1 else {"last_epoch": last_epoch}
    ours = getattr(schedulers, name)(groups, **kwargs, **extra)
    theirs = _torch_scheduler_class(name)(optimizer, **kwargs, **extra)
    return ours, theirs


def _lambda_of(rng):
    kind, a = int(rng.integers(3)), float(rng.uniform(0.9, 1.0))
    if kind == 0:
        return lambda e: a**e
    if kind == 1:
        return lambda e: 1.0 / (1.0 + (1 - a) * e)
    return lambda e: a if e % 7 else 1.0 / a


def random_recipe(name: str, rng: np.random.Generator, n_groups: int, steps: int = STEPS):
    """A random valid configuration of torch class ``name`` (torch keyword names)."""
    pick = rng.choice
    if name == "LambdaLR":
        return name, {"lr_lambda": _lambda_of(rng) if rng.random() < 0.5
                      else [_lambda_of(rng) for _ in range(n_groups)]}
    if name == "MultiplicativeLR":
        return name, {"lr_lambda": _lambda_of(rng)}
    if name == "LinearLR":
        return name, {"start_factor": float(rng.uniform(0.01, 1.0)),
                      "end_factor": float(rng.uniform(0.0, 1.0)),
                      "total_iters": int(rng.integers(1, 400))}
    if name == "PolynomialLR":
        return name, {"total_iters": int(rng.integers(1, 400)),
                      "power": float(pick([0.5, 1.0, 2.0, rng.uniform(0, 3)]))}
    if name == "CyclicLR":
        low = [float(10 ** rng.uniform(-5, -2)) for _ in range(n_groups)]
        kwargs = {"base_lr": low if rng.random() < 0.5 else low[0],
                  "max_lr": float(10 ** rng.uniform(-2, 0)),
                  "step_size_up": int(rng.integers(1, 100)),
                  "step_size_down": None if rng.random() < 0.3 else int(rng.integers(1, 100)),
                  "mode": str(pick(["triangular", "triangular2", "exp_range"])),
                  "gamma": float(rng.uniform(0.99, 1.0)),
                  "cycle_momentum": bool(rng.random() < 0.7),
                  "base_momentum": float(rng.uniform(0.5, 0.85)),
                  "max_momentum": float(rng.uniform(0.85, 0.99))}
        return name, kwargs
    if name == "OneCycleLR":
        total = int(rng.integers(steps, 3 * steps))
        pct = float(rng.uniform(0.05, 0.6))
        while pct * total == int(pct * total):  # avoid a zero-length phase (torch: 0/0)
            pct = float(rng.uniform(0.05, 0.6))
        return name, {"max_lr": [float(10 ** rng.uniform(-3, 0)) for _ in range(n_groups)],
                      "total_steps": total, "pct_start": pct,
                      "anneal_strategy": str(pick(["cos", "linear"])),
                      "cycle_momentum": bool(rng.random() < 0.7),
                      "base_momentum": float(rng.uniform(0.5, 0.85)),
                      "max_momentum": float(rng.uniform(0.85, 0.99)),
                      "div_factor": float(rng.uniform(2, 50)),
                      "final_div_factor": float(10 ** rng.uniform(1, 5)),
                      "three_phase": bool(rng.random() < 0.5)}
    if name == "SWALR":
        return name, {"swa_lr": float(10 ** rng.uniform(-4, -1)),
                      "anneal_epochs": int(rng.integers(0, 60)),
                      "anneal_strategy": str(pick(["cos", "linear"]))}
    if name == "CosineAnnealingWarmRestarts":
        return name, random_kwargs("cosine-restarts", rng)
    short = {"StepLR": "step", "MultiStepLR": "multistep", "ConstantLR": "constant",
             "ExponentialLR": "exponential", "CosineAnnealingLR": "cosine"}
    if name in short:
        return name, random_kwargs(short[name], rng)
    if name in ("SequentialLR", "ChainedScheduler"):
        kinds = [k for k in CHAINABLE if k != "SWALR" or name == "ChainedScheduler"]
        children = [random_recipe(str(pick(kinds)), rng, n_groups)
                    for _ in range(int(rng.integers(1, 4)))]
        if name == "ChainedScheduler":
            return name, {"children": children}
        milestones = sorted(int(m) for m in rng.integers(1, steps, size=len(children) - 1))
        return name, {"children": children, "milestones": milestones}
    raise AssertionError(name)


CHAINABLE = ["LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR", "LinearLR",
             "ExponentialLR", "PolynomialLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts",
             "SWALR"]
NEW_CLASSES = ["LambdaLR", "MultiplicativeLR", "LinearLR", "PolynomialLR", "CyclicLR",
               "OneCycleLR", "SWALR", "SequentialLR", "ChainedScheduler"]


def _compare_trace(ours, theirs, optimizer, steps: int, label: str) -> None:
    """Step both ``steps`` times; rates (and momenta) equal to 1e-12 relative, every step."""
    momentum = getattr(ours, "momentums", None) is not None
    ours_trace, their_trace = [list(ours.lrs)], [[g["lr"] for g in optimizer.param_groups]]
    ours_m, their_m = [ours.momentums] if momentum else [], [_torch_momentums(optimizer)]
    for _ in range(steps):
        optimizer.step()
        ours.step()
        theirs.step()
        ours_trace.append(list(ours.lrs))
        their_trace.append([g["lr"] for g in optimizer.param_groups])
        if momentum:
            ours_m.append(ours.momentums)
            their_m.append(_torch_momentums(optimizer))
    np.testing.assert_allclose(ours_trace, their_trace, rtol=RTOL, atol=0, err_msg=label)
    if momentum:
        np.testing.assert_allclose(ours_m, their_m[:len(ours_m)], rtol=RTOL, atol=0,
                                   err_msg=f"momentum {label}")


@pytest.mark.torch
@pytest.mark.parametrize("name", NEW_CLASSES)
def test_every_torch_class_matches_torch(name):
    pytest.importorskip("torch", reason="trace cross-check needs torch")
    rng = np.random.default_rng(sum(map(ord, name)) + 1)
    for index in range(N_CONFIGS):
        lrs = random_lrs(rng)
        recipe = random_recipe(name, rng, len(lrs))
        adam = name in ("CyclicLR", "OneCycleLR") and index % 2 == 1  # beta1 cycling
        ours, theirs, optimizer = _build_both(recipe, lrs, adam=adam)
        _compare_trace(ours, theirs, optimizer, STEPS, f"{recipe}")


ALL_EPOCH_CLASSES = [*CHAINABLE, "CyclicLR", "OneCycleLR"]


@pytest.mark.torch
@pytest.mark.parametrize("name", ALL_EPOCH_CLASSES)
def test_resume_with_last_epoch_matches_torch(name):
    """torch's resume pattern: run k steps, build a second scheduler with last_epoch=k on the
    same groups (they hold initial_lr and the rates reached), continue; both sides alike."""
    pytest.importorskip("torch", reason="trace cross-check needs torch")
    rng = np.random.default_rng(sum(map(ord, name)) + 2)
    for _ in range(N_CONFIGS // 5):
        lrs = random_lrs(rng)
        recipe = random_recipe(name, rng, len(lrs))
        ours, theirs, optimizer = _build_both(recipe, lrs, adam=bool(rng.random() < 0.5))
        k = int(rng.integers(0, 100))
        for _ in range(k):
            optimizer.step()
            ours.step()
            theirs.step()
        ours, theirs = _build_on(recipe, ours.groups, optimizer, last_epoch=k)
        assert ours.last_epoch == theirs.last_epoch == k + 1
        _compare_trace(ours, theirs, optimizer, 100, f"resume at {k}: {recipe}")


@pytest.mark.torch
@pytest.mark.parametrize("name", ALL_EPOCH_CLASSES)
def test_step_to_epoch_matches_torch(name):
    """``step(epoch)``: torch's closed-form jump (or its rule at that epoch), epochs going
    forward, repeating and going back; fractional epochs for CosineAnnealingWarmRestarts."""
    pytest.importorskip("torch", reason="trace cross-check needs torch")
    rng = np.random.default_rng(sum(map(ord, name)) + 3)
    for _ in range(N_CONFIGS // 5):
        lrs = random_lrs(rng)
        recipe = random_recipe(name, rng, len(lrs))
        ours, theirs, optimizer = _build_both(recipe, lrs)
        limit = recipe[1].get("total_steps", STEPS)
        for _ in range(60):
            if name == "CosineAnnealingWarmRestarts":
                epoch = float(rng.uniform(0, STEPS))
            else:
                epoch = int(rng.integers(0, limit + 1))
            optimizer.step()
            ours.step(epoch)
            with warnings.catch_warnings():  # torch deprecates step(epoch), with a warning
                warnings.simplefilter("ignore", UserWarning)
                theirs.step(epoch)
            np.testing.assert_allclose(ours.lrs, [g["lr"] for g in optimizer.param_groups],
                                       rtol=RTOL, atol=0, err_msg=f"epoch {epoch}: {recipe}")
            if getattr(ours, "momentums", None) is not None:
                np.testing.assert_allclose(ours.momentums, _torch_momentums(optimizer),
                                           rtol=RTOL, atol=0)


@pytest.mark.torch
def test_plateau_with_a_group_added_while_running_matches_torch():
    torch = pytest.importorskip("torch", reason="trace cross-check needs torch")
    from refimpl.schedulers import ParamGroups

    losses = random_losses(60, seed=4)
    groups = ParamGroups([0.1])
    ours = ReduceLROnPlateau(groups, patience=1, factor=0.5, min_lr=1e-3)
    optimizer = _torch_optimizer([0.1])
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=1, factor=0.5,
                                                        min_lr=1e-3)
    for step, loss in enumerate(losses):
        if step == 20:
            groups.add_group(0.3)
            optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))],
                                       "lr": 0.3})
        ours.step(loss)
        theirs.step(loss)
        assert ours.lrs == [g["lr"] for g in optimizer.param_groups]
    assert len(ours.lrs) == 2 and ours.lrs[1] < 0.3  # the new group was reduced too
    state = ours.state_dict()
    assert len(state["base_lrs"]) == len(state["min_lrs"]) == 2


def test_plateau_with_per_group_min_lr_refuses_an_added_group():
    from refimpl.schedulers import ParamGroups

    groups = ParamGroups([0.1])
    scheduler = ReduceLROnPlateau(groups, patience=0, min_lr=[1e-3])
    groups.add_group(0.2)
    scheduler.step(1.0)
    with pytest.raises(ValueError, match="min_lrs"):
        scheduler.step(2.0)  # a reduction: min_lr covers one group of two


# -- CosineAnnealingWarmRestarts: a loaded T_cur past the cycle wraps into it ----------------
@pytest.mark.parametrize("loaded, expected", [(7, 0), (8, 1), (9, 2)])
def test_warm_restarts_wraps_a_loaded_t_cur_as_torch(loaded, expected):
    scheduler = CosineAnnealingWarmRestarts(1.0, T_0=4)
    state = scheduler.state_dict()
    state["T_cur"] = loaded
    scheduler.load_state_dict(state)
    scheduler.step()
    assert scheduler.T_cur == expected and scheduler.T_i == 4
    assert scheduler.lr == pytest.approx((1 + math.cos(math.pi * expected / 4)) / 2, rel=1e-15)
    torch = pytest.importorskip("torch", reason="the torch half of the check needs torch")
    optimizer = _torch_optimizer([1.0])
    theirs = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=4)
    theirs.load_state_dict({**theirs.state_dict(), "T_cur": loaded})
    optimizer.step()
    theirs.step()
    assert (theirs.T_cur, theirs.T_i) == (expected, 4)
    assert scheduler.lr == optimizer.param_groups[0]["lr"]


def test_warm_restarts_fractional_epochs_by_hand():
    scheduler = CosineAnnealingWarmRestarts(1.0, T_0=2, T_mult=2)  # cycles [0,2) [2,6) [6,14)
    scheduler.step(6.5)
    assert (scheduler.T_cur, scheduler.T_i, scheduler.last_epoch) == (0.5, 8, 6)
    assert scheduler.lr == pytest.approx((1 + math.cos(math.pi * 0.5 / 8)) / 2, rel=1e-15)
    # an epoch exactly on a restart of a T_mult > 1 schedule starts the new cycle (torch's
    # float logarithm puts 121 at the end of cycle 4 for T_0=1, T_mult=3)
    restarts = CosineAnnealingWarmRestarts(1.0, T_0=1, T_mult=3)
    restarts.step(121)
    assert (restarts.T_cur, restarts.T_i, restarts.lr) == (0, 243, 1.0)


# -- state dicts of the new classes: mid-trace round trip through JSON ------------------------
@pytest.mark.parametrize("name", NEW_CLASSES + ["CosineAnnealingWarmRestarts"])
def test_new_classes_round_trip_mid_trace(name):
    import json

    from refimpl import schedulers

    rng = np.random.default_rng(sum(map(ord, name)) + 4)
    for _ in range(5):
        lrs = random_lrs(rng)
        recipe = random_recipe(name, rng, len(lrs))
        reference = _build_ours(recipe, lrs)
        expected = [_stepped(reference) for _ in range(STEPS // 2)]
        first = _build_ours(recipe, lrs)
        for _ in range(40):
            first.step()
        saved = json.loads(json.dumps(first.state_dict()))
        resumed = _build_ours(recipe, lrs)  # fresh, at epoch 0
        resumed.load_state_dict(saved)
        assert resumed.lrs == expected[39]
        if getattr(first, "momentums", None) is not None:
            assert resumed.momentums == first.momentums
        assert [_stepped(resumed) for _ in range(40, STEPS // 2)] \
            == expected[40:], recipe
        assert isinstance(resumed, getattr(schedulers, name))


def _stepped(scheduler) -> list[float]:
    scheduler.step()
    return list(scheduler.lrs)


def _build_ours(recipe, lrs):
    from refimpl import schedulers

    name, kwargs = recipe
    groups = schedulers.ParamGroups(lrs)
    if name in ("SequentialLR", "ChainedScheduler"):
        children = [getattr(schedulers, n)(groups, **k) for n, k in kwargs["children"]]
        if name == "ChainedScheduler":
            return schedulers.ChainedScheduler(children)
        return schedulers.SequentialLR(groups, children, kwargs["milestones"])
    return getattr(schedulers, name)(groups, **kwargs)


def test_composite_state_refuses_a_wrong_child_and_stays_unchanged():
    from refimpl.schedulers import ExponentialLR as Exp
    from refimpl.schedulers import ParamGroups, SequentialLR, StepLR

    def build():
        groups = ParamGroups([0.1, 0.2])
        return SequentialLR(groups, [StepLR(groups, 3), Exp(groups, 0.9)], milestones=[5])

    scheduler = build()
    for _ in range(7):
        scheduler.step()
    before = scheduler.state_dict()
    broken = build().state_dict()
    broken["schedulers"][1] = StepLR([0.1, 0.2], 2).state_dict()
    with pytest.raises(ValueError, match="belongs to 'StepLR'"):
        scheduler.load_state_dict(broken)
    assert scheduler.state_dict() == before


# -- explain(): the closed-form terms reproduce the rate ---------------------------------------
def test_explain_terms_reproduce_the_rates():
    from refimpl import schedulers

    step = schedulers.StepLR([0.1, 0.2], step_size=3, gamma=0.5)
    for _ in range(7):
        step.step()
    terms = step.explain()
    assert terms["rule"].startswith("step: base_lr*gamma^floor(e/step_size) = 0.1*0.5^floor(7/3)")
    assert [b * terms["gamma"] ** terms["exponent"] for b in terms["base_lrs"]] == step.lrs
    cyclic = schedulers.CyclicLR(0.1, base_lr=0.01, max_lr=0.1, step_size_up=4)
    for _ in range(6):
        cyclic.step()
    t = cyclic.explain()
    assert cyclic.lr == pytest.approx(0.01 + 0.09 * t["scale"] * t["amplitude"], rel=1e-14)
    assert t["momentums"] == cyclic.momentums and t["cycle"] == 1
    linear = schedulers.LinearLR(2.0, start_factor=0.25, end_factor=0.75, total_iters=4)
    for _ in range(2):
        linear.step()
    assert linear.explain()["multiplier"] == 0.5 and linear.lr == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("name", sorted({*CHAINABLE, *NEW_CLASSES, "ReduceLROnPlateau"}))
def test_every_class_explains_its_rule(name):
    rng = np.random.default_rng(5)
    lrs = [0.1, 0.05]
    if name == "ReduceLROnPlateau":
        scheduler = ReduceLROnPlateau(lrs, patience=0)
        scheduler.step(1.0)
        scheduler.step(2.0)
        assert scheduler.explain()["reduced"] is True
    else:
        scheduler = _build_ours(random_recipe(name, rng, 2), lrs)
        scheduler.step()
    explained = scheduler.explain()
    assert explained["rule"] and explained["lrs"] == scheduler.lrs
    assert explained["scheduler"] == name


# -- composition rules -------------------------------------------------------------------------
def test_composites_need_children_on_one_param_groups():
    from refimpl.schedulers import ChainedScheduler, ExponentialLR, ParamGroups, SequentialLR

    with pytest.raises(ValueError, match="ParamGroups"):  # from other rates: no one start
        ChainedScheduler([StepLR(0.1, 2), ExponentialLR(0.2, 0.9)])
    groups = ParamGroups(0.1)
    with pytest.raises(ValueError, match="loss-driven"):
        SequentialLR(groups, [StepLR(groups, 2), ReduceLROnPlateau(groups)], milestones=[3])
    with pytest.raises(ValueError, match="milestone"):
        SequentialLR(groups, [StepLR(groups, 2)], milestones=[3])


def test_two_schedulers_on_shared_groups_compose_like_torch():
    # torch: StepLR and MultiStepLR on one optimizer, both stepped every epoch, multiply
    from refimpl.schedulers import ParamGroups

    groups = ParamGroups([1.0])
    first, second = StepLR(groups, step_size=3, gamma=0.5), MultiStepLR(groups, [2], gamma=0.1)
    trace = [groups.lrs[0]]
    for _ in range(4):
        first.step()
        second.step()
        trace.append(groups.lrs[0])
    assert trace == pytest.approx([1.0, 1.0, 0.1, 0.05, 0.05], rel=1e-15)
    assert first.lrs == second.lrs == groups.lrs


def test_resume_without_initial_lr_names_it():
    with pytest.raises(ValueError, match="initial_lr"):
        StepLR(0.1, step_size=3, last_epoch=1)


# -- the trainer applies the cycled momenta ------------------------------------------------------
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_trainer_applies_momentum_cycling(kind):
    from refimpl.optim import SGD, Adam
    from refimpl.schedulers import OneCycleLR
    from refimpl.training.scheduling import copy_rates

    params = [np.zeros(3), np.zeros(2)]
    optimizer = SGD(params, lr=0.1, momentum=0.9) if kind == "sgd" else Adam(params, lr=0.1)
    scheduler = OneCycleLR(0.1, max_lr=1.0, total_steps=20)
    for _ in range(4):  # rising phase: steps 0..5, momentum falls from 0.95 to 0.85
        scheduler.step()
        copy_rates(scheduler, optimizer)
    group = optimizer.param_groups[0]
    applied = group["momentum"] if kind == "sgd" else group["betas"][0]
    assert applied == scheduler.momentums[0] and 0.85 < applied < 0.95
    assert group["lr"] == scheduler.lr
    if kind == "adam":
        assert group["betas"][1] == 0.999  # beta2 untouched


def test_trainer_refuses_momentum_cycling_without_momentum():
    from refimpl.schedulers import CyclicLR
    from refimpl.training.scheduling import copy_rates

    class Plain:  # an optimizer whose groups hold neither momentum nor betas
        def __init__(self):
            self.param_groups = [{"lr": 0.1}]

    plain = Plain()
    with pytest.raises(ValueError, match="cycle_momentum"):
        copy_rates(CyclicLR(0.1, base_lr=0.01, max_lr=0.1), plain)
    copy_rates(CyclicLR(0.1, base_lr=0.01, max_lr=0.1, cycle_momentum=False), plain)
    assert plain.param_groups[0]["lr"] == 0.01
