"""refimpl.crosscheck.check, refimpl.testing, refimpl.trace and ``refimpl crosscheck replay``:
checking third-party implementations against ours and naming the rule that parted them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refimpl.crosscheck import check, main
from refimpl.schedulers import DLRS, CosineAnnealingLR, GreedyLR, NewtonLR
from refimpl.testing import assert_scheduler_close
from refimpl.trace import TraceRecorder, load_trace


def _noisy_losses(steps: int, seed: int) -> list[float]:
    """A decreasing loss with 5% noise: enough ups and downs to exercise every branch."""
    rng = np.random.default_rng(seed)
    trend = np.exp(-np.linspace(0.0, 3.0, steps))
    return [float(v) for v in trend + 0.05 * rng.standard_normal(steps)]


def _cosine(base: float, eta_min: float, t_max: int):
    """CosineAnnealingLR's closed form as a schedule function t -> lr (optax style)."""
    return lambda t: eta_min + (base - eta_min) * (1 + math.cos(math.pi * t / t_max)) / 2


def _hf_greedy():
    pytest.importorskip("torch", reason="transformers' GreedyLR drives a torch optimizer")
    hf = pytest.importorskip("transformers.optimization", reason="needs transformers")
    if not hasattr(hf, "GreedyLR"):
        pytest.skip("this transformers has no GreedyLR")
    return hf.GreedyLR


def _sgd(lrs):
    import torch

    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr}
                            for lr in lrs])


# -- acceptance ---------------------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.hf
@pytest.mark.parametrize("config", [
    {},
    {"patience": 0, "threshold": 0.0},
    {"patience": 2, "cooldown": 3, "warmup": 2, "threshold_mode": "rel", "threshold": 1e-3},
    {"patience": 1, "smooth": True, "window_size": 7, "max_lr": math.inf, "min_lr": 0.0},
    {"patience": 1, "min_lr": [1e-2, 1e-3], "max_lr": [math.inf, 0.5], "reset_start": 3},
])
def test_transformers_greedy_equals_ours_on_noisy_losses(config):
    transformers_greedy = _hf_greedy()
    lrs = [0.1, 0.05]
    losses = _noisy_losses(1500, seed=len(config))
    ours = GreedyLR(lrs, **config)
    result = check(transformers_greedy(_sgd(lrs), **config), ours, losses)
    assert result.ok, str(result)
    assert result.steps == 1500 and result.max_rel_diff == 0.0  # bit for bit
    assert ours.lrs != lrs  # the trace moved the rates


@pytest.mark.torch
def test_pytorch_dlrs_differs_exactly_at_the_first_epoch_with_slope_one():
    pytest.importorskip("torch", reason="pytorch-dlrs is a torch scheduler")
    dlrs = pytest.importorskip("dlrs", reason="needs pytorch-dlrs (pip install pytorch-dlrs)")
    rng = np.random.default_rng(3)
    epochs = [list(rng.uniform(0.5, 2.0) * np.exp(rng.uniform(-0.6, 0.4) * np.linspace(0, 1, 15))
                   * (1 + 0.02 * rng.standard_normal(15))) for _ in range(60)]
    # (l_B - l_1) / mean is exactly 1 for these: 2/2, 4/4 (all exact in binary)
    epochs[30], epochs[44] = [1.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0, 6.0]
    theirs = dlrs.DLRSScheduler(_sgd([0.01]), min_lr=1e-5, max_lr=0.1)
    result = check(theirs, DLRS(0.01), epochs)
    slopes = [(e[-1] - e[0]) / (sum(e) / len(e)) for e in epochs]  # pytorch-dlrs' formula
    assert max(slopes[:30]) < 1.0 and slopes[30] == slopes[44] == 1.0
    assert not result.ok and result.step == 31  # signal 31 is epochs[30], the first slope 1
    assert result.explain["regime"] == "divergent" and result.explain["slope"] == 1.0
    assert result.explain["delta"] == 0.5 and result.previous["regime"] != "divergent"
    # theirs took the flat delta 1: lr - 1 * G * 1, ours lr - 0.5 * G * 1
    before = result.explain["lrs_before"][0]
    g = result.explain["granularity"][0]
    assert result.theirs == pytest.approx(before - g, rel=1e-12)
    assert result.ours == pytest.approx(before - 0.5 * g, rel=1e-12)
    assert "step 31" in str(result) and "divergent" in str(result)


def test_schedule_function_equal_to_the_cosine_closed_form_is_ok():
    ours = CosineAnnealingLR([0.1, 0.03], T_max=250, eta_min=1e-3)
    theirs = lambda t: [_cosine(0.1, 1e-3, 250)(t), _cosine(0.03, 1e-3, 250)(t)]
    result = check(theirs, ours, steps=250, rtol=1e-10)
    assert result.ok and result.steps == 250, str(result)
    assert 0 < result.max_rel_diff < 1e-10  # recursive vs closed form: rounding, not zero


@pytest.mark.parametrize("k", [0, 1, 57, 199])
def test_a_drift_of_1e_6_planted_at_step_k_is_reported_at_step_k(k):
    exact = _cosine(0.1, 0.0, 400)
    drifted = lambda t: exact(t) * (1 + 1e-6) if t >= k else exact(t)
    result = check(drifted, CosineAnnealingLR(0.1, T_max=400), steps=300, rtol=1e-10)
    assert not result.ok and result.step == k
    assert result.theirs == exact(k) * (1 + 1e-6)
    assert result.ours == pytest.approx(exact(k), rel=1e-12)
    assert result.bound == "rtol" and f"first difference at step {k}" in str(result)


@pytest.mark.torch
@pytest.mark.hf
def test_a_drift_in_a_loss_driven_scheduler_is_reported_with_the_rule():
    transformers_greedy = _hf_greedy()
    losses = _noisy_losses(400, seed=9)
    theirs = transformers_greedy(_sgd([0.1]), patience=1)
    k = 123

    def read_lr(scheduler):
        lr = scheduler.optimizer.param_groups[0]["lr"]
        return lr * (1 + 1e-6) if scheduler.last_epoch >= k else lr

    result = check(theirs, GreedyLR(0.1, patience=1), losses, read_lr=read_lr)
    assert result.step == k and result.theirs == pytest.approx(result.ours * (1 + 1e-6))
    assert result.explain["branch"] in {"count", "increase", "decrease", "cooldown", "warmup"}
    assert result.explain["rule"].startswith(result.explain["branch"])


class _MyGreedyLR:
    """A user's port of GreedyLR with a bug: it lowers the rate one step late."""

    def __init__(self, lr, patience):
        self.lr, self.patience, self.best, self.bad = lr, patience, math.inf, 0

    def step(self, loss):
        if loss < self.best - 1e-6:
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        if self.bad > self.patience + 1:  # the bug: should be > patience
            self.lr, self.bad = max(self.lr * 0.95, 1e-3), 0


def test_assert_scheduler_close_names_step_and_rule():
    losses = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99]
    mine = _MyGreedyLR(0.1, patience=2)
    with pytest.raises(AssertionError) as error:
        assert_scheduler_close(mine, GreedyLR(0.1, patience=2), losses,
                               read_lr=lambda s: s.lr, msg="my port")
    message = str(error.value)
    # the 5th loss is the 3rd without improvement: ours lowers the rate there
    assert message.startswith("my port\n") and "first difference at step 5" in message
    assert "rule (ours): decrease: value 0.97 does not improve" in message
    assert "num_bad 3 > patience 2" in message
    assert "ours   = 0.095" in message and "theirs = 0.1" in message
    # and the passing case returns the result
    fixed = assert_scheduler_close(GreedyLR(0.1, patience=2), GreedyLR(0.1, patience=2), losses)
    assert fixed.ok and fixed.steps == len(losses)


# -- check(): kinds of `theirs`, tolerances, bad input ------------------------------------------
def test_refimpl_scheduler_as_theirs_and_group_count_mismatch():
    losses = _noisy_losses(200, seed=1)
    assert check(GreedyLR([0.1, 0.2], patience=1), GreedyLR([0.1, 0.2], patience=1), losses).ok
    with pytest.raises(ValueError, match="2 parameter groups, ours 3"):
        check(GreedyLR([0.1, 0.2]), GreedyLR([0.1, 0.2, 0.3]), losses)
    with pytest.raises(ValueError, match="1 rate but ours has 2 groups"):
        check(lambda t: 0.1, CosineAnnealingLR([0.1, 0.1], T_max=5), steps=3)


def test_atol_for_rates_that_reach_zero_and_the_bound_named():
    exact = _cosine(0.1, 0.0, 50)
    ours = CosineAnnealingLR(0.1, T_max=50)
    at_zero = check(lambda t: 0.0 if t == 50 else exact(t), ours, steps=50, rtol=1e-10)
    if not at_zero.ok:  # our recursive form ends a hair away from 0: only atol can pass it
        assert at_zero.step == 50 and at_zero.bound == "atol"
    assert check(lambda t: 0.0 if t == 50 else exact(t), CosineAnnealingLR(0.1, T_max=50),
                 steps=50, rtol=1e-10, atol=1e-15).ok
    off = check(lambda t: exact(t) + 1e-9, CosineAnnealingLR(0.1, T_max=50), steps=5,
                rtol=1e-12, atol=1e-12)
    assert off.step == 0 and off.bound == "atol + rtol" and "atol + rtol" in str(off)


def test_float32_rates_get_the_float32_tolerance():
    exact = _cosine(0.1, 0.0, 100)
    theirs = lambda t: np.float32(exact(t))
    result = check(theirs, CosineAnnealingLR(0.1, T_max=100), steps=100)
    assert result.ok and result.rtol == 1e-5
    assert not check(theirs, CosineAnnealingLR(0.1, T_max=100), steps=100, rtol=1e-12).ok


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="steps=N"):
        check(lambda t: 0.1, CosineAnnealingLR(0.1, T_max=5))
    with pytest.raises(ValueError, match="needs a 'loss' signal"):
        check(GreedyLR(0.1), GreedyLR(0.1), steps=3)
    with pytest.raises(ValueError, match="without read_lr"):
        check(object(), GreedyLR(0.1), [1.0], feed=lambda s, x: None)
    with pytest.raises(TypeError, match="cannot read rates"):
        check(object(), GreedyLR(0.1), [1.0])
    with pytest.raises(TypeError, match="refimpl scheduler"):
        check(lambda t: 0.1, lambda t: 0.1, steps=2)
    with pytest.raises(ValueError, match="only 2 signals"):
        check(GreedyLR(0.1), GreedyLR(0.1), [1.0, 2.0], steps=3)
    with pytest.raises(ValueError, match="rtol and atol"):
        check(lambda t: 0.1, CosineAnnealingLR(0.1, T_max=5), steps=2, atol=-1.0)


@pytest.mark.torch
def test_torch_scheduler_as_theirs_reads_param_groups():
    torch = pytest.importorskip("torch", reason="needs torch")
    optimizer = _sgd([0.1, 0.2])
    theirs = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=30, eta_min=0.01)
    assert check(theirs, CosineAnnealingLR([0.1, 0.2], T_max=30, eta_min=0.01), steps=60).ok


# -- explain() in the report --------------------------------------------------------------------
def test_report_of_a_newton_difference_has_a_b_and_factor():
    # ours with a x2 clamp against ours with the paper's x100: the first update that moves
    # the rate by more than x2 is reported with its a, b, den and the clamp
    rng = np.random.default_rng(0)
    H = np.diag(rng.uniform(0.5, 3.0, 6))
    w, weights = rng.standard_normal(6), []
    for _ in range(40):
        w = w - 0.01 * (H @ w)
        weights.append([w.copy()])
    paper = NewtonLR(0.01, batches_per_epoch=10, p=0.2)
    result = check(paper, NewtonLR(0.01, batches_per_epoch=10, p=0.2, max_factor=1.5), weights)
    assert result.step == 5 and result.explain["updated"] and result.explain["clamped"]
    assert result.explain["factor"] == 1.5 and result.explain["unclamped"] > 1.5
    den = result.explain["b"] - result.explain["a"]
    assert result.explain["den"] == den and den > 0
    text = str(result)
    assert "update at call 5" in text and "clamped" in text and "signal 5: 1 arrays" in text


# -- traces and `refimpl crosscheck replay` -----------------------------------------------------
def test_trace_round_trip_without_pickle(tmp_path):
    recorder = TraceRecorder(lrs=[0.1, 0.2], batches_per_epoch=4)
    for step in range(3):
        for b in range(2 + step):
            recorder.batch_loss(np.float32(1.0 + b))
        recorder.step(lrs=[0.1 / (step + 1), 0.2], loss=0.5 * step,
                      params=[np.full((2, 3), step, np.float32), np.arange(4.0)],
                      grads=None if step == 1 else [np.ones(5)])
    path = recorder.save(tmp_path / "t.npz")
    with np.load(path, allow_pickle=False) as data:  # loads with pickle off
        assert data["lrs"].shape == (4, 2)
    trace = load_trace(path)
    assert trace.steps == 3 and trace.batches_per_epoch == 4
    np.testing.assert_array_equal(trace.lrs[:, 0], [0.1, 0.1, 0.05, 0.1 / 3])
    assert trace.signals("loss") == [0.0, 0.5, 1.0]
    assert trace.signals("batch_losses") == [[1.0, 2.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]]
    params = trace.signals("params")
    assert params[2][0].shape == (2, 3) and (params[2][0] == 2).all()
    np.testing.assert_array_equal(params[0][1], np.arange(4.0))
    with pytest.raises(ValueError, match="no grads at step 2"):
        trace.signals("grads")
    assert trace.signals("none") is None


def test_trace_errors(tmp_path):
    with pytest.raises(ValueError, match="lrs="):
        TraceRecorder()
    recorder = TraceRecorder(lrs=0.1)
    recorder.step(lrs=0.1)
    with pytest.raises(ValueError, match="no loss at step 1"):
        load_trace(recorder.save(tmp_path / "a.npz")).signals("loss")
    with pytest.raises(ValueError, match="row 2 has 2 rates"):
        recorder.step(lrs=[0.1, 0.2])
    with pytest.raises(ValueError, match="does not exist"):
        load_trace(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a trace"):
        load_trace(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="TraceRecorder"):
        load_trace(tmp_path / "other.npz")


def _torch_greedy_loop(tmp_path, transformers_greedy, steps=300):
    """A small torch training loop with transformers' GreedyLR, recorded to greedy.npz."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.05},
                                 {"params": model[2].parameters(), "lr": 0.02}])
    scheduler = transformers_greedy(optimizer, patience=1, max_lr=math.inf, min_lr=1e-4)
    recorder = TraceRecorder(optimizer)
    x, y = torch.randn(256, 4), torch.randn(256, 1)
    losses = []
    for step in range(steps):
        batch = slice(32 * (step % 8), 32 * (step % 8 + 1))
        loss = torch.nn.functional.mse_loss(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step(loss.item())
        recorder.step(loss=loss)
        losses.append(loss.item())
    return recorder.save(tmp_path / "greedy.npz"), losses


@pytest.mark.torch
@pytest.mark.hf
def test_replay_of_a_torch_loop_gives_the_answer_of_check(tmp_path, capsys):
    transformers_greedy = _hf_greedy()
    path, losses = _torch_greedy_loop(tmp_path, transformers_greedy)
    for args, kwargs in [("patience=1,max_lr=inf,min_lr=1e-4",
                          {"patience": 1, "max_lr": math.inf, "min_lr": 1e-4}),
                         ("patience=2,max_lr=inf,min_lr=1e-4",
                          {"patience": 2, "max_lr": math.inf, "min_lr": 1e-4})]:
        live = check(transformers_greedy(_sgd([0.05, 0.02]), patience=1, max_lr=math.inf,
                                         min_lr=1e-4), GreedyLR([0.05, 0.02], **kwargs), losses)
        status = main(["replay", str(path), "--scheduler", "greedy", "--scheduler-args", args])
        out = capsys.readouterr().out
        assert status == (0 if live.ok else 1)
        if live.ok:
            assert "equal over 300 steps" in out
        else:
            assert f"first difference at step {live.step}" in out
            assert f"ours   = {live.ours!r}" in out and f"theirs = {live.theirs!r}" in out
            assert live.explain["rule"] in out
    assert not live.ok  # the second configuration does differ


@pytest.mark.torch
def test_replay_dlrs_trace_with_batch_losses_and_a_loss_file(tmp_path, capsys):
    dlrs = pytest.importorskip("dlrs", reason="needs pytorch-dlrs")
    optimizer = _sgd([0.02])
    scheduler = dlrs.DLRSScheduler(optimizer, min_lr=1e-5, max_lr=0.1)
    recorder = TraceRecorder(scheduler)  # reads scheduler.optimizer.param_groups
    rng = np.random.default_rng(2)
    for epoch in range(12):
        batch = [1.0, 2.0, 3.0] if epoch == 7 else list(rng.uniform(0.5, 1.5, 10))
        for loss in batch:
            recorder.batch_loss(loss)
        scheduler.step(batch)
        recorder.step()
    path = recorder.save(tmp_path / "dlrs.npz")
    assert main(["replay", str(path), "--scheduler", "dlrs"]) == 1
    out = capsys.readouterr().out
    assert "first difference at step 8" in out and "divergent: slope 1.0 (slope >= 1)" in out
    # a trace without losses takes them from a file for a loss-driven scheduler
    greedy = TraceRecorder(lrs=0.1)
    losses = _noisy_losses(50, seed=4)
    reference = GreedyLR(0.1, patience=0)
    for loss in losses:
        greedy.step(lrs=reference.step(loss))
    (tmp_path / "losses.txt").write_text("# one per line\n" + "\n".join(map(repr, losses)))
    greedy.save(tmp_path / "g.npz")
    assert main(["replay", str(tmp_path / "g.npz"), "--scheduler", "greedy", "--scheduler-args",
                 "patience=0", "--losses", str(tmp_path / "losses.txt")]) == 0
    assert "equal over 50 steps" in capsys.readouterr().out


def test_replay_newton_trace_with_parameter_snapshots(tmp_path, capsys):
    rng = np.random.default_rng(5)
    H = np.diag(rng.uniform(0.5, 2.0, 5))
    theirs = NewtonLR(0.05, batches_per_epoch=10)
    recorder = TraceRecorder(lrs=theirs.lrs, batches_per_epoch=10)
    w = rng.standard_normal(5)
    for _ in range(60):
        w = w - theirs.lr * (H @ w)
        theirs.step([w])
        recorder.step(lrs=theirs.lrs, params=[w])
    path = recorder.save(tmp_path / "newton.npz")
    assert main(["replay", str(path), "--scheduler", "newton"]) == 0
    assert "equal over 60 steps" in capsys.readouterr().out
    assert theirs.lr != 0.05  # the trace moved the rate
    assert main(["replay", str(path), "--scheduler", "newton",
                 "--scheduler-args", "gamma=0.2"]) == 1
    assert "first difference at step 5" in capsys.readouterr().out  # call 2K+1, K = 0.2 * 10


@pytest.mark.parametrize("argv, message", [
    (["replay", "missing.npz", "--scheduler", "greedy"], "does not exist"),
    (["replay", "t.npz", "--scheduler", "nope"], "unknown scheduler"),
    (["replay", "t.npz", "--scheduler", "greedy", "--scheduler-args", "patience"], "key=value"),
    (["replay", "t.npz", "--scheduler", "greedy", "--scheduler-args", "bogus=1"], "bogus"),
    (["replay", "t.npz", "--scheduler", "greedy", "--lr", "0.1,x"], "--lr"),
    (["replay", "t.npz", "--scheduler", "dlrs"], "no batch losses"),
    (["replay", "t.npz", "--scheduler", "greedy", "--losses", "bad.txt"], "line 2"),
    (["torch", "--scheduler", "plateau", "--losses", "bad.txt"], "line 2"),
    (["torch", "--scheduler", "plateau", "--losses", "short.txt", "--steps", "10"],
     "has 2 losses"),
])
def test_cli_bad_input_exits_2_with_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recorder = TraceRecorder(lrs=0.1)
    recorder.step(lrs=0.1, loss=1.0)
    recorder.save("t.npz")
    (tmp_path / "bad.txt").write_text("1.0\nnan?\n")
    (tmp_path / "short.txt").write_text("1.0\n2.0\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.torch
def test_cli_losses_file_and_one_rate_per_group(tmp_path, capsys):
    pytest.importorskip("torch", reason="needs torch")
    losses = _noisy_losses(120, seed=6)
    (tmp_path / "losses.txt").write_text("\n".join(map(repr, losses)) + "\n")
    assert main(["torch", "--scheduler", "plateau", "--losses", str(tmp_path / "losses.txt"),
                 "--lr", "0.1,0.05", "--scheduler-args", "patience=2,factor=0.5"]) == 0
    assert "ReduceLROnPlateau" in (out := capsys.readouterr().out) and "120 steps" in out


@pytest.mark.parametrize("name, args, record", [
    ("hypergrad-mul", "hyper_lr=0.05", "grads"),
    ("hypergrad-add", "hyper_lr=0.01,min_lr=0.01", "grads"),
    ("adacomp", "beta=0.8", "loss"),
])
def test_replay_covers_the_gradient_and_loss_rules(name, args, record, tmp_path, capsys):
    from refimpl.registry import make_scheduler, parse_kv

    theirs = make_scheduler(name, 0.1, **parse_kv(args))
    recorder = TraceRecorder(lrs=theirs.lrs)
    rng = np.random.default_rng(8)
    g = rng.standard_normal(4)
    for step in range(40):
        g = 0.7 * g + 0.3 * rng.standard_normal(4)  # correlated gradients move the rate
        loss = float(np.exp(-step / 20) + 0.05 * rng.standard_normal())
        signal = [g.copy()] if record == "grads" else loss
        theirs.step(signal)
        recorder.step(lrs=theirs.lrs, **({"grads": signal} if record == "grads"
                                         else {"loss": loss}))
    path = recorder.save(tmp_path / "t.npz")
    assert theirs.lr != 0.1
    assert main(["replay", str(path), "--scheduler", name, "--scheduler-args", args]) == 0
    assert "equal over 40 steps" in capsys.readouterr().out
    assert main(["replay", str(path), "--scheduler", name]) == 1  # the defaults differ
    assert "rule (ours): " in capsys.readouterr().out
