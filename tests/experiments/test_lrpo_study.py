"""refimpl.experiments.lrpo_study: tables from records, report mode, resuming a stopped run.

The quick size's measured figures are asserted in test_reproduce.py; here the tables are
built from records written by hand (report mode: nothing trains), and a stopped run is
continued on a tiny configuration (64 images, a few epochs) of the embedded sample.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from refimpl.data import load_fashion_mnist
from refimpl.experiments import lrpo_study as study
from refimpl.experiments._records import RunRecords

#: a few epochs on 64 sample images: a second or two per run
TINY = {"n_train": 64, "n_val": 64, "trad_epochs": 4, "pretrain": 2, "jump": 1, "finetune": 1,
        "seeds": 1}
EPOCH_FIELDS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")


def _refuse(*args, **kwargs):
    raise AssertionError("report mode must load no data and build no model")


@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr(study, "load_fashion_mnist", _refuse)
    monkeypatch.setattr(study, "get_model", _refuse)


def _fake_record(method: str, seed: int, epochs: int) -> dict:
    """A record shaped like the study's, with known numbers."""
    rng = np.random.default_rng([seed, int(method == "lrpo")])
    acc = [round(v, 4) for v in 0.5 + 0.4 * rng.random(epochs)]
    loss = [round(1.5 - v, 4) for v in acc]
    record = {"train_loss": loss, "train_acc": acc, "val_loss": loss, "val_acc": acc,
              "lr": [0.05] * epochs, "epoch_time": [1.0] * epochs, "wall_s": 10.0 + seed,
              "sittings": 1}
    if method == "lrpo":
        record.update(fit_time=0.1 + seed / 100, alpha=1.05 + seed / 100, r=0.05, c=0.9,
                      phases=[{"name": name, "epochs": n, "lr": lr, "seconds": 2.0 + seed,
                               "steps": 0}
                              for name, n, lr in (("pretrain", 10, 0.05), ("predictor", 0, 0.0),
                                                  ("jump", 1, 0.0525 + seed / 1000),
                                                  ("finetune", 5, 0.001))])
    return record


def _write(results, runs) -> dict:
    """Write fake full-size records for ``runs`` [(method, seed)]; return them by run."""
    records = RunRecords(results, "lrpo")
    written = {}
    for method, seed in runs:
        epochs = study.FULL["trad_epochs"] if method == "traditional" else 16
        record = _fake_record(method, seed, epochs)
        settings = study.run_settings(method, seed, study.FULL, 0, "full")
        written[method, seed] = records.get_or_run(settings, lambda r=record: r)
    return written


def test_report_without_records_states_0_of_n(tmp_path, no_training):
    result = study.run(results=tmp_path, out=tmp_path / "out", report=True)
    table = result.table("LRPO vs traditional")
    for name in ("best val acc", "final val loss", "epochs", "wall time per run (s)"):
        row = table.row(name)
        assert row["traditional"] == row["LRPO"] == "not run yet (0 of 3)"
    assert table.row("alpha")["traditional"] == "-"
    assert table.row("best val acc")["paper traditional"] == 0.8845
    per_run = result.table("Per run")
    assert per_run.column("status") == ["not run yet"] * 6
    assert per_run.column("run")[:2] == ["LRPO seed 0", "LRPO seed 1"]  # LRPO trains first
    assert "6 of 6 runs have not finished" in result.notes[0]
    assert result.records["finished"] == 0 and result.figures == []
    with pytest.raises(KeyError):
        result.table("LRPO phases")
    assert not (tmp_path / "lrpo.jsonl").exists()


def test_report_with_some_records_states_n_and_means(tmp_path, no_training):
    written = _write(tmp_path, [("lrpo", 0), ("lrpo", 1), ("traditional", 0)])
    result = study.run(results=tmp_path, out=tmp_path / "out", report=True)
    table = result.table("LRPO vs traditional")
    trad, lrpo = written["traditional", 0], [written["lrpo", 0], written["lrpo", 1]]
    assert table.row("best val acc")["traditional"] == f"{max(trad['val_acc']):.4f} (n=1 of 3)"
    best = [max(r["val_acc"]) for r in lrpo]
    assert table.row("best val acc")["LRPO"] == (
        f"{np.mean(best):.4f} ± {max(best) - min(best):.4f} (n=2 of 3)")
    assert table.row("epochs")["traditional"] == "100 (n=1 of 3)"
    assert table.row("epochs")["LRPO"] == "16 (n=2 of 3)"
    assert table.row("alpha")["LRPO"] == "1.0550 ± 0.0100 (n=2 of 3)"
    last = trad["val_acc"][-10:]
    assert table.row("best val acc, last 10 epochs")["traditional"] == (
        f"{max(last):.4f} (n=1 of 3)")
    assert table.row("mean val acc, last 10 epochs")["traditional"] == (
        f"{np.mean(last):.4f} (n=1 of 3)")
    swing = np.mean(np.abs(np.diff(trad["val_acc"][-11:])))
    assert table.row("mean change of val acc between epochs, last 10")["traditional"] == (
        f"{swing:.4f} (n=1 of 3)")
    reached = np.flatnonzero(np.asarray(trad["val_acc"]) >= lrpo[0]["val_acc"][-1])
    assert table.row("trad. epochs to LRPO's final val acc")["traditional"] == (
        f"{reached[0] + 1} (n=1 of 3)")
    summary = result.data["summary"]
    assert summary["lrpo"]["best val acc"] == best
    assert summary["traditional"]["final val acc"] == [trad["val_acc"][-1]]
    status = dict(zip(result.table("Per run").column("run"),
                      result.table("Per run").column("status")))
    assert status["LRPO seed 1"] == "finished" and status["traditional seed 1"] == "not run yet"
    phases = result.table("LRPO phases")
    assert phases.row("jump")["lr"] == "0.05300 ± 0.00100 (n=2 of 3)"
    assert phases.row("predictor")["lr"] == "-"
    assert "3 of 6 runs have not finished" in result.notes[0]
    assert result.records["finished"] == 3
    assert [p.rsplit("/", 1)[-1] for p in result.figures] == ["results_lrpo.png"]


def test_report_with_every_record_states_no_n(tmp_path, no_training):
    _write(tmp_path, [(m, s) for m in study.METHODS for s in range(3)])
    result = study.run(results=tmp_path, report=True)
    cells = [c for row in result.tables[0].rows for c in row[1:3]]
    assert not any("n=" in str(c) or "not run" in str(c) for c in cells)
    assert result.table("Per run").column("status") == ["finished"] * 6
    assert not any("have not finished" in note for note in result.notes)


def _stop_after(epochs: int):
    """An on_epoch_end that raises after ``epochs + 1`` epochs, before that epoch's
    checkpoint: the checkpoint left behind holds ``epochs`` epochs."""
    original = study._WallClock.on_epoch_end

    def on_epoch_end(self, trainer, logs):
        original(self, trainer, logs)
        if trainer.epoch == epochs + 1:
            raise _Stopped

    return on_epoch_end


class _Stopped(Exception):
    pass


@pytest.mark.slow
def test_stopped_run_resumes_from_its_checkpoint_to_the_same_history(tmp_path, monkeypatch):
    whole = study.run(quick=True, out=tmp_path / "whole", **TINY).data["runs"]
    out = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        patch.setattr(study._WallClock, "on_epoch_end", _stop_after(2))
        with pytest.raises(_Stopped):
            study.run(quick=True, out=out, **TINY)
    lines = (out / "lrpo-quick.jsonl").read_text().splitlines()
    assert [json.loads(line)["settings"]["method"] for line in lines] == ["lrpo"]
    (checkpoint,) = (out / "checkpoints" / "lrpo-quick").glob("*/last.npz")
    report = study.run(quick=True, out=out, report=True, **TINY)
    assert report.table("Per run").row("traditional seed 0")["status"] == (
        "stopped after epoch 2 of 4 (checkpoint in --out)")
    assert checkpoint.exists()  # a report deletes nothing

    resumed = study.run(quick=True, out=out, **TINY).data["runs"]["traditional|0"]
    assert resumed["resumed_from"] == 2 and resumed["sittings"] == 2
    assert whole["traditional|0"]["resumed_from"] == 0
    for field in EPOCH_FIELDS:
        assert resumed[field] == whole["traditional|0"][field], field
    assert len(resumed["val_acc"]) == 4 and resumed["wall_s"] > 0
    assert not checkpoint.parent.exists()  # deleted once the record is written
    assert len((out / "lrpo-quick.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_train_traditional_continues_only_its_own_checkpoint(tmp_path):
    train = load_fashion_mnist("train", source="sample", subset=64, seed=0)
    val = load_fashion_mnist("test", source="sample", subset=64, seed=0)
    fresh = study.train_traditional(train, val, 0, 3)
    study.train_traditional(train, val, 0, 2, checkpoint_dir=tmp_path, key="one")
    other = study.train_traditional(train, val, 0, 3, checkpoint_dir=tmp_path, key="two")
    assert other["resumed_from"] == 0  # another run's checkpoint: started afresh
    study.train_traditional(train, val, 0, 2, checkpoint_dir=tmp_path, key="one")
    again = study.train_traditional(train, val, 0, 3, checkpoint_dir=tmp_path, key="one")
    assert again["resumed_from"] == 2
    for field in EPOCH_FIELDS:
        assert other[field] == again[field] == fresh[field], field
