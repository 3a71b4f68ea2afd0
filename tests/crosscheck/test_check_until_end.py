"""refimpl.crosscheck.check past the first difference: ``until="end"``, the labels
``rule`` / ``rounding`` / ``follows``, ``resync``, ``offset``, torch optimizers that set
their own rate, and the truth value of a result."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest

from refimpl.crosscheck import check
from refimpl.crosscheck.compare import ROUNDING_ULPS
from refimpl.schedulers import CosineAnnealingLR, GreedyLR, NewtonLR, ReduceLROnPlateau, StepLR
from tests.conftest import ROOT

DOC = ROOT / "docs" / "crosscheck.md"


def _cosine(base: float, t_max: int):
    """CosineAnnealingLR's closed form (eta_min 0) as a schedule function t -> lr."""
    return lambda t: base * (1 + math.cos(math.pi * t / t_max)) / 2


def _noisy_losses(steps: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    trend = np.exp(-np.linspace(0.0, 3.0, steps))
    return [float(v) for v in trend + 0.05 * rng.standard_normal(steps)]


# -- until="end": every difference, labelled -----------------------------------------------------
def test_until_end_lists_every_planted_difference_and_keeps_the_first_fields():
    exact = _cosine(0.1, 100)
    planted = {5, 6, 7, 20}
    drifted = lambda t: exact(t) * (1 + 1e-6) if t in planted else exact(t)
    first = check(drifted, CosineAnnealingLR(0.1, T_max=100), steps=60, rtol=1e-10)
    every = check(drifted, CosineAnnealingLR(0.1, T_max=100), steps=60, rtol=1e-10,
                  until="end")
    assert not first and not every
    # the first difference's fields are those of until="first"
    for name in ("step", "ours", "theirs", "group", "bound", "label", "explain", "previous"):
        assert getattr(every, name) == getattr(first, name), name
    assert first.step == 5 and first.steps == 5 and every.steps == 60
    assert [d.step for d in first.differences] == [5]
    assert [d.step for d in every.differences] == [5, 6, 7, 20]
    # after the rule difference at 5, without resync, later ones may be its consequence
    assert [d.label for d in every.differences] == ["rule", "follows", "follows", "follows"]
    for item in every.differences:
        assert item.theirs == exact(item.step) * (1 + 1e-6)
        assert item.ours == pytest.approx(exact(item.step), rel=1e-12)
        # |ours - theirs| / |theirs| = 1e-6 / (1 + 1e-6); the difference of two rates that
        # agree to 6 digits keeps ~1e-10 of relative rounding, hence rel=1e-8
        assert item.rel_diff == pytest.approx(1e-6 / (1 + 1e-6), rel=1e-8)
    assert every.differences[0].cause == every.explain["rule"]
    assert "may follow from the rule difference at step 5" in every.differences[1].cause
    text = str(every)
    assert "4 differing steps: 1 rule, 3 follows; first at step 5, last at step 20" in text
    assert re.search(r"^ +5 rule ", text, re.MULTILINE)
    assert re.search(r"^ +6-7 follows +2 steps", text, re.MULTILINE)
    assert re.search(r"^ +20 follows ", text, re.MULTILINE)


def test_runs_keep_a_thousand_differing_steps_to_a_few_lines():
    exact = _cosine(0.1, 2000)
    theirs = lambda t: exact(t) * (1 + 1e-3) if t >= 1 else exact(t)
    result = check(theirs, CosineAnnealingLR(0.1, T_max=2000), steps=1000, until="end")
    assert len(result.differences) == 1000
    text = str(result)
    assert "1000 differing steps: 1 rule, 999 follows; first at step 1, last at step 1000" in text
    assert re.search(r"^ +2-1000 follows +999 steps", text, re.MULTILINE)
    assert len(text.splitlines()) < 20


def test_runs_beyond_the_shown_ones_are_counted_not_printed():
    exact = _cosine(0.1, 400)
    theirs = lambda t: exact(t) * (1 + 1e-6) if t % 2 else exact(t)  # every odd step
    result = check(theirs, CosineAnnealingLR(0.1, T_max=400), steps=100, until="end",
                   rtol=1e-10)
    assert [d.step for d in result.differences] == list(range(1, 100, 2))
    assert "... 38 more runs (result.differences has every step)" in str(result)  # 50 - 12


def test_resync_compares_the_rule_at_every_step_instead_of_its_consequences():
    losses = _noisy_losses(300, seed=3)
    config = {"patience": 1, "min_lr": 1e-4, "max_lr": 1.0}
    trace = GreedyLR(0.1, factor=0.8, **config)
    theirs_lrs = [trace.lr] + [trace.step(loss) for loss in losses]
    changed = [t for t in range(1, 301) if theirs_lrs[t] != theirs_lrs[t - 1]]
    assert len(changed) > 20  # the losses move the rate often

    plain = check(GreedyLR(0.1, factor=0.8, **config), GreedyLR(0.1, factor=0.9, **config),
                  losses, until="end")
    synced = check(GreedyLR(0.1, factor=0.8, **config), GreedyLR(0.1, factor=0.9, **config),
                   losses, until="end", resync=True)
    # ours' factor differs, so every change of theirs is a rule difference; in between, with
    # their rate taken over, ours keeps it as they do: the steps differ exactly at the changes
    assert [d.step for d in synced.differences] == changed
    assert {d.label for d in synced.differences} == {"rule"}
    assert all(d.cause.startswith(("increase", "decrease")) for d in synced.differences)
    assert "(ours took their rates after each)" in str(synced)
    # without resync the rates stay apart after the first change
    assert plain.differences[0].step == changed[0]
    assert len(plain.differences) > len(synced.differences)
    assert Counter(d.label for d in plain.differences)["rule"] == 1
    assert plain.step == synced.step and plain.ours == synced.ours


# -- rounding against rule ----------------------------------------------------------------------
def _ulps_apart(value: float, n: int) -> float:
    for _ in range(n):
        value = float(np.nextafter(value, math.inf))
    return value


def test_up_to_4_ulps_is_rounding_and_5_is_a_rule_difference():
    assert ROUNDING_ULPS == 4
    ours = StepLR(0.1, step_size=2, gamma=0.5)
    rates = [0.1 * 0.5 ** (t // 2) for t in range(9)]  # exact: powers of 2 times 0.1
    apart = {2: 1, 4: 4, 6: 5}
    theirs = lambda t: _ulps_apart(rates[t], apart.get(t, 0))
    result = check(theirs, ours, steps=8, rtol=0.0, until="end")
    assert not result.ok  # the verdict is still rtol/atol's: rtol=0 asks for the same bits
    labels = {d.step: d.label for d in result.differences}
    assert labels == {2: "rounding", 4: "rounding", 6: "rule"}
    causes = {d.step: d.cause for d in result.differences}
    assert "= 1 ulps of 0.05" in causes[2] and "= 4 ulps of 0.025" in causes[4]
    assert result.label == "rounding" and "label: rounding (|ours - theirs| = 1 ulps" in str(result)
    # with the default rtol 1e-12, a few ulps pass and 5 ulps too (5 * 2.2e-16 relative)
    assert check(theirs, StepLR(0.1, step_size=2, gamma=0.5), steps=8).ok


def test_float32_rates_are_measured_in_float32_ulps():
    rates = [np.float32(0.1 * 0.5 ** (t // 2)) for t in range(9)]
    theirs = lambda t: np.nextafter(rates[t], np.float32(1)) if t == 3 else rates[t]
    result = check(theirs, StepLR(0.1, step_size=2, gamma=0.5), steps=8, rtol=0.0,
                   until="end")
    # every step differs (float32 against float64) by under 1 float32 ulp; step 3 by 1 more
    assert len(result.differences) == 9 and {d.label for d in result.differences} == {"rounding"}
    assert all("float32 ulps" in d.cause for d in result.differences)


def test_a_cosine_near_its_minimum_is_rounding_by_its_terms():
    # torch's recursive cosine against the closed form, bit for bit (rtol=0): near the end
    # the rate is a difference of terms of the size of base_lr (1 + cos -> 0), so the two
    # part by a few ulps of base_lr, which is many ulps of the rate itself
    result = check(_cosine(0.1, 100), CosineAnnealingLR(0.1, T_max=100), steps=100, rtol=0.0,
                   until="end")
    assert not result.ok and len(result.differences) > 50
    assert {d.label for d in result.differences} == {"rounding"}
    by_rate = [d for d in result.differences
               if abs(d.ours - d.theirs) > ROUNDING_ULPS * np.spacing(max(d.ours, d.theirs))]
    assert by_rate  # these are rounding only because of term_scale = base_lr
    assert all("term_scale" in d.cause for d in by_rate)
    assert all(abs(d.ours - d.theirs) <= ROUNDING_ULPS * np.spacing(0.1) for d in by_rate)


def test_a_rate_a_hair_from_zero_where_the_cosine_ends_is_rounding():
    exact = _cosine(0.1, 50)
    hair = 2 * float(np.spacing(0.1))  # 2 ulps of the largest term, base_lr
    theirs = lambda t: hair if t == 50 else exact(t)
    result = check(theirs, CosineAnnealingLR(0.1, T_max=50), steps=50, rtol=1e-10)
    assert result.step == 50 and result.ours == 0.0 and result.bound == "rtol"
    assert result.label == "rounding" and "2 ulps of 0.1 = term_scale" in str(result)
    far = check(lambda t: 1e-12 if t == 50 else exact(t), CosineAnnealingLR(0.1, T_max=50),
                steps=50, rtol=1e-10)
    assert far.step == 50 and far.label == "rule"


# -- offset: their step t against our step t - k ------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 10])
def test_a_schedule_shifted_by_k_steps_passes_with_offset_k_only(k):
    exact = _cosine(0.1, 60)
    delayed = lambda t: 0.1 if t < k else exact(t - k)  # starts its cosine k steps late
    assert not check(delayed, CosineAnnealingLR(0.1, T_max=60), steps=60, rtol=1e-10)
    result = check(delayed, CosineAnnealingLR(0.1, T_max=60), steps=60, rtol=1e-10, offset=k)
    assert result.ok and result.steps == 60 - k, str(result)
    assert f"(their step t against our step t - {k})" in str(result)
    ahead = lambda t: exact(t + k)  # theirs starts k steps in
    assert check(ahead, CosineAnnealingLR(0.1, T_max=60), steps=50, rtol=1e-10, offset=-k).ok
    assert not check(ahead, CosineAnnealingLR(0.1, T_max=60), steps=50, rtol=1e-10)


def test_offset_pairs_the_steps_that_saw_the_same_signal():
    losses = _noisy_losses(80, seed=5)
    for k in (4, -4):
        result = check(GreedyLR(0.1, patience=2), GreedyLR(0.1, patience=1), losses,
                       offset=k, until="end")
        assert not result.ok and result.our_step == result.step - k
        assert all(d.our_step == d.step - k for d in result.differences)
        # the loss ours stepped on last is the one theirs stepped on last: signal max(t, s)
        signal = max(result.step, result.our_step)
        assert result.explain["loss"] == losses[signal - 1] == result.signal
        assert f"(their step {result.step}, our step {result.our_step})" in str(result)
        assert f"signal {signal}: {losses[signal - 1]!r}" in str(result)


def _authors_tlr():
    """The adapter of the TLR authors' code from docs/crosscheck.md (run as written)."""
    section = DOC.read_text().split("## Worked example: the TLR authors' code")[1]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    namespace: dict = {}
    exec(compile(blocks[0], f"{DOC.name}: AuthorsTLR", "exec"), namespace)  # noqa: S102
    return namespace["AuthorsTLR"], namespace["read_lr"]


def test_offset_k_lines_up_the_tlr_authors_first_update_with_ours():
    authors_tlr, read_lr = _authors_tlr()
    H = np.diag([1.0, 4.0])
    w, weights = np.array([1.0, 1.0]), []
    for _ in range(60):
        w = w - 0.05 * (H @ w)
        weights.append([w.copy()])
    make = lambda: (authors_tlr([0.05], gamma=0.2, p=0.25, batches_per_epoch=12),
                    NewtonLR(0.05, gamma=0.2, p=0.25, batches_per_epoch=12))
    as_is = check(*make(), weights, read_lr=read_lr)
    assert as_is.step == 7  # K = 3: ours moves at 2K+1, theirs only at 3K+1
    # ours built K calls later caches the weights theirs caches at its first update, K+1;
    # from there the two compute the same numbers: equal, the rule included
    aligned = check(*make(), weights, read_lr=read_lr, offset=3, until="end")
    assert aligned.ok and aligned.steps == 57, str(aligned)
    # int(p N) against round(p N): an offset cannot align those
    theirs = authors_tlr([0.05], gamma=0.2, p=1 / 3, batches_per_epoch=5)
    ours = NewtonLR(0.05, gamma=0.2, p=1 / 3, batches_per_epoch=5)
    assert not check(theirs, ours, weights, read_lr=read_lr, offset=1)


def test_offset_shows_the_tlr_authors_missing_clamp_without_crafted_directions():
    authors_tlr, read_lr = _authors_tlr()
    lr, w, weights = 0.01, np.array([5.0, 5.0]), []
    # the authors' code caches at call 2 (its first update), ours built one call later at
    # its call 1: both then compare the directions of the same calls, 3 and 4
    for u in [(0.3, 0.7), (0.5, 0.5), (1.2, 0.0), (1.1999, 0.0)]:  # den = 1.2e-4: ~x3960
        w = w - lr * np.asarray(u)
        weights.append([w.copy()])
    theirs = authors_tlr([lr], gamma=0.33, p=1.0, batches_per_epoch=1)
    result = check(theirs, NewtonLR(lr, gamma=0.33, batches_per_epoch=1), weights,
                   read_lr=read_lr, offset=1)
    assert (result.step, result.our_step, result.label) == (4, 3, "rule")
    assert result.explain["clamped"] and result.ours == pytest.approx(100 * lr, rel=1e-12)
    assert result.theirs / lr > 3900


# -- a torch optimizer that sets its own rate --------------------------------------------------
def _optimizers():
    torch = pytest.importorskip("torch", reason="the optimizer is a torch.optim.Optimizer")

    class HalvingEvery3(torch.optim.Optimizer):
        """Halves every group's rate at every third step; no parameter update."""

        def __init__(self, params, lr):
            super().__init__(params, {"lr": lr})
            self.calls = 0

        def step(self, closure=None):
            loss = closure() if closure is not None else None
            self.calls += 1
            if self.calls % 3 == 0:
                for group in self.param_groups:
                    group["lr"] *= 0.5
            return loss

    class HalvingOnPlateau(torch.optim.Optimizer):
        """Halves the rate when the closure's loss is not below the best so far."""

        def __init__(self, params, lr):
            super().__init__(params, {"lr": lr})
            self.best = math.inf

        def step(self, closure=None):
            loss = float(closure())
            if loss < self.best:
                self.best = loss
            else:
                for group in self.param_groups:
                    group["lr"] *= 0.5
            return loss

    class WrapperHalvingEvery3(torch.optim.Optimizer):
        """Wraps an optimizer without calling Optimizer.__init__, as the TLR authors'
        ``TLR(optimizer)`` does: the rates live in the wrapped optimizer's groups."""

        def __init__(self, optimizer):
            self.optimizer, self.calls = optimizer, 0

        def step(self, closure=None):
            loss = self.optimizer.step(closure)  # SGD calls the closure
            self.calls += 1
            if self.calls % 3 == 0:
                for group in self.optimizer.param_groups:
                    group["lr"] *= 0.5
            return loss

    def params():
        return [torch.nn.Parameter(torch.zeros(2))]

    return HalvingEvery3, HalvingOnPlateau, WrapperHalvingEvery3, params


@pytest.mark.torch
def test_a_torch_optimizer_that_sets_its_rate_is_read_from_its_param_groups():
    halving_every_3, halving_on_plateau, _, params = _optimizers()
    result = check(halving_every_3(params(), lr=0.1), StepLR(0.1, step_size=3, gamma=0.5),
                   steps=12)
    assert result.ok and result.steps == 12, str(result)
    assert "HalvingEvery3" in result.subject
    off = check(halving_every_3(params(), lr=0.1), StepLR(0.1, step_size=4, gamma=0.5),
                steps=12)
    assert off.step == 3 and off.theirs == 0.05 and off.ours == 0.1
    # fed step(closure): the closure hands it the loss
    losses = [1.0, 0.8, 0.9, 0.7, 0.7, 0.6, 0.65, 0.66, 0.5]
    theirs = halving_on_plateau(params(), lr=0.1)
    ours = ReduceLROnPlateau(0.1, factor=0.5, patience=0, threshold=0.0)
    result = check(theirs, ours, losses)
    assert result.ok and theirs.param_groups[0]["lr"] == 0.1 * 0.5**4, str(result)


@pytest.mark.torch
def test_a_torch_optimizer_fed_a_signal_that_is_not_a_loss_is_a_clear_error():
    _, halving_on_plateau, _, params = _optimizers()
    with pytest.raises(ValueError, match="not a loss"):
        check(halving_on_plateau(params(), lr=0.1), NewtonLR(0.1, batches_per_epoch=5),
              [[np.ones(2)]])


@pytest.mark.torch
def test_a_wrapper_like_the_tlr_authors_is_read_through_its_optimizer_and_fed_closures():
    torch = pytest.importorskip("torch", reason="the wrapper is a torch.optim.Optimizer")
    _, _, wrapper, params = _optimizers()
    inner = torch.optim.SGD([{"params": params(), "lr": 0.1}, {"params": params(), "lr": 0.2}])
    theirs = wrapper(inner)
    losses = [1.0, 0.9, 0.8, 0.85, 0.7, 0.6, 0.65]
    # a loss-driven ours, so that the losses reach theirs as closures (SGD calls them)
    ours = ReduceLROnPlateau([0.1, 0.2], patience=100)
    result = check(theirs, ours, losses, until="end")
    assert not result and "WrapperHalvingEvery3" in result.subject
    assert [d.step for d in result.differences] == [3, 4, 5, 6, 7]
    assert result.lrs_theirs == [0.05, 0.1] and inner.param_groups[1]["lr"] == 0.2 / 4


# -- truth value and bad arguments --------------------------------------------------------------
def test_a_failed_result_is_falsy_and_a_passing_one_truthy():
    exact = _cosine(0.1, 30)
    passing = check(exact, CosineAnnealingLR(0.1, T_max=30), steps=30, rtol=1e-10)
    failing = check(lambda t: exact(t) + 1e-3, CosineAnnealingLR(0.1, T_max=30), steps=30)
    assert passing and bool(passing) is True
    assert not failing and bool(failing) is False
    printed = [str(r) for r in (passing, failing) if not r]  # the idiom of the docstring
    assert printed == [str(failing)]
    assert "failed result is falsy" in " ".join(type(failing).__doc__.split())


def test_bad_until_offset_and_resync_are_clear_errors():
    ours = lambda: CosineAnnealingLR(0.1, T_max=5)
    with pytest.raises(ValueError, match=r"until must be one of \['first', 'end'\]"):
        check(lambda t: 0.1, ours(), steps=3, until="all")
    with pytest.raises(ValueError, match="resync=True needs until='end'"):
        check(lambda t: 0.1, ours(), steps=3, resync=True)
    with pytest.raises(TypeError, match="resync must be True or False"):
        check(lambda t: 0.1, ours(), steps=3, until="end", resync="yes")
    with pytest.raises(ValueError, match="offset must be <= 3"):
        check(lambda t: 0.1, ours(), steps=3, offset=4)
    with pytest.raises(ValueError, match="offset must be an integer >= -3"):
        check(lambda t: 0.1, ours(), steps=3, offset=-4)
    with pytest.raises(ValueError, match="offset must be an integer"):
        check(lambda t: 0.1, ours(), steps=3, offset=1.5)


def test_resync_names_a_scheduler_whose_rates_cannot_be_set():
    class Fixed(StepLR):
        @property
        def lrs(self):
            return [0.1]

        @lrs.setter
        def lrs(self, values):
            if values != [0.1]:
                raise ValueError("fixed rate")

    with pytest.raises(ValueError, match="resync=True sets ours.lrs .* Fixed refused"):
        check(lambda t: 0.2, Fixed(0.1, step_size=2), steps=3, until="end", resync=True)
