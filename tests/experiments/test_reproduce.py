"""refimpl.experiments: every study's --quick size runs and its qualitative claim is checked.

Where the paper's claim holds at the quick size the test asserts the claim; where it does
not, the test asserts the measured figure (docs/results.md explains the difference). The
quick configurations are fixed, seeded and use the embedded Fashion-MNIST sample, so the
measured figures are the same on every machine.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from refimpl import experiments
from refimpl.experiments import greedy_robustness as gr
from refimpl.experiments.common import StudyResult, Table, fmt


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("reproduce")


# ----------------------------------------------------------------------------- registry

def test_registry_names_every_study_module():
    assert set(experiments.STUDIES) == {"greedy-robustness", "pinn-helmholtz", "lrpo",
                                        "dlrs-batch", "greedy-factor-sweep", "tlr-robustness"}
    for name in experiments.STUDIES:
        assert callable(experiments.get_study(name).run)
    with pytest.raises(ValueError, match="unknown study 'nope'"):
        experiments.get_study("nope")


def test_main_refuses_an_unknown_study(capsys):
    with pytest.raises(SystemExit) as exit_info:
        experiments.main(["nope"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_table_markdown_and_lookups():
    table = Table("T", ["name", "x"], [["a", 1.23456789], ["b", float("nan")]])
    text = table.markdown()
    assert "| a | 1.235 |" in text and "| b | nan |" in text
    assert table.column("x")[0] == 1.23456789 and table.row("b")["name"] == "b"
    assert fmt(1e-7) == "1.000e-07" and fmt(3) == "3"
    with pytest.raises(KeyError):
        table.row("c")


# ----------------------------------------------------------------------------- greedy robustness

@pytest.mark.parametrize("fn", gr.FUNCTIONS, ids=lambda f: f.name)
def test_test_function_gradients(fn):
    x, h = np.array([0.37, -0.81]), 1e-6
    numeric = [(fn.f(x + h * e) - fn.f(x - h * e)) / (2 * h) for e in np.eye(2)]
    np.testing.assert_allclose(fn.grad(x), numeric, rtol=1e-6, atol=1e-7)
    assert fn.f(np.array([1.0, 1.0]) if fn.name == "rosenbrock" else np.zeros(2)) == \
        pytest.approx(0.0, abs=1e-12)


def test_noise_plans():
    spikes = np.mean([gr.noise_plan("spike", s)["spike"].mean() for s in range(200)])
    assert 0.015 < spikes < 0.025  # 2% of steps
    periodic = gr.noise_plan("periodic", 3)["spike"]
    gaps = np.diff(np.flatnonzero(periodic))
    assert len(set(gaps)) == 1 and 50 <= gaps[0] <= 100
    with pytest.raises(ValueError, match="noise"):
        gr.noise_plan("pink", 0)


def test_adversarial_noise_opposes_recent_progress():
    noise = gr.LossNoise("adversarial", 0)
    seen = [noise.observe(v) for v in (10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 4.0)]
    assert seen[:5] == [10.0, 9.0, 8.0, 7.0, 6.0]  # no 5-step history yet
    assert seen[5] == 5.0 + 2 * (10.0 - 5.0)  # the observed loss rises as the true one falls
    assert seen[7] == 4.0 + 2 * (8.0 - 4.0)  # five steps back: 8.0


def test_noise_is_on_the_loss_only():
    """A.6: noise added to the loss has ~zero gradient, so a scheduler that does not read
    the loss follows the same trajectory under every noise type."""
    fn = gr.FUNCTIONS[1]
    clean = gr.run_one(fn, "cosine", "none", seed=4)
    for noise in gr.NOISES[1:]:
        noisy = gr.run_one(fn, "cosine", noise, seed=4)
        np.testing.assert_array_equal(noisy["true"], clean["true"])
    spiky = gr.run_one(fn, "greedy", "spike", seed=4)
    assert not np.array_equal(spiky["observed"], spiky["true"])


def test_schedulers_share_start_and_noise():
    fn = gr.FUNCTIONS[0]
    a = gr.run_one(fn, "greedy", "spike", seed=4)
    b = gr.run_one(fn, "cosine", "spike", seed=4)
    assert a["true"][0] == b["true"][0]  # same start
    assert np.array_equal(a["observed"] - a["true"] > 0, b["observed"] - b["true"] > 0)


def test_greedy_robustness_quick_claim(out):
    result = experiments.main(["greedy-robustness", "--quick", "--out", str(out)])
    assert result == 0
    record = json.loads((out / "greedy-robustness-quick.json").read_text())
    table = Table(**record["tables"][0])
    # Paper: GreedyLR's pooled median final loss is the lowest of the four. Quick size (the
    # four functions, 4 seeds, no network): it is, over Adam and over SGD-momentum (measured
    # 0.316 vs 0.63 and 0.405 vs 0.65; Rosenbrock decides it), though the 95% intervals of
    # the medians overlap at n = 80.
    summary = record["data"]["medians"]
    medians = {(opt, sched): summary[f"{opt}|{sched}|pooled"]["median"]
               for opt in gr.OPTIMIZERS for sched in gr.SCHEDULERS}
    for opt in gr.OPTIMIZERS:
        for baseline in ("cosine", "cosine-restarts", "exponential"):
            assert medians[opt, "greedy"] < medians[opt, baseline]
    assert medians["adam", "greedy"] == pytest.approx(0.3163, rel=1e-3)
    assert medians["sgd-momentum", "greedy"] == pytest.approx(0.4046, rel=1e-3)
    greedy = summary["adam|greedy|pooled"]
    assert (greedy["n"], greedy["asked"]) == (80, 80)
    assert greedy["low"] <= greedy["median"] <= greedy["high"]
    assert greedy["high"] > medians["adam", "cosine"]  # the intervals overlap
    row = table.rows[0]
    assert row[:2] == ["adam", "greedy"] and row[2] == "none asked"
    assert row[4].startswith("0.3163 [") and row[4].endswith("(n=80)")
    assert (out / "results_greedy_robustness.png").stat().st_size > 0


# ----------------------------------------------------------------------------- PINN

@pytest.mark.slow
def test_pinn_helmholtz_quick_claim(out):
    result = experiments.run_study("pinn-helmholtz", quick=True, out=out)
    rows = {(r[1], r[2]): dict(zip(result.tables[0].headers, r)) for r in result.tables[0].rows}
    # Paper: DLRS reaches < 1% error. Quick size (250 Hz, 500 points, u(1) = -1, float32 as
    # the authors' code): in both batch orders DLRS passes the authors' 0.9% stop first, at
    # the first check (measured: epoch 100 in both orders; the fixed rate at epochs 150 and
    # 200). In shuffled order the fixed rate's error swings at lr 0.005 (1.1%, 4.3%, 0.62% at
    # epochs 100, 150, 200), so whether it passes at 200 or later ('-': never in 300 epochs)
    # turns on rounding; DLRS passes first either way.
    assert "float32" in result.scale

    def first(row):  # '-': never below 0.9%
        return math.inf if row["first epoch < 0.9%"] == "-" else row["first epoch < 0.9%"]

    for order in ("fixed", "shuffled"):
        dlrs, fixed = rows[order, "dlrs"], rows[order, "fixed"]
        assert dlrs["final error"] < 0.009 and first(dlrs) == 100
        assert first(dlrs) < first(fixed)
    summary = {(r[0], r[1]): r[2] for r in result.table("Frequencies below 0.9%").rows}
    assert summary["fixed", "dlrs"] == summary["shuffled", "dlrs"] == "1 of 1"
    assert len(result.figures) == 2


# ----------------------------------------------------------------------------- LRPO

@pytest.mark.slow
def test_lrpo_quick_claim(out, monkeypatch):
    result = experiments.run_study("lrpo", quick=True, out=out)
    table = result.table("LRPO vs traditional")
    trad, lrpo = result.data["summary"]["traditional"], result.data["summary"]["lrpo"]
    # Paper: LRPO needs fewer epochs and less time (16 vs 100). Quick size: 5 vs 8 epochs,
    # seeds 0 and 1 of each. (Times are recorded, not asserted: a test's clock measures the
    # machine's load; the bench compares speeds.)
    assert table.row("epochs")["LRPO"] == "5" and table.row("epochs")["traditional"] == "8"
    assert lrpo["epochs"] == [5, 5] and trad["epochs"] == [8, 8]
    assert all(t > 0 for t in lrpo["wall time per run (s)"] + trad["wall time per run (s)"])
    assert all(1.0 <= alpha <= 1.5 for alpha in lrpo["alpha"])
    assert all(t > 0 for t in lrpo["predictor fit (s)"])
    # Paper: LRPO's best accuracy is 2 points below the traditional run's (86.45% vs
    # 88.45%). Measured at the quick size (128 images, 5 vs 8 epochs): 30.5% and 37.1% vs
    # 48.4% and 43.4% (seeds 0, 1), so the claim does not show at this size.
    assert np.mean(lrpo["best val acc"]) < np.mean(trad["best val acc"]) - 0.1
    assert all(ours < theirs for ours, theirs in zip(lrpo["best val acc"], trad["best val acc"]))
    assert table.row("best val acc")["traditional"].startswith(
        f"{np.mean(trad['best val acc']):.4f} ± ")
    # The fixed-rate run's accuracy swings between epochs: measured at seed 0, best 48.4% at
    # epoch 7, final 18.4% one epoch later.
    assert max(b - f for b, f in zip(trad["best val acc"], trad["final val acc"])) > 0.25
    # One record per run, LRPO first; a report from them loads no data and gives the same
    # tables; the finished runs leave no checkpoint.
    lines = [json.loads(line)["settings"] for line in
             (out / "lrpo-quick.jsonl").read_text().splitlines()]
    assert [(s["method"], s["seed"]) for s in lines] == [
        ("lrpo", 0), ("lrpo", 1), ("traditional", 0), ("traditional", 1)]

    def no_data(*args, **kwargs):
        raise AssertionError("a report loads no data")

    monkeypatch.setattr("refimpl.experiments.lrpo_study.load_fashion_mnist", no_data)
    report = experiments.run_study("lrpo", quick=True, out=out, report=True)
    assert [t.rows for t in report.tables] == [t.rows for t in result.tables]
    assert not list((out / "checkpoints" / "lrpo-quick").rglob("*.npz"))


# ----------------------------------------------------------------------------- DLRS batch

@pytest.mark.slow
def test_dlrs_batch_quick_runs_and_dlrs_acts(out):
    result = experiments.run_study("dlrs-batch", quick=True, out=out)
    table = result.table("Final train loss")
    assert table.column("batch") == [64, 256]
    assert all(lr != 0.01 for lr in table.column("DLRS final lr (mean)"))  # DLRS moved it
    assert len(result.figures) == 2
    final = result.data["final"]
    for key, values in final.items():
        assert all(math.isfinite(v) for v in values["train_loss"]), key
    # Paper: DLRS's gain over Adam grows with the batch size. Measured at the quick size
    # (CNN, 1,000 images, 2 epochs, 2 seeds): DLRS and Adam end within 1% of each other at
    # both batch sizes (256: 1.463 vs 1.469), so the claim is not visible here.
    for batch in (64, 256):
        adam = np.mean(final[f"{batch}|adam"]["train_loss"])
        dlrs = np.mean(final[f"{batch}|adam+dlrs"]["train_loss"])
        assert abs(dlrs - adam) < 0.01 * adam


# ----------------------------------------------------------------------------- factor sweep

@pytest.mark.slow
def test_greedy_factor_sweep_quick_measured(out):
    result = experiments.run_study("greedy-factor-sweep", quick=True, out=out)
    # Paper (Phi-2): divergence below a threshold, losses within 1.5% above it. Quick size
    # (1,000 pretraining images, 60 fine-tuning steps): the fixed-rate edge is 0.01 (0.01 ends
    # at 0.73 from a start of 0.88, 0.05 at 1.45); GreedyLR from it jumps to 0.01 / F at the
    # first step, so F = 0.1 and 0.5 diverge (final 546 and 3.5) and F = 0.95 and 0.99 do not
    # (0.58, 0.67): threshold 0.95, spread 15%, not the paper's 1.5%. Threaded BLAS moves
    # these figures (spread 8.5%, final 430 at F = 0.1), not the verdicts asserted here.
    probes = result.table("Fixed-rate")
    assert probes.column("lr") == [0.01, 0.05, 0.1]
    assert probes.column("diverged") == [False, True, True]
    assert result.data["edge"] == 0.01 and result.data["threshold"] == 0.95
    start = probes.column("start loss")[0]
    finals = {f: v[0] for f, v in result.data["finals"].items()}
    assert finals["0.1"] > finals["0.5"] > 3 * start
    assert max(finals["0.95"], finals["0.99"]) < 0.9 * start
    peaks = result.table("Fine-tuning loss").column("median peak lr")
    assert peaks[:2] == [pytest.approx(0.1), pytest.approx(0.02)]
    assert all(peak >= 0.01 / f * (1 - 1e-9) for peak, f in zip(peaks, (0.1, 0.5, 0.95, 0.99)))
    assert 0.03 < result.data["spread"] == result.data["spread3"] < 0.3


# ----------------------------------------------------------------------------- TLR

@pytest.mark.slow
def test_tlr_robustness_quick_measured(out):
    result = experiments.run_study("tlr-robustness", quick=True, out=out)
    table = result.table("Final training loss over the initial rates")
    fixed, tlr = table.row("sgd+fixed"), table.row("sgd+tlr")
    # Paper: TLR's result hardly depends on the initial rate (SGD, K = 0.2 epoch = 94 steps
    # on MNIST). Quick size (600 images, batch 32, K = 4 steps, SGD momentum 0.8): with
    # momentum, consecutive 4-step displacements are nearly parallel, each update multiplies
    # the rate by up to 100 and both starts blow up (`refimpl reproduce tlr-robustness --quick`
    # prints final losses 54 and 5e18 from 1e-4 and 1e-1, where the fixed rate ends at
    # 0.8-2.3). How far a diverging run gets depends on rounding, so
    # the test asserts the divergence itself: both TLR starts end 10x above every fixed run.
    assert fixed["max"] < 2.5 and tlr["min"] > 10 * fixed["max"]


def test_study_result_round_trips_through_json(tmp_path):
    result = StudyResult("x", True, tables=[Table("T", ["a"], [[1.0]])],
                         data={"arr": np.arange(3)})
    path = result.save(tmp_path)
    assert path.name == "x-quick.json"
    loaded = json.loads(path.read_text())
    assert loaded["tables"][0]["rows"] == [[1.0]] and loaded["data"]["arr"] == [0, 1, 2]
