"""Resumable studies: one JSON line per finished run, skipped when the study runs again.

A long study (``refimpl reproduce NAME --out DIR``) appends every finished run to
``DIR/NAME-runs.jsonl`` as ``{"key": ..., "record": ...}``; run again with the same ``--out``
it reads the file and trains only the runs not yet in it, so a stopped study continues
where it stopped. The key is the run's settings as canonical JSON (sorted keys), so a
changed setting is a new run. Without ``out`` (the tests) records live in memory only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from refimpl.safety import json_safe

__all__ = ["RunRecords"]


class RunRecords:
    """The finished runs of one study, backed by an append-only JSONL file (or memory).

    Parameters
    ----------
    out : path or None
        The study's output directory; ``None`` keeps the records in memory.
    name : str
        The study's name (the file is ``out/NAME-runs.jsonl``).
    """

    def __init__(self, out: str | os.PathLike | None, name: str):
        self.path = None if out is None else Path(out) / f"{name}-runs.jsonl"
        self._done: dict[str, Any] = {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a killed run: redo that run
                    continue
                self._done[entry["key"]] = entry["record"]

    @staticmethod
    def key(settings: dict) -> str:
        """The canonical JSON of a run's settings."""
        return json.dumps(json_safe(settings), sort_keys=True, separators=(",", ":"))

    def get_or_run(self, settings: dict, run: Callable[[], dict]) -> dict:
        """The stored record of ``settings``, or ``run()``'s, appended to the file first."""
        key = self.key(settings)
        if key not in self._done:
            record = json_safe(run())
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a") as handle:
                    handle.write(json.dumps({"key": key, "record": record}) + "\n")
            self._done[key] = record
        return self._done[key]
