"""refimpl.crosscheck built-in replays: trace comparison, loss traces, torch / transformers
replays, optimizers and the ``torch`` / ``transformers`` commands (check(), traces and
replay: test_check.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from refimpl import crosscheck
from refimpl.crosscheck import (
    adversarial_losses,
    compare_traces,
    crosscheck_optimizer,
    crosscheck_scheduler,
    main,
    random_losses,
    replay_scheduler,
)
from refimpl.schedulers import CosineAnnealingLR, ReduceLROnPlateau


def test_compare_traces_equal_and_first_difference():
    theirs = np.linspace(1.0, 0.1, 11)[:, None] * [1.0, 0.5]
    assert compare_traces(theirs.copy(), theirs).equal
    ours = theirs.copy()
    ours[4, 1] *= 1 + 1e-9
    ours[7, 0] = 0.0
    result = compare_traces(ours, theirs, rtol=1e-12, subject="demo")
    assert not result.equal and result.first_diff_step == 4
    assert (result.ours, result.theirs) == (ours[4, 1], theirs[4, 1])
    assert result.steps == 10
    assert "step 4" in str(result) and "demo" in str(result)
    assert compare_traces(ours, theirs, rtol=1e-12).max_rel_diff == pytest.approx(1.0)


def test_compare_traces_zeros_nans_and_shapes():
    assert compare_traces([0.0, 0.0], [0.0, 0.0]).equal
    assert compare_traces([1.0, np.nan], [1.0, np.nan]).equal
    assert compare_traces([1.0, np.nan], [1.0, 2.0]).first_diff_step == 1
    with pytest.raises(ValueError, match="shape"):
        compare_traces([1.0, 2.0], [1.0])


@pytest.mark.parametrize("mode, threshold_mode", [("min", "rel"), ("min", "abs"),
                                                   ("max", "rel"), ("max", "abs")])
def test_adversarial_losses_hit_the_threshold_exactly(mode, threshold_mode):
    threshold = 0.01
    losses = adversarial_losses(300, 3, mode=mode, threshold=threshold,
                                threshold_mode=threshold_mode)
    scheduler = ReduceLROnPlateau(1.0, mode=mode, threshold=threshold,
                                  threshold_mode=threshold_mode, patience=1)
    ties = improvements_by_one_ulp = 0
    for loss in losses:
        best = scheduler.best
        if mode == "min":
            bound = best * (1 - threshold) if threshold_mode == "rel" else best - threshold
        else:
            bound = best * (threshold + 1) if threshold_mode == "rel" else best + threshold
        ties += loss == bound
        improvements_by_one_ulp += loss == np.nextafter(bound, -np.inf if mode == "min" else np.inf)
        scheduler.step(loss)
    assert len(losses) == 300 and all(np.isfinite(losses))
    assert ties >= 10 and improvements_by_one_ulp >= 10
    assert scheduler.lr < 1.0


def test_random_losses_reproducible():
    assert random_losses(50, 4) == random_losses(50, 4)
    assert random_losses(50, 4) != random_losses(50, 5)


class _BuggyCosine(CosineAnnealingLR):
    """Departs from torch by 1e-9 (relative) from epoch 17 on."""

    def get_lr(self):
        rates = super().get_lr()
        return [r * (1 + 1e-9) for r in rates] if self.last_epoch == 17 else rates


@pytest.mark.torch
def test_replay_reports_the_first_differing_step():
    pytest.importorskip("torch", reason="torch cross-check needs torch")
    assert replay_scheduler(CosineAnnealingLR([0.1, 0.2], T_max=40), 100).equal
    result = replay_scheduler(_BuggyCosine([0.1, 0.2], T_max=40), 100)
    assert not result.equal and result.first_diff_step == 17
    expected = CosineAnnealingLR([0.1, 0.2], T_max=40)
    for _ in range(17):
        expected.step()
    # the reported entry is the one that differs most: the second group (larger lr)
    assert result.theirs == pytest.approx(expected.lrs[1], rel=1e-15)
    assert result.ours == pytest.approx(expected.lrs[1] * (1 + 1e-9), rel=1e-15)


@pytest.mark.torch
def test_loss_driven_replay_needs_losses():
    pytest.importorskip("torch", reason="torch cross-check needs torch")
    with pytest.raises(ValueError, match="loss-driven"):
        replay_scheduler(ReduceLROnPlateau(0.1), 10)
    assert crosscheck_scheduler("plateau", 0.1, 200, seed=2, losses="adversarial",
                                patience=1, threshold=0.05).equal


@pytest.mark.torch
@pytest.mark.parametrize("name, kwargs", [
    ("sgd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    ("adam", {"lr": 0.01, "amsgrad": True}),
    ("adamw", {"lr": 0.01, "betas": [0.5, 0.9], "weight_decay": 0.5}),
])
def test_crosscheck_optimizer(name, kwargs):
    pytest.importorskip("torch", reason="torch cross-check needs torch")
    result = crosscheck_optimizer(name, 100, seed=1, **kwargs)
    assert result.equal, str(result)


def test_crosscheck_optimizer_rejects_unknown_names():
    pytest.importorskip("torch", reason="torch cross-check needs torch")
    with pytest.raises(ValueError, match="unknown optimizer 'lion'; choose one of"):
        crosscheck_optimizer("lion")


@pytest.mark.torch
def test_main_cli(capsys):
    pytest.importorskip("torch", reason="torch cross-check needs torch")
    assert main(["torch", "--scheduler", "cosine", "--steps", "300", "--seed", "0"]) == 0
    assert "equal over 300 steps" in capsys.readouterr().out
    assert main(["torch", "--scheduler", "multistep", "--steps", "50",
                 "--kwargs", "milestones=[0,10,10],gamma=0.5"]) == 0
    assert main(["torch", "--scheduler", "warmup", "--steps", "60",
                 "--kwargs", "after=plateau", "--losses", "adversarial"]) == 0
    assert main(["torch", "--optimizer", "adamw", "--steps", "20"]) == 0
    capsys.readouterr()
    assert main(["torch", "--scheduler", "step", "--kwargs", "gamma=-1"]) == 2
    assert "gamma" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["torch"])  # one of --scheduler / --optimizer is required
    # the same option names as `refimpl train`
    assert main(["torch", "--scheduler", "step", "--steps", "40",
                 "--scheduler-args", "step_size=7,gamma=0.5"]) == 0
    # any class torch has under our class's name is built with the same arguments
    assert main(["torch", "--scheduler", "PolynomialLR", "--steps", "60",
                 "--scheduler-args", "total_iters=50,power=2"]) == 0
    assert "vs torch.optim.lr_scheduler.PolynomialLR: equal over 60" in capsys.readouterr().out


def test_clear_error_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ImportError, match="needs PyTorch"):
        crosscheck.replay_scheduler(CosineAnnealingLR(0.1, T_max=3), 3)


@pytest.mark.torch
@pytest.mark.hf
def test_greedy_against_transformers():
    pytest.importorskip("torch", reason="transformers' GreedyLR drives a torch optimizer")
    hf = pytest.importorskip("transformers.optimization", reason="cross-check needs transformers")
    if not hasattr(hf, "GreedyLR"):
        pytest.skip("this transformers has no GreedyLR")
    from refimpl.schedulers.greedy import GreedyLR

    ours = GreedyLR([0.1, 0.05], patience=1, threshold=1e-3, threshold_mode="rel", cooldown=2)
    losses = adversarial_losses(300, 6, threshold=1e-3)
    result = replay_scheduler(ours, 300, losses, framework="transformers")
    assert result.equal and result.rtol == 1e-15, str(result)
    assert ours.lrs != [0.1, 0.05]  # the trace moved the rates
    with pytest.raises(ValueError, match="transformers"):
        replay_scheduler(GreedyLR(0.1), 10, losses)  # torch has none: the error says where


@pytest.mark.torch
def test_main_cli_framework_errors(capsys):
    pytest.importorskip("torch", reason="torch cross-check needs torch")
    assert main(["transformers", "--scheduler", "cosine"]) == 2
    assert main(["transformers", "--optimizer", "sgd"]) == 2
    assert "torch only" in capsys.readouterr().err


@pytest.mark.parametrize("framework", ["torch", "transformers"])
def test_kwargs_is_a_hidden_alias_of_scheduler_args(framework, capsys):
    from refimpl.crosscheck.cli import build_parser

    parser = build_parser()
    for option in ("--scheduler-args", "--kwargs"):
        args = parser.parse_args([framework, "--scheduler", "step", option, "gamma=0.5"])
        assert args.scheduler_args == "gamma=0.5"
    assert parser.parse_args([framework, "--scheduler", "step"]).scheduler_args == ""
    with pytest.raises(SystemExit):
        parser.parse_args([framework, "--help"])
    help_text = capsys.readouterr().out
    assert "--scheduler-args" in help_text and "--kwargs" not in help_text
