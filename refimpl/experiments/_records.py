"""Resumable studies: one JSON line per finished run, skipped when the study runs again.

A study's full-size runs are appended to ``results/NAME.jsonl`` (``refimpl reproduce NAME
--results DIR`` names another directory; ``--quick`` runs go to ``OUT/NAME-quick.jsonl``),
one line per finished run::

    {"key": ..., "settings": {...}, "record": {...}, "machine": "...", "wall_s": 41.2,
     "finished": "2026-12-05T09:40:11Z"}

The key is the run's settings as canonical JSON (sorted keys), so a changed setting is a new
run. Run again, a study reads the file and trains only the runs not yet in it, so a stopped
study continues where it stopped, and the file can be committed as runs land, so a long
study accumulates over several sessions. Without a directory (the tests) records live in
memory only.

``refimpl reproduce NAME --report`` trains nothing: :meth:`RunRecords.get_or_run` then
returns ``None`` for a run not yet in the file, and the study builds its tables from the
runs that have finished, stating ``n`` per cell (:func:`cell`).

A study talks while it works: each run it trains prints one line on stderr when it
finishes (``[NAME] run 3/24 done in 4.2 s: opt=adam, net=mlp, ...``), and runs read back
from the file are announced once (:func:`progress`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from refimpl.safety import json_safe

__all__ = ["RunRecords", "cell", "progress", "records_for"]


def progress(study: str, text: str) -> None:
    """One progress line ``[study] text`` on stderr (stdout keeps the tables)."""
    print(f"[{study}] {text}", file=sys.stderr, flush=True)


class RunRecords:
    """The finished runs of one study, backed by an append-only JSONL file (or memory).

    Parameters
    ----------
    directory : path or None
        Where the file lives (``directory/NAME.jsonl``); ``None`` keeps the records in
        memory.
    name : str
        The record file's name without ``.jsonl``; progress lines are headed by it.
    total : int, optional
        How many runs the study asks for, shown in the progress lines (``run 3/24``).
    report : bool
        Train nothing: :meth:`get_or_run` returns ``None`` for a run not in the file.
    """

    def __init__(self, directory: str | os.PathLike | None, name: str,
                 total: int | None = None, report: bool = False):
        self.path = None if directory is None else Path(directory) / f"{name}.jsonl"
        self.name, self.total, self.report = name, total, report
        self._asked = 0  # get_or_run calls so far: the run's number in the progress lines
        self.missing = 0  # runs asked for in report mode that have not finished
        self._done: dict[str, dict] = {}
        self._keys: set[str] = set()  # the runs asked for (the file may hold others)
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a killed run: redo that run
                    continue
                self._done[entry["key"]] = entry
        if self._done and not report:
            progress(name, f"{len(self._done)} finished runs read from {self.path}; they are "
                           "not trained again")

    @staticmethod
    def key(settings: dict) -> str:
        """The canonical JSON of a run's settings."""
        return json.dumps(json_safe(settings), sort_keys=True, separators=(",", ":"))

    def get_or_run(self, settings: dict, run: Callable[[], dict]) -> dict | None:
        """The stored record of ``settings``, or ``run()``'s, appended to the file first.

        In report mode a run not yet finished is not trained: the answer is ``None``.
        """
        key = self.key(settings)
        self._asked += 1
        self._keys.add(key)
        if key not in self._done:
            if self.report:
                self.missing += 1
                return None
            from refimpl.experiments.common import machine

            started = time.perf_counter()
            record = json_safe(run())
            wall = time.perf_counter() - started
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            entry = {"key": key, "settings": json_safe(settings), "record": record,
                     "machine": machine(load=False), "load": load, "wall_s": round(wall, 3),
                     "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a") as handle:  # one write per line: a kill cuts
                    handle.write(json.dumps(entry) + "\n")  # at most the last line
            self._done[key] = entry
            number = f"{self._asked}/{self.total}" if self.total else str(self._asked)
            progress(self.name, f"run {number} done in {wall:.1f} s: {_brief(settings)}")
        return self._done[key]["record"]

    def summary(self) -> dict:
        """What a report says about its records: the file, how many of the asked runs
        have finished, when, their summed training time, and the machines they ran on."""
        asked = [entry for key, entry in self._done.items() if key in self._keys]
        finished = sorted(entry.get("finished", "") for entry in asked)
        return {"file": None if self.path is None else self.path.as_posix(),
                "finished": len(asked), "asked": self.total,
                "wall_s": float(sum(_wall(entry) for entry in asked)),
                "first": finished[0][:10] if finished else None,
                "last": finished[-1][:10] if finished else None,
                "machines": sorted({entry["machine"] for entry in asked if "machine" in entry})}


def _wall(entry: dict) -> float:
    """A run's training seconds: the line's ``wall_s`` (the sitting that finished it), or the
    record's own ``wall_s`` where that is larger (a run resumed from checkpoints sums its
    sittings there)."""
    record = entry.get("record")
    own = record.get("wall_s") if isinstance(record, dict) else None
    sitting = float(entry.get("wall_s", 0.0))
    return max(sitting, float(own)) if isinstance(own, (int, float)) else sitting


def records_for(name: str, quick: bool, out, results, report: bool = False,
                total: int | None = None) -> RunRecords:
    """The record file of study ``name``: ``results/NAME.jsonl`` for a full run given a
    results directory, ``out/NAME-quick.jsonl`` (or ``out/NAME.jsonl``) otherwise, memory
    when neither is given."""
    if quick:
        return RunRecords(out, f"{name}-quick", total, report)
    return RunRecords(results if results is not None else out, name, total, report)


def cell(values, asked: int, text: str) -> str:
    """A table cell ``text`` over ``len(values)`` finished runs of the ``asked``: the text
    itself when all have finished, ``text (n=k of N)`` while some are still to run, and
    ``not run yet (0 of N)`` when none has."""
    n = len(values)
    if n == 0:
        return f"not run yet (0 of {asked})"
    return text if n == asked else f"{text} (n={n} of {asked})"


def _brief(settings: dict, width: int = 100) -> str:
    """The settings that are single values, as ``key=value`` items, cut at ``width``."""
    text = ", ".join(f"{key}={value}" for key, value in settings.items()
                     if isinstance(value, (str, int, float)) and key != "study")
    return text if len(text) <= width else text[:width - 3] + "..."
