"""Long work talks, short work answers at once: a study prints one line per finished run on
stderr, and ``refimpl theory --help`` imports no SciPy statistics."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from refimpl import experiments
from refimpl.experiments._records import RunRecords, cell


def test_each_run_trained_prints_one_line_and_stored_runs_are_announced(tmp_path, capsys):
    calls = []

    def run(value):
        calls.append(value)
        return {"value": value}

    records = RunRecords(tmp_path, "study", total=3)
    for a in (1, 2):
        records.get_or_run({"study": "study", "a": a, "grid": [1, 2]}, lambda a=a: run(a))
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout is for the tables
    lines = captured.err.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\[study\] run 1/3 done in \d+\.\d s: a=1", lines[0])
    assert lines[1].startswith("[study] run 2/3 done in ")

    again = RunRecords(tmp_path, "study", total=3)  # a stopped study run again
    assert again.get_or_run({"study": "study", "a": 1, "grid": [1, 2]},
                            lambda: run(99)) == {"value": 1}
    again.get_or_run({"study": "study", "a": 3, "grid": [1, 2]}, lambda: run(3))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"[study] 2 finished runs read from {tmp_path / 'study.jsonl'}; " \
                       "they are not trained again"
    assert lines[1].startswith("[study] run 2/3 done in ") and lines[1].endswith(": a=3")
    assert calls == [1, 2, 3] and len(lines) == 2
    entry = json.loads((tmp_path / "study.jsonl").read_text().splitlines()[0])
    assert entry["settings"] == {"study": "study", "a": 1, "grid": [1, 2]}
    assert entry["record"] == {"value": 1} and entry["wall_s"] >= 0
    assert "cores" in entry["machine"] and "load" not in entry["machine"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["finished"])


def test_report_mode_trains_nothing_and_counts_what_is_missing(tmp_path):
    records = RunRecords(tmp_path, "study", total=2)
    records.get_or_run({"a": 1}, lambda: {"value": 1})
    report = RunRecords(tmp_path, "study", total=2, report=True)
    assert report.get_or_run({"a": 1}, lambda: 1 / 0) == {"value": 1}
    assert report.get_or_run({"a": 2}, lambda: 1 / 0) is None
    assert report.missing == 1 and not (tmp_path / "study.jsonl").read_text().count("\n") - 1


def test_summary_counts_a_resumed_runs_own_wall_time(tmp_path):
    records = RunRecords(tmp_path, "study", total=2)
    records.get_or_run({"a": 1}, lambda: {"value": 1})
    # a run resumed from its checkpoints: this sitting was short, the run was not
    records.get_or_run({"a": 2}, lambda: {"value": 2, "wall_s": 3600.0})
    sittings = [json.loads(line)["wall_s"]
                for line in (tmp_path / "study.jsonl").read_text().splitlines()]
    assert sittings[1] < 3600.0
    assert records.summary()["wall_s"] == sittings[0] + 3600.0


def test_a_cell_states_n_while_runs_are_missing():
    assert cell([1.0, 2.0], 2, "1.5") == "1.5"
    assert cell([1.0], 3, "1") == "1 (n=1 of 3)"
    assert cell([], 3, "") == "not run yet (0 of 3)"


def test_refimpl_reproduce_reports_every_run_on_stderr(tmp_path, capsys):
    assert experiments.main(["greedy-factor-sweep", "--quick", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    # the edge's probes come first, numbered alone (how many depends on where the edge
    # lies); once it is known, every line says "run k/N"
    numbers = re.findall(r"^\[greedy-factor-sweep-quick\] run (\d+)(?:/(\d+))? done in ",
                         captured.err, flags=re.MULTILINE)
    record = json.loads((tmp_path / "greedy-factor-sweep-quick.json").read_text())
    assert numbers and numbers[-1][0] == numbers[-1][1]  # the last run is run N of N
    assert [int(n) for n, _ in numbers] == list(range(1, len(numbers) + 1))
    probes = [n for n, total in numbers if not total]
    assert probes == [n for n, _ in numbers[:len(probes)]]
    table = next(t for t in record["tables"] if t["title"].startswith("Fixed-rate"))
    finals = record["data"]["finals"]  # one final loss per factor and seed: one per run
    assert len(probes) == len(table["rows"]) >= 1
    assert len(numbers) == int(numbers[-1][1]) == len(probes) + sum(map(len, finals.values()))
    assert "[greedy-factor-sweep" not in captured.out


def test_theory_help_imports_no_scipy_stats():
    code = ("import sys\nfrom refimpl.cli import main\n"
            "try:\n    main(['theory', '--help'])\nexcept SystemExit as exc:\n"
            "    assert exc.code == 0, exc.code\n"
            "print('scipy.stats' in sys.modules, 'refimpl.theory.montecarlo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert "usage: refimpl theory" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "False False"
