"""The GreedyLR factor sweep's parts: the edge's bisection, the threshold and spread, and the
study's tables from none, some and all of its runs (``--report``) without data or training.

The runs here are synthetic records written by the study itself with its fine-tune replaced;
the real quick run is checked in ``test_reproduce.py``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from refimpl.experiments import greedy_factor_sweep as fs

GRID = fs.FULL["rates"]


# ----------------------------------------------------------------------------- the edge

@pytest.mark.parametrize("cut", range(len(GRID) + 1))
def test_the_edge_is_the_largest_stable_rate_found_in_few_probes(cut):
    asked = []

    def diverges(lr):  # every rate from GRID[cut] up diverges
        asked.append(lr)
        return lr >= GRID[cut] if cut < len(GRID) else False

    edge = fs.stability_edge(diverges, GRID)
    assert edge == (GRID[cut - 1] if cut > 0 else None)
    assert len(asked) <= math.ceil(math.log2(len(GRID) + 1)) == 4
    assert len(set(asked)) == len(asked)


def test_the_edge_on_a_synthetic_divergence_rate():
    assert fs.stability_edge(lambda lr: lr > 3e-3, GRID) == 2e-3
    assert fs.stability_edge(lambda lr: True, GRID) is None  # every rate diverges
    assert fs.stability_edge(lambda lr: False, GRID) == 1.0  # the top: a lower bound


def test_an_unknown_probe_leaves_the_edge_unknown():
    answers = iter([False, None])
    assert fs.stability_edge(lambda lr: next(answers), GRID) is None


# ----------------------------------------------------------------------------- threshold, spread

FACTORS = (0.1, 0.2, 0.3, 0.5, 0.9)


def test_threshold_is_the_smallest_factor_with_no_divergence_at_or_above():
    diverged = [[f <= 0.2] * 3 for f in FACTORS]  # every seed diverges at F <= 0.2
    assert fs.stability_threshold(FACTORS, diverged) == 0.3
    diverged[3] = [False, True, False]  # one seed of F = 0.5 diverges: the chain breaks there
    assert fs.stability_threshold(FACTORS, diverged) == 0.9
    assert math.isnan(fs.stability_threshold(FACTORS, [[True]] * 5))
    assert fs.stability_threshold(FACTORS, [[False]] * 5) == 0.1


def test_threshold_skips_factors_without_finished_runs():
    diverged = [[True], [], [False], [], [False]]
    assert fs.stability_threshold(FACTORS, diverged) == 0.3
    assert math.isnan(fs.stability_threshold(FACTORS, [[]] * 5))


def test_spread_and_final_loss():
    assert fs.spread([1.89, 1.92, 1.91]) == pytest.approx(1.92 / 1.89 - 1)  # the paper: 1.6%
    assert math.isnan(fs.spread([2.0])) and math.isnan(fs.spread([math.inf, 1.0]))
    assert fs.final_loss([3.0] * 90 + [1.0] * 10, 100) == 1.0
    assert fs.final_loss([1.0] * 50, 100) == math.inf  # stopped at a NaN loss
    assert fs.is_diverged({"loss": [1.0] * 50, "start": 5.0}, 100)
    assert fs.is_diverged({"loss": [2.0] * 100, "start": 1.0}, 100)
    assert not fs.is_diverged({"loss": [1.0] * 100, "start": 1.0}, 100)


# ----------------------------------------------------------------------------- report mode

STEPS = fs.QUICK["n_finetune"] // fs.BATCH * fs.QUICK["finetune_epochs"]


def fake_finetune(state, images, lr, factor, seed, epochs, backend):
    """Fixed rates diverge above 0.02; GreedyLR diverges below F = 0.5."""
    bad = lr > 0.02 if factor is None else factor < 0.5
    final = 3.0 if bad else 0.5 + (factor or 0) / 10 + seed / 100
    return {"loss": [1.0] * (STEPS - 10) + [final] * 10, "lr": [lr] * STEPS, "start": 1.0}


@pytest.fixture
def no_training(monkeypatch):
    """Report mode must not load images, pretrain or fine-tune."""
    def refuse(*args, **kwargs):
        raise AssertionError("report mode trained or loaded data")

    for name in ("load_images", "pretrain", "finetune"):
        monkeypatch.setattr(fs, name, refuse)


def write_records(monkeypatch, tmp_path, seeds=2, finetune=fake_finetune):
    """Every run of the quick grid with ``seeds`` seeds, by the study with fake fine-tunes."""
    with monkeypatch.context() as patch:
        patch.setattr(fs, "load_images", lambda cfg, quick, seed: ((None, None), (None, None)))
        patch.setattr(fs, "pretrain", lambda images, seed, backend: {})
        patch.setattr(fs, "finetune", finetune)
        fs.run(quick=True, out=tmp_path, seeds=seeds)
    return tmp_path / "greedy-factor-sweep-quick.jsonl"


def test_report_without_records_trains_nothing_and_says_so(tmp_path, no_training):
    result = fs.run(quick=True, out=tmp_path, report=True, seeds=2)
    assert result.data["edge"] is None and math.isnan(result.data["threshold"])
    assert "the sweep's 8 runs are not known (0 of 8)" in result.notes[0]
    assert result.table("Fine-tuning loss").column("median final loss") == \
        ["not run yet (0 of 2)"] * 4
    assert result.table("Fixed-rate").rows == [] and result.records["finished"] == 0
    assert not list(tmp_path.glob("*.jsonl"))
    assert len(result.figures) == 1  # an empty figure, not a crash


def test_report_with_some_runs_states_n(monkeypatch, tmp_path, no_training):
    path = write_records(monkeypatch, tmp_path)
    lines = path.read_text().splitlines()
    assert len(lines) == 3 + 4 * 2  # three probes, then F x seeds
    kept = lines[:3] + [line for line in lines[3:]
                        if json.loads(line)["settings"]["seed"] == 0 or
                        json.loads(line)["settings"]["F"] == 0.99]
    path.write_text("\n".join(kept) + "\n")
    result = fs.run(quick=True, out=tmp_path, report=True, seeds=2)
    assert result.data["edge"] == 0.01
    assert result.notes[0] == "3 of 8 sweep runs have not finished; cells give n"
    table = result.table("Fine-tuning loss per factor F (GreedyLR from the edge rate 0.01)")
    assert table.column("diverged runs") == ["1 of 1 (n=1 of 2)", "0 of 1 (n=1 of 2)",
                                             "0 of 1 (n=1 of 2)", "0 of 2"]
    assert result.data["threshold"] == 0.5
    assert result.data["finals"]["0.99"] == [pytest.approx(0.599), pytest.approx(0.609)]
    assert result.records["finished"] == 3 + 5 and result.records["asked"] == 3 + 8


def test_report_with_all_runs_gives_the_threshold_and_spread(monkeypatch, tmp_path,
                                                             no_training):
    write_records(monkeypatch, tmp_path)
    result = fs.run(quick=True, out=tmp_path, report=True, seeds=2)
    assert result.notes == [("spread = max/min - 1 of the per-F median final losses; over "
                             "the three largest F run, whatever their divergence (0.5: 0.555, "
                             "0.95: 0.6, 0.99: 0.604): 0.0883")]
    probes = result.table("Fixed-rate")
    assert probes.column("lr") == [0.01, 0.05, 0.1] and probes.column("diverged") == \
        [False, True, True]
    table = result.table("Fine-tuning loss")
    assert table.column("diverged runs") == ["2 of 2", "0 of 2", "0 of 2", "0 of 2"]
    assert table.column("median final loss") == ["3", "0.555", "0.6", "0.604"]
    assert result.data["threshold"] == 0.5
    assert result.data["spread"] == pytest.approx(0.604 / 0.555 - 1)
    assert result.data["spread3"] == pytest.approx(0.604 / 0.555 - 1)
    rows = result.table("Stability threshold").rows
    assert rows[0][2] == "0.1: 2/2, 0.5: 0/2, 0.95: 0/2, 0.99: 0/2"
    # the fake's diverged runs end at 3x their start: diverged under the 2x criterion too
    assert rows[1][:3] == ["ends above 2x its start", 0.5, rows[0][2]]
    assert result.data["catastrophic"]["threshold"] == 0.5


def test_a_spread_needs_enough_factors_above_the_threshold(monkeypatch, tmp_path,
                                                            no_training):
    def only_the_largest_holds(state, images, lr, factor, seed, epochs, backend):
        record = fake_finetune(state, images, lr, factor, seed, epochs, backend)
        if factor is not None and 0.5 <= factor < 0.99:  # a mild rise: 1.5x the start
            record["loss"][-10:] = [1.5] * 10
        return record

    write_records(monkeypatch, tmp_path, finetune=only_the_largest_holds)
    result = fs.run(quick=True, out=tmp_path, report=True, seeds=2)
    rows = result.table("Stability threshold").rows
    assert rows[0][1] == 0.99 and rows[0][3:] == ["n/a: 1 F at or above"] * 2
    # under the 2x criterion only F = 0.1 (3x) diverges: three F at or above 0.5
    assert rows[1][1] == 0.5 and rows[1][3] == pytest.approx(1.5 / 0.604 - 1)


def test_a_changed_setting_is_a_new_run(monkeypatch, tmp_path, no_training):
    write_records(monkeypatch, tmp_path)
    result = fs.run(quick=True, out=tmp_path, report=True, seeds=2, n_pretrain=900)
    assert result.data["edge"] is None  # the probes ran with 1,000 pretraining images
    assert np.isnan(result.data["threshold"])


def test_a_rerun_with_every_run_recorded_loads_and_pretrains_nothing(monkeypatch, tmp_path,
                                                                     capsys):
    write_records(monkeypatch, tmp_path)
    capsys.readouterr()
    for name in ("load_images", "pretrain", "finetune"):
        monkeypatch.setattr(fs, name, lambda *a, **k: pytest.fail("trained again"))
    result = fs.run(quick=True, out=tmp_path, seeds=2)
    assert result.data["threshold"] == 0.5
    assert "done in" not in capsys.readouterr().err
