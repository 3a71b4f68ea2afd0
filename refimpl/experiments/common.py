"""What every study returns (:class:`StudyResult`) and the small helpers they share.

A study is a function ``run(quick=False, out=None, seed=0) -> StudyResult``. The result
holds named tables (headers + rows, the paper's figures beside ours), the paths of the
figures written, the scale actually run (and the paper's), and the wall time; it prints as
Markdown and saves as JSON, so docs/results.md, the CLI and the tests read the same object.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

__all__ = [
    "StudyResult",
    "Table",
    "Timer",
    "data_source",
    "fmt",
    "machine",
    "new_figure",
    "save_figure",
]


@dataclass
class Table:
    """One result table: a title, column headers and rows of plain values."""

    title: str
    headers: list[str]
    rows: list[list[Any]]

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.headers) + " |",
                 "|" + "---|" * len(self.headers)]
        lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in self.rows]
        return "\n".join(lines)

    def column(self, header: str) -> list[Any]:
        """The values of one column, by header."""
        index = self.headers.index(header)
        return [row[index] for row in self.rows]

    def row(self, first: Any) -> dict[str, Any]:
        """The row whose first cell is ``first``, as a header -> value dict."""
        for row in self.rows:
            if row[0] == first:
                return dict(zip(self.headers, row))
        raise KeyError(f"no row starts with {first!r} in table {self.title!r}")


@dataclass
class StudyResult:
    """Tables, figures, scale and timing of one study run."""

    name: str
    quick: bool
    tables: list[Table] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    scale: str = ""
    paper_scale: str = ""
    notes: list[str] = field(default_factory=list)
    wall_time: float = 0.0
    machine: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    #: where the numbers come from: :meth:`RunRecords.summary` of the study's record file
    records: dict[str, Any] | None = None

    def table(self, title_start: str) -> Table:
        """The first table whose title starts with ``title_start``."""
        for table in self.tables:
            if table.title.startswith(title_start):
                return table
        raise KeyError(f"no table titled {title_start!r}... in study {self.name!r}")

    def markdown(self) -> str:
        parts = [f"### {self.name}{' (--quick)' if self.quick else ''}", "",
                 f"Scale run: {self.scale}", "", f"Paper's scale: {self.paper_scale}", "",
                 f"Wall time: {self.wall_time:.1f} s on {self.machine}", ""]
        for table in self.tables:
            parts += [table.markdown(), ""]
        parts += [f"- {note}" for note in self.notes]
        parts += [f"- figure: {path}" for path in self.figures]
        return "\n".join(parts)

    def page_block(self) -> str:
        """The part of docs/results.md that ``refimpl reproduce NAME --report --page`` writes:
        where the numbers come from, the tables and the notes (the prose around it is the
        page's own)."""
        parts = [f"Scale: {self.scale}", "", f"Paper's scale: {self.paper_scale}", ""]
        if self.records is not None:
            rec = self.records
            when = f", {rec['first']} to {rec['last']}" if rec["finished"] else ""
            parts += [f"Runs: {rec['finished']} of {rec['asked']} finished (`{rec['file']}`"
                      f"{when}), {rec['wall_s'] / 60:.1f} minutes of training"
                      + "".join(f"; {m}" for m in rec["machines"]) + ".", ""]
        for table in self.tables:
            parts += [table.markdown(), ""]
        parts += [f"- {note}" for note in self.notes]
        return "\n".join(parts).rstrip() + "\n"

    def to_json(self) -> str:
        payload = {k: v for k, v in vars(self).items() if k != "tables"}
        payload["tables"] = [vars(t) for t in self.tables]
        return json.dumps(payload, indent=1, default=_plain)

    def save(self, out: str | os.PathLike) -> Path:
        """Write ``NAME[-quick].json`` into ``out``; return its path."""
        path = Path(out) / f"{self.name}{'-quick' if self.quick else ''}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def fmt(value: Any) -> str:
    """A table cell: floats to 4 significant digits, everything else as ``str``."""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def data_source(quick: bool) -> str:
    """Where a study's Fashion-MNIST images come from: the embedded sample for ``--quick``
    (so the quick figures that tests assert are the same on every machine), the full IDX
    files otherwise (an error naming the searched places when they are absent)."""
    return "sample" if quick else "full"


def machine(load: bool = True) -> str:
    """One line naming the CPU count, load (unless ``load=False``) and versions (benchmarks
    must say where)."""
    import numba

    now = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    threads = os.environ.get("NUMBA_NUM_THREADS", "default")
    return (f"{platform.machine()} {os.cpu_count()} cores"
            + (f" (load {now:.1f} at start, shared)" if load else "")
            + f", Python {platform.python_version()}, NumPy {np.__version__}, "
              f"Numba {numba.__version__}, NUMBA_NUM_THREADS={threads}")


class Timer:
    """``with Timer() as t: ...``; then ``t.seconds``."""

    def __enter__(self) -> Self:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def new_figure(n_axes: int = 1, width: float = 5.0, height: float = 3.6):
    """A Matplotlib figure with ``n_axes`` side-by-side axes on the Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_axes, height))
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, n_axes, i + 1) for i in range(n_axes)]
    return fig, axes


def save_figure(fig, out: str | os.PathLike | None, name: str,
                figures: list[str]) -> None:
    """Save ``fig`` as ``out/name.png`` (when ``out`` is given) and record the path."""
    if out is None:
        return
    path = Path(out) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    figures.append(str(path))


def median(values: Sequence[float]) -> float:
    """Median ignoring NaN (a diverged run is recorded as inf, which sorts last)."""
    return float(np.nanmedian(np.asarray(values, dtype=np.float64)))
