"""Resumable studies: one JSON line per finished run, skipped when the study runs again.

A long study (``refimpl reproduce NAME --out DIR``) appends every finished run to
``DIR/NAME-runs.jsonl`` as ``{"key": ..., "record": ...}``; run again with the same ``--out``
it reads the file and trains only the runs not yet in it, so a stopped study continues
where it stopped. The key is the run's settings as canonical JSON (sorted keys), so a
changed setting is a new run. Without ``out`` (the tests) records live in memory only.

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
from typing import Any

from refimpl.safety import json_safe

__all__ = ["RunRecords", "progress"]


def progress(study: str, text: str) -> None:
    """One progress line ``[study] text`` on stderr (stdout keeps the tables)."""
    print(f"[{study}] {text}", file=sys.stderr, flush=True)


class RunRecords:
    """The finished runs of one study, backed by an append-only JSONL file (or memory).

    Parameters
    ----------
    out : path or None
        The study's output directory; ``None`` keeps the records in memory.
    name : str
        The study's name (the file is ``out/NAME-runs.jsonl``).
    total : int, optional
        How many runs the study asks for, shown in the progress lines (``run 3/24``).
    """

    def __init__(self, out: str | os.PathLike | None, name: str, total: int | None = None):
        self.path = None if out is None else Path(out) / f"{name}-runs.jsonl"
        self.name, self.total = name, total
        self._asked = 0  # get_or_run calls so far: the run's number in the progress lines
        self._done: dict[str, Any] = {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a killed run: redo that run
                    continue
                self._done[entry["key"]] = entry["record"]
        if self._done:
            progress(name, f"{len(self._done)} finished runs read from {self.path}; they are "
                           "not trained again")

    @staticmethod
    def key(settings: dict) -> str:
        """The canonical JSON of a run's settings."""
        return json.dumps(json_safe(settings), sort_keys=True, separators=(",", ":"))

    def get_or_run(self, settings: dict, run: Callable[[], dict]) -> dict:
        """The stored record of ``settings``, or ``run()``'s, appended to the file first."""
        key = self.key(settings)
        self._asked += 1
        if key not in self._done:
            started = time.perf_counter()
            record = json_safe(run())
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a") as handle:
                    handle.write(json.dumps({"key": key, "record": record}) + "\n")
            self._done[key] = record
            number = f"{self._asked}/{self.total}" if self.total else str(self._asked)
            progress(self.name, f"run {number} done in {time.perf_counter() - started:.1f} s: "
                                f"{_brief(settings)}")
        return self._done[key]


def _brief(settings: dict, width: int = 100) -> str:
    """The settings that are single values, as ``key=value`` items, cut at ``width``."""
    text = ", ".join(f"{key}={value}" for key, value in settings.items()
                     if isinstance(value, (str, int, float)) and key != "study")
    return text if len(text) <= width else text[:width - 3] + "..."
