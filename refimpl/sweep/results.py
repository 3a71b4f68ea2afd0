"""The results file: append-only JSON lines, one record per finished run, written by one process.

Each line is one JSON object (strict JSON: non-finite numbers are stored as ``null``)::

    {"id": "3f0c...", "sweep": "demo", "status": "ok", "config": {...}, "summary": {...},
     "wall_time": 0.41, "backend": "numpy", "host": "...", "worker": "tcp://...",
     "versions": {...}, "finished_at": "2026-11-23T13:05:12Z"}

Failed runs have ``status = "failed"`` with ``error`` and ``traceback`` instead of ``summary``.

Durability: a record is one ``write`` of one line to a file opened with ``O_APPEND``: once
``append`` returns, the record survives the client process dying (the kernel holds it). The
file is ``fsync``-ed at most every ``fsync_interval`` seconds and on close, so a power loss
or kernel crash can lose at most the last interval's records -- which a re-run simply
redoes -- while the client does not stall ~ms per record on the disk. A crash can at worst
leave a truncated *last* line, which readers skip (and the next writer starts on a fresh
line). An exclusive ``flock`` on the results file itself keeps two sweeps from writing it
at once; it ends when the writer closes the file (or its process dies) and leaves no lock
file behind. No pickle anywhere.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
import warnings
from pathlib import Path

from refimpl.safety import json_safe


class ResultsLockedError(RuntimeError):
    """Another sweep process holds the results file."""


def read_records(path: str | os.PathLike) -> list[dict]:
    """All complete records of a results file, in file order (missing file: ``[]``).

    Lines that are not a JSON object with an ``id`` (a line cut short by a crash, or
    garbage) are skipped with a ``RuntimeWarning`` naming the line number.
    """
    path = Path(path)
    if not path.exists():
        return []
    records, bad = [], []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                record = None
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                records.append(record)
            else:
                bad.append(number)
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} unreadable line(s) {bad[:5]} (a write cut "
                      "short by a crash leaves one; the run will be redone)", RuntimeWarning,
                      stacklevel=2)
    return records


def latest_by_id(records: list[dict]) -> dict[str, dict]:
    """The last record of each run id (a failed run retried later is superseded)."""
    return {record["id"]: record for record in records}


def finished_ids(records: list[dict], retry_failed: bool = False) -> set[str]:
    """Ids a sweep should not run again: every recorded run, or only successes."""
    return {r["id"] for r in records if not retry_failed or r.get("status") == "ok"}


class ResultsWriter:
    """Append records to a results file; the only writer while it is open (``with`` block)."""

    def __init__(self, path: str | os.PathLike, fsync_interval: float = 1.0):
        self.path = Path(path)
        self.fsync_interval = fsync_interval
        self._fd: int | None = None
        self._synced_at = time.monotonic()

    def __enter__(self) -> ResultsWriter:  # noqa: PYI034 - py3.10 has no typing.Self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(self._fd)
            self._fd = None
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ResultsLockedError(f"{self.path} is being written by another sweep; "
                                         "wait for it or choose another --out") from None
            raise
        self._needs_newline = self._ends_mid_line()
        return self

    def _ends_mid_line(self) -> bool:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return False
        with self.path.open("rb") as handle:
            handle.seek(size - 1)
            return handle.read(1) != b"\n"

    def append(self, record: dict) -> None:
        """Write ``record`` as one line (``fsync`` when ``fsync_interval`` has passed)."""
        if self._fd is None:
            raise RuntimeError("ResultsWriter.append outside its 'with' block")
        line = json.dumps(json_safe(record), sort_keys=True, allow_nan=False,
                          separators=(",", ":")) + "\n"
        data = line.encode("utf-8")
        if self._needs_newline:  # a previous crash cut the last line short
            data = b"\n" + data
            self._needs_newline = False
        written = os.write(self._fd, data)
        while written < len(data):  # os.write may be partial for huge records
            written += os.write(self._fd, data[written:])
        if time.monotonic() - self._synced_at >= self.fsync_interval:
            self.sync()

    def sync(self) -> None:
        """Flush the file to the disk now."""
        if self._fd is not None:
            os.fsync(self._fd)
            self._synced_at = time.monotonic()

    def __exit__(self, *exc) -> None:
        self.sync()
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None
