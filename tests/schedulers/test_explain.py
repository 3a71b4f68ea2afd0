"""``explain()``: the intermediates of each scheduler's last step, checked by hand."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from refimpl.schedulers import (
    DLRS,
    Adacomp,
    ChainedScheduler,
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    CyclicLR,
    ExponentialLR,
    GreedyLR,
    HypergradientAdditiveLR,
    HypergradientMultiplicativeLR,
    LambdaLR,
    LinearLR,
    MultiplicativeLR,
    MultiStepLR,
    NewtonLR,
    OneCycleLR,
    ParamGroups,
    PolynomialLR,
    ReduceLROnPlateau,
    StepLR,
)


def test_greedy_branches_by_hand():
    # F = 0.5 keeps the rates exact; patience 1, cooldown 1, threshold 0 ("strictly better")
    s = GreedyLR(0.4, factor=0.5, patience=1, cooldown=1, threshold=0.0, min_lr=0.1)
    assert s.explain()["rule"] == "no step yet (or since a load)"
    s.step(3.0)
    e = s.explain()
    assert (e["branch"], e["improved"], e["num_good"], e["best"]) == ("count", True, 1, 3.0)
    assert e["best_before"] == math.inf and e["rule"].startswith("count: value 3.0 < best inf")
    s.step(2.0)  # 2nd improvement > patience 1: increase, capped at max_lr 1.0
    e = s.explain()
    assert e["branch"] == "increase" and e["lrs_before"] == [0.4] and e["lrs"] == [0.8]
    assert "num_good 2 > patience 1" in e["rule"] and e["num_good"] == 0
    s.step(2.5)
    s.step(2.5)  # 2nd non-improvement: decrease, cooldown starts
    e = s.explain()
    assert e["branch"] == "decrease" and e["lrs"] == [0.4] and e["cooldown_counter"] == 1
    assert "does not improve on best 2.0" in e["rule"] and "num_bad 2 > patience 1" in e["rule"]
    s.step(9.0)
    e = s.explain()
    assert e["branch"] == "cooldown" and e["improved"] is None and e["lrs"] == [0.4]


def test_greedy_reset_branch_and_smoothed_value():
    s = GreedyLR(0.2, factor=0.5, patience=0, min_lr=0.1, smooth=True, window_size=2)
    s.step(1.0)  # improvement from inf: increase to 0.4
    values = [s.explain()["value"]]
    for loss in [3.0, 5.0, 7.0, 9.0]:
        s.step(loss)
        values.append(s.explain()["value"])
    assert values == [1.0, 2.0, 4.0, 6.0, 8.0]  # mean of the last two losses
    branches = []
    s = GreedyLR(0.2, factor=0.5, patience=0, min_lr=0.1, reset_start=2)
    for loss in [1.0, 1.0, 1.0, 1.0]:  # 0.4 -> 0.2 -> 0.1 (at min: 1) -> reset (at min: 2)
        s.step(loss)
        branches.append(s.explain()["branch"])
    assert branches == ["increase", "decrease", "decrease", "reset"]
    assert s.lrs == [0.2] and s.explain()["best"] == math.inf


def test_greedy_accepts_max_lr_inf_as_transformers_does():
    s = GreedyLR([0.1, 0.2], factor=0.5, patience=0, max_lr=math.inf)
    for loss in range(20, 0, -1):  # 20 improvements: no cap
        s.step(float(loss))
    assert s.lrs == [0.1 * 2**20, 0.2 * 2**20]
    mixed = GreedyLR([0.1, 0.2], max_lr=[math.inf, 0.5])
    assert mixed.max_lrs == [math.inf, 0.5]
    state = json.loads(json.dumps(s.state_dict()))  # Python's json writes inf as Infinity
    restored = GreedyLR([0.1, 0.2], factor=0.5, patience=0, max_lr=math.inf)
    restored.load_state_dict(state)
    assert restored.lrs == s.lrs and restored.max_lrs == [math.inf, math.inf]
    for bad in (-math.inf, math.nan, -1.0, "big"):
        with pytest.raises(ValueError, match="max_lr"):
            GreedyLR(0.1, max_lr=bad)


@pytest.mark.parametrize("losses, regime, delta", [
    ([1.0, 2.0, 3.0], "divergent", 0.5),       # slope (3 - 1) / 2 = 1 exactly
    ([1.0, 1.5, 1.5], "flat", 1.0),            # slope 0.5 / (4/3) = 0.375
    ([2.0, 2.0], "flat", 1.0),                 # slope 0
    ([3.0, 2.0, 1.0], "convergent", 0.1),      # slope -1
])
def test_dlrs_regime_slope_delta_granularity(losses, regime, delta):
    s = DLRS([0.05, 0.003], delta_d=0.5, delta_o=1.0, delta_i=0.1)
    s.step(losses)
    e = s.explain()
    slope = (losses[-1] - losses[0]) / np.mean(losses)
    assert (e["regime"], e["delta"], e["slope"]) == (regime, delta, slope)
    assert e["granularity"] == [0.01, 0.001] and e["lrs_before"] == [0.05, 0.003]
    assert e["lrs"] == [min(max(lr - delta * g * slope, 1e-5), 0.1)
                        for lr, g in zip([0.05, 0.003], [0.01, 0.001])]
    assert e["rule"].startswith(regime) and e["batches"] == len(losses)


def test_dlrs_clipping_is_reported():
    s = DLRS(0.05, delta_i=1.0)
    s.step([10.0, 9.0])  # slope -1/9.5: 0.05 + 0.01 / 9.5, inside [1e-5, 0.1]
    assert s.explain()["clipped"] == [False]
    s.step([10.0, 1.0])  # slope -9/5.5: 0.051 + 0.01 * 1.636... = 0.0677, inside
    s.step([10.0, 1.0])  # 0.0677 + 0.0164 = 0.0841, inside
    s.step([10.0, 1.0])  # 0.0841 + 0.0164 > 0.1: clipped
    e = s.explain()
    assert e["clipped"] == [True] and e["lrs"] == [0.1] and e["unclipped"][0] > 0.1


def test_adacomp_branches():
    s = Adacomp(0.1, beta=0.6, tolerance=1e-5)
    s.step(2.0)
    assert s.explain()["branch"] == "first" and s.explain()["lrs"] == [0.1]
    s.step(1.5)  # decrease 0.5 > tolerance
    e = s.explain()
    assert e["branch"] == "progress" and e["decrease"] == 0.5
    assert e["lrs"] == [0.05 + 0.1 * (0.5 + math.atan(0.5 + 1 / 0.1) / (5.0 * math.pi))]
    s.step(2.0)  # decrease -0.5 < -tolerance
    e = s.explain()
    assert e["branch"] == "setback" and e["decrease"] == -0.5 and e["prev_loss"] == 1.5
    before = e["lrs"][0]
    s.step(2.0)  # no change: halved
    e = s.explain()
    assert e["branch"] == "flat" and e["lrs"] == [before / 2] and "lr/2" in e["rule"]


def test_newton_explain_through_a_period():
    s = NewtonLR(0.1, gamma=0.33, batches_per_epoch=10, p=0.2)  # K = 2
    w = [np.array([1.0, 1.0])]
    s.step(w)
    assert s.explain()["rule"].startswith("call 1: weights cached; first update at call 3")
    for call, u in [(2, (1.0, 3.0)), (3, (1.0, 3.0)), (4, (0.5, 1.0)), (5, (0.5, 1.0))]:
        w = [w[0] - s.lr * np.array(u)]
        s.step(w)
        e = s.explain()
        assert e["call"] == call and e["updated"] == (call in (3, 5)) and e["K"] == 2
    # call 5: u_prev = (2, 6) (two steps of (1, 3)), u = (1, 2): a = 14, b = 40, den = 26
    assert (e["a"], e["b"], e["den"]) == pytest.approx((14.0, 40.0, 26.0), rel=1e-12)
    assert e["factor"] == pytest.approx(1 + 0.33 * 14 / 26, rel=1e-12) and not e["clamped"]
    assert e["next_update"] == 7 and not e["kept"]


def test_hypergradient_explain():
    add = HypergradientAdditiveLR(0.1, hyper_lr=0.01, min_lr=0.05)
    add.step([np.array([1.0, 2.0])])
    assert add.explain()["updated"] is False
    add.step([np.array([-3.0, 0.0])])  # <g, g_prev> = -3: 0.1 - 0.03 = 0.07
    e = add.explain()
    assert (e["dot"], e["delta"], e["floored"]) == (-3.0, -0.03, [False])
    assert e["lrs"] == [0.1 - 0.03]
    mul = HypergradientMultiplicativeLR(0.1, hyper_lr=0.5)
    mul.step([np.array([1.0, 0.0])])
    mul.step([np.array([0.0, 2.0])])  # orthogonal: cos 0, factor 1
    e = mul.explain()
    assert (e["dot"], e["norm2"], e["norm2_prev"], e["cosine"], e["factor"]) == (
        0.0, 4.0, 1.0, 0.0, 1.0)
    mul.step([np.array([0.0, -1.0])])  # opposite: cos -1, factor 0.5
    assert mul.explain()["cosine"] == -1.0 and mul.lrs == [0.05]


def test_lrpo_schedule_explain_names_phase_and_jump():
    from refimpl.registry import make_scheduler

    s = make_scheduler("lrpo", 0.05, pretrain_epochs=3, jump_epochs=1, finetune_lr=0.001,
                       predictor_steps=50)
    assert math.isnan(s.explain()["alpha"]) and s.explain()["phase"] == "pretrain"
    for loss in [2.0, 1.5, 1.2]:
        s.step([loss, loss])
    e = s.explain()
    assert e["epoch"] == 3 and e["phase"] == "jump" and 1.0 <= e["alpha"] <= 1.5
    assert e["lrs"] == [0.05 * e["alpha"]] and "alpha = clip(1 + c r" in e["rule"]
    s.step([1.0])
    assert s.explain()["phase"] == "finetune" and s.explain()["lrs"] == [0.001]


@pytest.mark.parametrize("make, signal", [
    (lambda: GreedyLR(0.1, patience=0), 1.0),
    (lambda: DLRS(0.01), [1.0, 2.0]),
    (lambda: Adacomp(0.1), 1.0),
    (lambda: HypergradientAdditiveLR(0.1), [np.ones(2)]),
])
def test_explain_after_a_load_does_not_describe_an_earlier_step(make, signal):
    saved, loaded = make(), make()
    for _ in range(3):
        saved.step(signal)
    loaded.step(signal)
    loaded.step(signal)
    assert loaded.explain()["rule"] != "no step yet (or since a load)"
    loaded.load_state_dict(saved.state_dict())
    assert loaded.explain()["rule"] == "no step yet (or since a load)"
    loaded.step(signal)  # and the next step is described again
    assert loaded.explain()["rule"] != "no step yet (or since a load)"


# -- torch-style schedules: the formula with this step's numbers --------------------------------
def _formula_parts(rule: str) -> tuple[str, str, str, float]:
    """``(name, symbols, numbers, printed value)`` of ``"name: symbols = numbers = value"``."""
    head, numbers, rest = rule.split(" = ", 2)
    name, symbols = head.split(": ", 1)
    return name, symbols, numbers, float(re.match(r"[^ ;]+", rest).group())


def _evaluate(numbers: str) -> float:
    """The numbers of a rule evaluated as written (``^`` is a power)."""
    names = {"cos": math.cos, "pi": math.pi, "floor": math.floor, "min": min,
             "__builtins__": {}}
    return eval(numbers.replace("^", "**"), names)


def _stepped(make, steps):
    scheduler = make()
    for _ in range(steps):
        scheduler.step()
    return scheduler


@pytest.mark.parametrize("make, steps, name, numbers, note", [
    (lambda: StepLR(0.1, step_size=3, gamma=0.5), 7, "step", "0.1*0.5^floor(7/3)", ""),
    (lambda: MultiStepLR(0.1, milestones=[3, 6], gamma=0.1), 7, "multistep", "0.1*0.1^2",
     "(milestones [3, 6], e = 7)"),
    (lambda: ExponentialLR(0.1, gamma=0.9), 7, "exponential", "0.1*0.9^7", ""),
    (lambda: CosineAnnealingLR(0.1, T_max=50), 7, "cosine",
     "0 + (0.1 - 0)*(1 + cos(pi*7/50))/2", ""),
    (lambda: CosineAnnealingWarmRestarts(0.1, T_0=10, T_mult=2, eta_min=0.01), 13,
     "cosine with warm restarts", "0.01 + (0.1 - 0.01)*(1 + cos(pi*3/20))/2",
     "(epoch 13: T_cur = 3 epochs into a cycle of T_i = 20)"),
    (lambda: LinearLR(0.1, start_factor=0.25, end_factor=0.75, total_iters=4), 2, "linear",
     "0.1*(0.25 + (0.75 - 0.25)*min(2, 4)/4)", ""),
    (lambda: ConstantLR(0.1, factor=0.5, total_iters=4), 2, "constant", "0.1*0.5",
     "(e = 2 < total_iters = 4)"),
    (lambda: ConstantLR(0.1, factor=0.5, total_iters=4), 5, "constant", "0.1",
     "(e = 5 >= total_iters = 4)"),
    (lambda: PolynomialLR(0.1, total_iters=5, power=2.0), 2, "polynomial",
     "0.1*(1 - min(2, 5)/5)^2", ""),
    (lambda: OneCycleLR(0.1, max_lr=0.1, total_steps=20), 9, "one-cycle phase 1 (cos)",
     "4e-07 + (0.1 - 4e-07)*(1 + cos(pi*0.285714))/2",
     "(pct = (e - phase start)/(phase end - phase start) = (9 - 5)/(19 - 5) = 0.285714)"),
    (lambda: OneCycleLR(0.1, max_lr=0.1, total_steps=20, anneal_strategy="linear"), 3,
     "one-cycle phase 0 (linear)", "0.004 + (0.1 - 0.004)*0.6", ""),
    (lambda: CyclicLR(0.1, base_lr=0.001, max_lr=0.006, step_size_up=5), 7,
     "cyclic (triangular)", "0.001 + (0.006 - 0.001)*0.6*1",
     ("(cycle = floor(1 + e/S) = floor(1 + 7/10) = 1, x = 1 + e/S - cycle = 0.7, scale = "
      "(x - 1)/(r - 1) = (0.7 - 1)/(0.5 - 1) = 0.6, g = triangular(1) = 1)")),
    (lambda: LambdaLR(0.1, lambda e: 0.9**e), 7, "lambda", "0.1*0.478297",
     "(lr_lambda(7) = 0.478297)"),
    (lambda: MultiplicativeLR(0.1, lambda e: 0.9), 7, "multiplicative", "0.0531441*0.9",
     "(lr_lambda(7) = 0.9)"),
])
def test_torch_style_rule_is_the_formula_with_its_numbers(make, steps, name, numbers, note):
    scheduler = _stepped(make, steps)
    rule = scheduler.explain()["rule"]
    got_name, _, got_numbers, value = _formula_parts(rule)
    assert (got_name, got_numbers) == (name, numbers), rule
    assert rule.endswith(note), rule
    # the printed value is the rate, in 6 significant digits (at most 5e-6 relative off)
    assert value == pytest.approx(scheduler.lr, rel=5e-6)
    assert f"{scheduler.lr:.6g}" == f"{value:.6g}"
    # and the numbers, themselves printed in 6 digits, evaluate to it (well-conditioned
    # expressions here: 6-digit inputs keep the result within 2e-5)
    assert _evaluate(got_numbers) == pytest.approx(scheduler.lr, rel=2e-5)


def test_the_brief_cosine_example_reads_as_written():
    rule = _stepped(lambda: CosineAnnealingLR(0.1, T_max=50), 7).explain()["rule"]
    assert rule == ("cosine: eta_min + (base_lr - eta_min)*(1 + cos(pi*e/T_max))/2 = "
                    "0 + (0.1 - 0)*(1 + cos(pi*7/50))/2 = 0.0952414")


def test_every_group_and_a_rate_set_elsewhere_are_named():
    two = _stepped(lambda: ExponentialLR([0.1, 0.2], gamma=0.5), 2).explain()
    assert two["rule"].endswith("; group 0 shown, all groups: [0.025, 0.05]")
    assert two["term_scale"] == [0.025, 0.05]  # a product: its own size
    cosine = _stepped(lambda: CosineAnnealingLR([0.1, 0.2], T_max=4, eta_min=0.3), 1)
    assert cosine.explain()["term_scale"] == [0.3, 0.3]  # a difference of base and eta_min
    groups = ParamGroups([0.1])
    chained = ChainedScheduler([StepLR(groups, 2, gamma=0.5), ExponentialLR(groups, 0.9)])
    for _ in range(3):
        chained.step()
    rule = chained.explain()["rule"]
    assert rule.startswith("every child in turn on the same rates: StepLR: step: ")
    assert "then ExponentialLR: exponential: base_lr*gamma^e = 0.1*0.9^3 = 0.0729" in rule
    assert "the groups hold [0.03645]: their rates were also set elsewhere" in rule


# -- ReduceLROnPlateau: the comparison made, with its numbers -----------------------------------
def test_plateau_explain_shows_the_comparison_and_the_state():
    s = ReduceLROnPlateau(0.1, patience=2)
    assert s.explain()["rule"] == "no step yet (or since a load): best inf, num_bad_epochs 0"
    for loss in [1.0, 0.9, 0.95, 0.93]:
        s.step(loss)
    assert s.explain()["rule"] == (
        "loss 0.93 >= best*(1 - threshold) = 0.9*(1 - 0.0001) = 0.89991: no improvement; "
        "num_bad_epochs 2 <= patience 2 -> rates kept")
    s.step(0.92)
    e = s.explain()
    assert e["rule"] == (
        "loss 0.92 >= best*(1 - threshold) = 0.9*(1 - 0.0001) = 0.89991: no improvement; "
        "num_bad_epochs 3 > patience 2 -> reduce: lr <- max(lr*factor, min_lr) = "
        "max(0.1*0.1, 0) = 0.01; cooldown 0 starts, num_bad_epochs <- 0")
    assert e["bound"] == 0.9 * (1 - 1e-4) and e["lrs"] == [0.1 * 0.1] == s.lrs
    assert (e["loss"], e["improved"], e["reduced"], e["best_before"], e["best"]) == (
        0.92, False, True, 0.9, 0.9)
    assert (e["num_bad_counted"], e["num_bad_epochs"], e["cooldown_counter"]) == (3, 0, 0)
    assert (e["patience"], e["threshold"], e["threshold_mode"], e["mode"]) == (
        2, 1e-4, "rel", "min")
    assert (e["factor"], e["min_lr"], e["eps"], e["cooldown"], e["lrs_before"]) == (
        0.1, [0.0], 1e-8, 0, [0.1])
    s.step(0.5)
    assert s.explain()["rule"].startswith(
        "loss 0.5 < best*(1 - threshold) = 0.9*(1 - 0.0001) = 0.89991: improvement, best <- 0.5")


def test_plateau_explain_in_max_abs_mode_during_cooldown_and_under_eps():
    s = ReduceLROnPlateau(0.1, mode="max", threshold_mode="abs", threshold=0.05, patience=0,
                          cooldown=2, factor=0.5)
    s.step(1.0)
    s.step(1.02)
    assert s.explain()["rule"] == (
        "loss 1.02 <= best + threshold = 1 + 0.05 = 1.05: no improvement; num_bad_epochs 1 > "
        "patience 0 -> reduce: lr <- max(lr*factor, min_lr) = max(0.1*0.5, 0) = 0.05; "
        "cooldown 2 starts, num_bad_epochs <- 0")
    s.step(0.9)
    assert s.explain()["rule"] == (
        "loss 0.9 <= best + threshold = 1 + 0.05 = 1.05: no improvement; cooldown 2 -> 1: bad "
        "epochs not counted; num_bad_epochs 0 <= patience 0 -> rates kept")
    tiny = ReduceLROnPlateau([1e-8, 1.0], factor=0.5, patience=0)
    tiny.step(1.0)
    tiny.step(2.0)
    rule = tiny.explain()["rule"]
    assert rule.endswith("= max(1e-08*0.5, 0) = 5e-09, not applied: lr - new = 5e-09 <= eps "
                         "1e-08 (group 0); cooldown 0 starts, num_bad_epochs <- 0")
    assert tiny.lrs == [1e-8, 0.5]
    nan = ReduceLROnPlateau(0.1, patience=3)
    nan.step(float("nan"))
    assert nan.explain()["rule"].startswith("loss nan is never an improvement: no improvement")


def test_plateau_explain_after_a_load_describes_no_step():
    saved, loaded = ReduceLROnPlateau(0.1, patience=0), ReduceLROnPlateau(0.1, patience=0)
    for loss in [1.0, 2.0, 3.0]:
        saved.step(loss)
    loaded.step(5.0)
    loaded.load_state_dict(saved.state_dict())
    assert loaded.explain()["rule"] == "no step yet (or since a load): best 1, num_bad_epochs 0"
    loaded.step(4.0)
    assert loaded.explain()["rule"].startswith("loss 4 >= best*(1 - threshold) = 1*(1 - 0.0001)")


def test_additive_rules_give_the_size_of_their_terms():
    # DLRS: lr - delta G slope; the hypergradient rule: lr + hyper_lr <g, g_prev>; a rate
    # that is a difference carries the rounding of the larger term, which term_scale names
    s = DLRS(0.05, delta_i=1.0)
    s.step([10.0, 1.0])  # slope -9/5.5: step -0.01 * 1.636...
    e = s.explain()
    assert e["term_scale"] == [max(0.05, abs(0.05 - e["unclipped"][0]))] == [0.05]
    add = HypergradientAdditiveLR([0.1, 0.01], hyper_lr=0.01)
    add.step([np.array([1.0, 2.0])])
    add.step([np.array([-3.0, 0.0])])  # delta = -0.03
    assert add.explain()["term_scale"] == [0.1, 0.03]
