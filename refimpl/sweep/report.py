"""``refimpl sweep report RESULTS.jsonl``: a table and plots from a results file.

Runs are grouped by the config keys that vary across the file, except ``seed`` (seeds are
repeats); each group shows the mean and standard deviation over its seeds of the final
metrics. Only the latest record of each run id counts (a failed run later retried).
Outputs: the Markdown table on stdout and in ``report.md``; ``curves.png`` (the chosen
metric per epoch, mean over seeds, best groups first) and ``<metric>_vs_<key>.png`` for each
numeric varying key, in the report directory.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from refimpl.safety import resolve_inside

from .results import latest_by_id, read_records

METRICS = ("val_loss", "val_acc", "train_loss", "train_acc", "best_val_loss", "best_val_acc")
REPEAT_KEYS = ("seed",)
MAX_CURVES = 10


def build_table(records: list[dict],
                metric: str | None = None) -> tuple[list[str], list[list], str]:
    """Group the successful runs and aggregate; returns ``(header, rows, metric)``.

    ``metric`` defaults to ``val_loss`` when any run has it, else ``train_loss``. Rows are
    sorted best first (lowest loss, highest accuracy); the leading cells are the group's
    labels, one per column of :func:`varying_columns`.
    """
    ok = [r for r in records if r.get("status") == "ok"]
    metric = metric or _default_metric(ok)
    columns = varying_columns(ok)
    groups: dict[tuple, list[dict]] = {}
    for record in ok:
        groups.setdefault(group_key(record, columns), []).append(record)
    header = [*columns, "runs", f"{metric} mean", f"{metric} std", "wall s mean"]
    table = []
    for key, members in groups.items():
        values = [v for m in members if _is_real(v := (m.get("summary") or {}).get(metric))]
        walls = [w for m in members if _is_real(w := m.get("wall_time"))]
        table.append([*key, len(members), _mean(values), _std(values), _mean(walls)])
    sign = -1 if metric.endswith("acc") else 1
    table.sort(key=lambda row: (math.isnan(row[-3]),
                                0 if math.isnan(row[-3]) else sign * row[-3]))
    return header, table, metric


def varying_columns(records: list[dict]) -> list[str]:
    """The config entries that differ between runs, as table columns (seed excluded).

    A component table whose ``name`` (or model ``spec``) varies is one column labelled by
    the whole table (``greedy(factor=0.9)``); otherwise each varying entry is its own
    column (``optimizer.lr``).
    """
    configs = [r.get("config") or {} for r in records]
    columns = []
    for key in sorted({k for c in configs for k in c}):
        if key in REPEAT_KEYS or len({_text(c.get(key)) for c in configs}) < 2:
            continue
        tables = [c.get(key) for c in configs]
        if all(isinstance(t, dict) for t in tables) and not any(
                len({_text(t.get(n)) for t in tables}) > 1 for n in ("name", "spec")):
            subkeys = sorted({k for t in tables for k in t})
            columns += [f"{key}.{k}" for k in subkeys
                        if len({_text(t.get(k)) for t in tables}) > 1]
        else:
            columns.append(key)
    return columns


def column_value(record: dict, column: str):
    """The config value of ``record`` in ``column`` (``"optimizer.lr"``, ``"scheduler"``)."""
    key, _, sub = column.partition(".")
    value = (record.get("config") or {}).get(key)
    return value.get(sub) if sub and isinstance(value, dict) else value


def group_key(record: dict, columns: list[str]) -> tuple[str, ...]:
    """The labels of ``record`` in each column."""
    return tuple(_label(column_value(record, column)) for column in columns)


def _label(value) -> str:
    if isinstance(value, dict):
        head = value.get("name", value.get("spec", ""))
        rest = ", ".join(f"{k}={_text(v)}" for k, v in sorted(value.items())
                         if k not in ("name", "spec"))
        return f"{head}({rest})" if rest else str(head)
    return _text(value)


def markdown(header: list[str], table: list[list]) -> str:
    """A GitHub-style Markdown table; floats with 4 significant digits."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def failures(records: list[dict]) -> list[str]:
    """One line per failed run: id and the error message's first line."""
    return [f"{r['id']}: {str(r.get('error', '?')).splitlines()[0] if r.get('error') else '?'}"
            for r in records if r.get("status") != "ok"]


def plot_curves(records: list[dict], metric: str, table_order: list[tuple], columns: list[str],
                path: Path) -> None:
    """``metric`` per epoch, mean over seeds, one line per group (the best ``MAX_CURVES``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = metric.removeprefix("best_")
    groups: dict[tuple, list[list]] = {}
    for record in records:
        if record.get("status") != "ok":
            continue
        values = (record.get("summary") or {}).get("curves", {}).get(curve) or []
        groups.setdefault(group_key(record, columns), []).append(values)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key in table_order[:MAX_CURVES]:
        series = groups.get(key, [])
        length = min((len(s) for s in series), default=0)
        if length == 0:
            continue
        mean = [_mean([s[i] for s in series if isinstance(s[i], (int, float))])
                for i in range(length)]
        label = ", ".join(f"{k}={v}" for k, v in zip(columns, key))
        ax.plot(range(1, length + 1), mean, marker="o", label=label or "all runs")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{curve} (mean over seeds)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_against(records: list[dict], metric: str, column: str, path: Path) -> bool:
    """Scatter ``metric`` against a numeric config ``column``; log x when it spans > 2 decades.

    Returns False (and draws nothing) when the column has fewer than two numeric values.
    """
    points = []
    for record in records:
        x = column_value(record, column)
        y = (record.get("summary") or {}).get(metric)
        if _is_real(x) and _is_real(y):
            points.append((x, y))
    if len({x for x, _ in points}) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter([x for x, _ in points], [y for _, y in points], s=14)
    xs = [x for x, _ in points]
    if min(xs) > 0 and max(xs) / min(xs) > 100:
        ax.set_xscale("log")
    ax.set_xlabel(column)
    ax.set_ylabel(metric)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv: Sequence[str]) -> int:
    """``refimpl sweep report RESULTS.jsonl [--out DIR] [--metric NAME] [--no-plots]``."""
    parser = argparse.ArgumentParser(prog="refimpl sweep report",
                                     description="Table and plots from a sweep results file.")
    parser.add_argument("results", help="the results file (JSON lines)")
    parser.add_argument("--out", metavar="DIR",
                        help="where report.md and the plots go (default: beside the results, "
                             "in report/)")
    parser.add_argument("--metric", choices=METRICS,
                        help="the metric to rank by (default val_loss, else train_loss)")
    parser.add_argument("--no-plots", action="store_true", help="write the table only")
    args = parser.parse_args(argv)
    path = Path(args.results)
    if not path.is_file():
        print(f"refimpl sweep report: error: {path} does not exist; give the results file of a "
              "sweep (runs/<name>/results.jsonl)", file=sys.stderr)
        return 2
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always")
        records = list(latest_by_id(read_records(path)).values())
    if not records:
        print(f"refimpl sweep report: error: {path} holds no result records"
              f"{_what_it_holds(path, len(skipped) > 0)} (give the results file of a sweep, "
              "JSON lines: usually runs/<name>/results.jsonl)", file=sys.stderr)
        return 2
    for warning in skipped:  # a line cut short in a real results file: say so, go on
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)
    header, table, metric = build_table(records, args.metric)
    text = [f"# Sweep report: {path}", "",
            (f"{len(records)} runs, {sum(r.get('status') == 'ok' for r in records)} ok; "
             f"ranked by final {metric} (mean over seeds)."), "", markdown(header, table)]
    failed = failures(records)
    if failed:
        text += ["", f"## Failed runs ({len(failed)})", "", *[f"- {line}" for line in failed]]
    report = "\n".join(text) + "\n"
    print(report)
    out_dir = Path(args.out) if args.out else path.parent / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    resolve_inside(out_dir, "report.md", "report").write_text(report, encoding="utf-8")
    if not args.no_plots and table:
        ok = [r for r in records if r.get("status") == "ok"]
        columns = varying_columns(ok)
        order = [tuple(row[: len(columns)]) for row in table]
        plot_curves(ok, metric, order, columns, resolve_inside(out_dir, "curves.png", "report"))
        for column in columns:
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", column)
            plot_against(ok, metric, column, resolve_inside(out_dir, f"{metric}_vs_{name}.png",
                                                            "report"))
    print(f"report written to {out_dir}", file=sys.stderr)
    return 0


def _what_it_holds(path: Path, unreadable: bool) -> str:
    """What a file without records holds instead, for the error message."""
    if path.suffix.lower() == ".toml":
        return ": it is a sweep config, not its results"
    if not unreadable:
        return ": it is empty, as before any run of a sweep has finished"
    return ": none of its lines is a result record"


def _default_metric(records: list[dict]) -> str:
    has_val = any(_is_real((r.get("summary") or {}).get("val_loss")) for r in records)
    return "val_loss" if has_val else "train_loss"


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else math.nan


def _cell(value) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value)
