"""The TLR robustness study's tables from none, some and all of its runs (``--report``),
without images or training; the runs are synthetic records written by the study itself with
its training run replaced. The real quick run is checked in ``test_reproduce.py``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from refimpl.experiments import tlr_robustness as tlr

SMALL = {"lrs": (1e-1, 1e-3), "batches": (128,), "adapt_lr": 1e-9, "epochs": 3,
         "n_train": 60000}


def fake_train_one(rule, lr, batch, seed, train, epochs, backend):
    """Fixed 1e-1 diverges; the others end at a loss set by the rule and the rate."""
    if rule == "fixed" and lr == 1e-1:
        return {"loss": [], "lr": [], "diverged": True}
    final = (0.2 if rule == "tlr" else 0.5) + lr
    return {"loss": [1.0] * (epochs - 1) + [final], "lr": [lr * 2] * epochs,
            "diverged": False}


@pytest.fixture
def no_images(monkeypatch):
    monkeypatch.setattr(tlr, "load_fashion_mnist",
                        lambda *a, **k: pytest.fail("images loaded without a run to train"))
    monkeypatch.setattr(tlr, "train_one", lambda *a, **k: pytest.fail("a run was trained"))


def write_records(monkeypatch, results):
    with monkeypatch.context() as patch:
        patch.setattr(tlr, "load_fashion_mnist", lambda *a, **k: (np.zeros((1, 784)),
                                                                  np.zeros(1, int)))
        patch.setattr(tlr, "train_one", fake_train_one)
        tlr.run(results=results, **SMALL)
    return results / "tlr-robustness.jsonl"


def test_report_without_records_loads_nothing_and_says_so(tmp_path, no_images):
    result = tlr.run(results=tmp_path, report=True, out=tmp_path / "out", **SMALL)
    assert result.notes == ["5 of 5 runs have not finished; their cells give n"]
    table = result.table("Final training loss over the initial rates")
    assert table.column("mean") == ["not run yet (0 of 2)"] * 2
    assert all(math.isnan(v) for v in table.column("std"))
    assert result.table("Final training loss per initial rate").rows[0][2:] == \
        ["not run yet"] * 2
    assert result.table("Adaptation from lr 1e-09").title.endswith(": not run yet")
    assert result.records["finished"] == 0 and result.data["runs"] == {}
    assert len(result.figures) == 1 and not list(tmp_path.glob("*.jsonl"))


def test_report_with_some_runs_states_n(monkeypatch, tmp_path, no_images):
    path = write_records(monkeypatch, tmp_path)
    lines = path.read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["settings"]["lr"] != 1e-3]
    path.write_text("\n".join(kept) + "\n")
    result = tlr.run(results=tmp_path, report=True, **SMALL)
    assert result.notes == ["2 of 5 runs have not finished; their cells give n"]
    fixed = result.table("Final training loss over the initial rates").row("sgd+fixed")
    assert fixed["mean"] == f"{math.log(10):.4g} (n=1 of 2)"  # the diverged run: ln 10
    assert fixed["diverged"] == "1 (n=1 of 2)"
    per_rate = result.table("Final training loss per initial rate")
    assert per_rate.rows[1] == ["sgd+tlr", 128, pytest.approx(0.3), "not run yet"]
    adapt = result.table("Adaptation from lr 1e-09")
    assert adapt.rows[-1] == [3, pytest.approx(0.2 + 1e-9), pytest.approx(2e-9)]


def test_report_with_all_runs(monkeypatch, tmp_path, no_images):
    write_records(monkeypatch, tmp_path)
    result = tlr.run(results=tmp_path, report=True, **SMALL)
    assert result.notes == [] and result.records["finished"] == result.records["asked"] == 5
    table = result.table("Final training loss over the initial rates")
    tlr_row = table.row("sgd+tlr")
    assert tlr_row["mean"] == f"{(0.3 + 0.201) / 2:.4g}" and tlr_row["diverged"] == "0"
    assert tlr_row["std"] == pytest.approx(0.0495)
    assert table.row("sgd+fixed")["max"] == pytest.approx(math.log(10))


def test_a_rerun_with_every_run_recorded_loads_no_images(monkeypatch, tmp_path, no_images):
    write_records(monkeypatch, tmp_path)
    monkeypatch.setattr(tlr, "load_fashion_mnist", lambda *a, **k: pytest.fail("loaded"))
    result = tlr.run(results=tmp_path, **SMALL)
    assert result.records["finished"] == 5
