"""refimpl.experiments.pinn_helmholtz: the paper-size plan, run order, records and report mode.

The runs here are tiny (40 points, 2 epochs): they check the bookkeeping, not the claim
(tests/experiments/test_reproduce.py checks the claim at the --quick size).
"""

from __future__ import annotations

import json

import pytest

from refimpl.experiments import pinn_helmholtz as study

TINY = {"frequencies": (250,), "grid": (300,), "orders": ("fixed", "shuffled"),
        "n_points": 40, "batch_size": 20, "epochs": 2}


def test_full_size_is_the_papers():
    full = study.FULL
    assert (full["n_points"], full["batch_size"], full["epochs"]) == (10_000, 1000, 10_000)
    assert full["dtype"] == "float32"
    assert set(full["grid"]) == set(range(100, 1001, 100))
    runs = study.plan(full)
    fixed = [f for f, order, _ in runs if order == "fixed"]
    assert len(set(fixed)) == 13  # the authors' five and the grid's ten, 500 and 1000 Hz shared
    assert len(runs) == 2 * (13 + 5)


def test_plan_trains_the_authors_frequencies_first_and_shuffled_last():
    runs = study.plan(study.FULL)
    authors = study.AUTHORS_FREQUENCIES
    assert runs[:10] == [(f, "fixed", m) for f in authors for m in ("dlrs", "fixed")]
    assert all(order == "fixed" and f not in authors for f, order, _ in runs[10:26])
    assert runs[26:] == [(f, "shuffled", m) for f in authors for m in ("dlrs", "fixed")]


def test_records_carry_the_dtype_and_land_in_plan_order(tmp_path):
    study.run(results=tmp_path, **TINY)
    lines = [json.loads(line) for line in
             (tmp_path / "pinn-helmholtz.jsonl").read_text().splitlines()]
    order = [(e["settings"]["f"], e["settings"]["order"], e["settings"]["method"])
             for e in lines]
    assert order == study.plan(TINY)
    assert all(e["settings"]["dtype"] == "float32" for e in lines)
    assert all(e["record"]["backend"] == "numba" for e in lines)
    again = study.run(results=tmp_path, report=True, **TINY)  # all finished: no n, no gaps
    assert not any("still to run" in note for note in again.notes)
    assert [row[2] for row in again.table("Frequencies below").rows if row[0] == "fixed"] \
        == ["0 of 2", "0 of 2"]


def test_report_with_unfinished_runs_says_which_and_states_n(tmp_path):
    study.run(results=tmp_path, **TINY)
    wider = {**TINY, "frequencies": (250, 500)}
    result = study.run(results=tmp_path, out=tmp_path / "figures", report=True, **wider)
    per_run = result.table("Relative L2 error")
    missing = [row for row in per_run.rows if row[3] == "not run yet"]
    assert {(row[0], row[1], row[2]) for row in missing} == {
        (500, order, method) for order in ("fixed", "shuffled") for method in ("dlrs", "fixed")}
    assert len(per_run.rows) == len(study.plan(wider))
    summary = {(row[0], row[1]): row[2] for row in result.table("Frequencies below").rows}
    assert summary["fixed", "dlrs"] == "0 of 2 (n=2 of 3)"
    assert summary["shuffled", "fixed"] == "0 of 1 (n=1 of 2)"
    note = next(note for note in result.notes if "still to run" in note)
    assert note.startswith("4 of 10 runs") and "500 Hz shuffled dlrs" in note
    assert len(result.figures) == 2  # the figures leave the unfinished runs out
    assert result.records["finished"] == 6


def test_report_with_no_runs_trains_nothing_and_does_not_fail(tmp_path):
    result = study.run(results=tmp_path, out=tmp_path, report=True, **TINY)
    assert all(row[3] == "not run yet" for row in result.table("Relative L2 error").rows)
    assert not (tmp_path / "pinn-helmholtz.jsonl").exists()
    assert result.figures == []
    assert all(cell.startswith("not run yet") for row in result.table("Frequencies").rows
               for cell in row[2:])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_part_of_the_run_key(tmp_path, dtype):
    study.run(results=tmp_path, **{**TINY, "grid": (), "orders": ("fixed",), "dtype": dtype})
    other = "float64" if dtype == "float32" else "float32"
    result = study.run(results=tmp_path, report=True,
                       **{**TINY, "grid": (), "orders": ("fixed",), "dtype": other})
    assert any("still to run" in note for note in result.notes)
