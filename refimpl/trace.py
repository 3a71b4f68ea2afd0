"""Record a training loop's learning rates and signals to ``.npz``, and read them back.

Drop a :class:`TraceRecorder` into *your* loop (any framework), save, and replay the file
through a refimpl scheduler with ``refimpl crosscheck replay TRACE.npz --scheduler NAME``.
One *row* is one call of your scheduler's ``step``; row 0 holds the rates after
construction::

    recorder = TraceRecorder(optimizer)         # or TraceRecorder(lrs=[0.1, 0.05])
    for epoch in range(epochs):
        for x, y in batches:
            loss = train_step(x, y)
            recorder.batch_loss(loss)           # DLRS: the epoch's batch losses
            scheduler.step(loss)                # a step-interval, loss-driven scheduler
            recorder.step(loss=loss)            # rates read from optimizer.param_groups
        # or, for an epoch-interval scheduler: scheduler.step(...); recorder.step()
    recorder.save("trace.npz")

A row may carry a loss, the batch losses gathered since the previous row, and a list of
parameter (or gradient) arrays. The file holds only numeric arrays, so it loads with
``np.load(path, allow_pickle=False)``.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Trace", "TraceRecorder", "load_trace"]

FORMAT_VERSION = 1
_ARRAY_KINDS = ("params", "grads")


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.array(value, dtype=np.float64)


def _to_float(value: Any) -> float:
    if hasattr(value, "item"):
        value = value.item()
    return float(value)


class TraceRecorder:
    """Collect one row per scheduler step: the rates, and what the scheduler was fed.

    Parameters
    ----------
    source : object, optional
        Where the rates are read: anything with ``param_groups`` (a torch optimizer), or
        with ``.optimizer.param_groups`` (a torch scheduler). Row 0 is read at once.
    lrs : float or list of float, optional
        Row 0 given directly (instead of ``source``); later rows then pass ``lrs=``.
    batches_per_epoch : int, optional
        Stored with the trace; NewtonLR's replay takes its ``K`` from it.
    """

    def __init__(self, source: Any = None, *, lrs: float | Sequence[float] | None = None,
                 batches_per_epoch: int | None = None):
        if (source is None) == (lrs is None):
            raise ValueError("give the optimizer (or scheduler) to read rates from, or lrs=")
        self.source = source
        self.batches_per_epoch = batches_per_epoch
        self.rows: list[list[float]] = [self._read(lrs)]
        self.losses: list[float] = []
        self.batch_losses: list[list[float]] = []
        self.arrays: dict[str, list[list[np.ndarray]]] = {kind: [] for kind in _ARRAY_KINDS}
        self._pending: list[float] = []

    def _read(self, lrs: Any) -> list[float]:
        if lrs is not None:
            values = lrs if isinstance(lrs, (list, tuple)) else [lrs]
            return [_to_float(v) for v in values]
        if self.source is None:
            raise ValueError("this recorder has no optimizer to read from: pass lrs=")
        groups = getattr(self.source, "param_groups", None)
        if groups is None:
            groups = getattr(getattr(self.source, "optimizer", None), "param_groups", None)
        if groups is None:
            raise TypeError(f"cannot read rates from a {type(self.source).__name__}: "
                            "give a torch optimizer or scheduler, or pass lrs=")
        return [_to_float(group["lr"]) for group in groups]

    def batch_loss(self, loss: Any) -> None:
        """Add one batch loss to the current epoch (stored with the next :meth:`step`)."""
        self._pending.append(_to_float(loss))

    def step(self, *, loss: Any = None, lrs: Any = None, params: Sequence[Any] | None = None,
             grads: Sequence[Any] | None = None) -> None:
        """Close one row: the rates now (read, or ``lrs``), and the signals of this step.

        The batch losses gathered since the previous row go with this row. ``params`` /
        ``grads`` are copied (float64), so later in-place updates do not change them.
        """
        self.rows.append(self._read(lrs))
        if len(self.rows[-1]) != len(self.rows[0]):
            raise ValueError(f"row {len(self.rows) - 1} has {len(self.rows[-1])} rates, row 0 "
                             f"had {len(self.rows[0])}; keep the same parameter groups")
        self.losses.append(math.nan if loss is None else _to_float(loss))
        self.batch_losses.append(self._pending)
        self._pending = []
        for kind, arrays in (("params", params), ("grads", grads)):
            self.arrays[kind].append([] if arrays is None else [_to_numpy(a) for a in arrays])

    def save(self, path: str | Path) -> Path:
        """Write the trace to ``path`` (``.npz``); return the path written."""
        path = Path(path)
        data: dict[str, np.ndarray] = {
            "format_version": np.array(FORMAT_VERSION),
            "lrs": np.array(self.rows, dtype=np.float64),
            "losses": np.array(self.losses, dtype=np.float64),
            "batch_losses": np.array([v for row in self.batch_losses for v in row],
                                     dtype=np.float64),
            "batch_counts": np.array([len(row) for row in self.batch_losses], dtype=np.int64),
            "batches_per_epoch": np.array(-1 if self.batches_per_epoch is None
                                          else int(self.batches_per_epoch)),
        }
        for kind in _ARRAY_KINDS:
            data.update(_pack_arrays(kind, self.arrays[kind]))
        with path.open("wb") as handle:
            np.savez(handle, **data)
        return path


def _pack_arrays(kind: str, rows: list[list[np.ndarray]]) -> dict[str, np.ndarray]:
    """Per row, the arrays flattened and joined; their shapes kept once (from the first
    row that has any), since a training loop passes the same list every step."""
    filled = [row for row in rows if row]
    if not filled:
        return {}
    shapes = [a.shape for a in filled[0]]
    for i, row in enumerate(rows):
        if row and [a.shape for a in row] != shapes:
            raise ValueError(f"{kind} of row {i + 1} have shapes {[a.shape for a in row]}, "
                             f"earlier rows {shapes}; pass the same list every step")
    size = sum(int(np.prod(s)) for s in shapes)
    flat = np.full((len(rows), size), np.nan)
    present = np.array([bool(row) for row in rows])
    for i, row in enumerate(rows):
        if row:
            flat[i] = np.concatenate([a.ravel() for a in row])
    ndims = np.array([len(s) for s in shapes], dtype=np.int64)
    dims = np.array([d for s in shapes for d in s], dtype=np.int64)
    return {f"{kind}": flat, f"{kind}_present": present, f"{kind}_ndims": ndims,
            f"{kind}_dims": dims}


@dataclass(frozen=True)
class Trace:
    """A recorded trace: ``lrs`` has one row per step (row 0 = after construction)."""

    lrs: np.ndarray
    losses: np.ndarray
    batch_losses: list[list[float]]
    arrays: dict[str, list[list[np.ndarray] | None]]
    batches_per_epoch: int | None

    @property
    def steps(self) -> int:
        """Number of scheduler steps recorded (rows after row 0)."""
        return len(self.lrs) - 1

    def signals(self, kind: str) -> list[Any] | None:
        """The signal of every step for a scheduler whose ``signal`` is ``kind``.

        ``"none"`` gives ``None`` (use ``steps``); ``"loss"``, ``"batch_losses"``,
        ``"params"`` and ``"grads"`` give one entry per step. Raises ``ValueError`` when
        the trace lacks what the scheduler needs.
        """
        if kind == "none":
            return None
        if kind == "loss":
            if self.steps and np.isnan(self.losses).any():
                missing = int(np.flatnonzero(np.isnan(self.losses))[0]) + 1
                raise ValueError(f"the trace has no loss at step {missing}; record "
                                 "recorder.step(loss=...) every step, or pass --losses FILE")
            return [float(v) for v in self.losses]
        if kind == "batch_losses":
            empty = [i + 1 for i, row in enumerate(self.batch_losses) if not row]
            if empty:
                raise ValueError(f"the trace has no batch losses at step {empty[0]}; call "
                                 "recorder.batch_loss(loss) after every batch")
            return [list(row) for row in self.batch_losses]
        if kind in _ARRAY_KINDS:
            rows = self.arrays.get(kind) or [None] * self.steps
            missing = [i + 1 for i, row in enumerate(rows) if row is None]
            if missing:
                raise ValueError(f"the trace has no {kind} at step {missing[0]}; pass "
                                 f"recorder.step({kind}=[...]) every step")
            return rows
        raise ValueError(f"unknown signal kind {kind!r}")


#: How a zip archive (an ``.npz``) begins: a local file header, or an empty archive's end.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"
_RECORD_ONE = "record one with refimpl.trace.TraceRecorder"


def _not_a_trace(path: Path, what: str) -> ValueError:
    """The error for a file that exists but holds no trace: what it is instead, and the fix."""
    return ValueError(f"{path} is not a trace file: {what} ({_RECORD_ONE})")


def _what_it_is(head: bytes) -> str:
    """Describe a file that is not a zip archive from its first bytes."""
    if not head:
        return "an empty file"
    if head.startswith(_NPY_MAGIC):
        return "a single .npy array, not the .npz archive TraceRecorder.save writes"
    if b"\0" not in head:
        try:  # the head may end inside a multi-byte character
            head.decode("utf-8", errors="strict")
            return "a text file, not a zip archive"
        except UnicodeDecodeError as error:
            if error.start >= len(head) - 3:
                return "a text file, not a zip archive"
    return "not a zip archive"


def load_trace(path: str | Path) -> Trace:
    """Read a trace written by :meth:`TraceRecorder.save` (no pickle is loaded).

    Raises ``ValueError`` with one line naming the file when it is missing, is not an
    ``.npz`` archive (a text file, an empty or truncated file), or lacks the arrays of a
    trace.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except FileNotFoundError:
        raise ValueError(f"trace file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a directory; give the trace's .npz file "
                         f"({_RECORD_ONE})") from None
    except OSError as error:
        raise ValueError(f"cannot read the trace file {path} ({error.strerror})") from None
    if head and any(magic.startswith(head) for magic in _ZIP_MAGIC):
        raise _not_a_trace(path, "truncated: only the first bytes of a zip archive")
    if not head.startswith(_ZIP_MAGIC):
        raise _not_a_trace(path, _what_it_is(head))
    try:
        with np.load(path, allow_pickle=False) as data:
            files = {key: data[key] for key in data.files}
    except (ValueError, OSError, EOFError, NotImplementedError, zipfile.BadZipFile,
            zlib.error) as error:
        if isinstance(error, ValueError) and "pickle" in str(error):
            raise _not_a_trace(path, "it holds object arrays, which only pickle reads") from None
        # a zip cut short has lost its table of contents: zipfile says "not a zip file"
        text = " ".join(str(error).split())
        detail = "" if not text or "not a zip file" in text else f": {text}"
        raise _not_a_trace(path, f"truncated, or a damaged zip archive{detail}") from None
    for key in ("lrs", "losses", "batch_losses", "batch_counts"):
        if key not in files:
            raise _not_a_trace(path, f"a .npz archive without the {key!r} array of a trace")
    try:
        trace = _trace_of(files)
        rows, losses = len(trace.lrs), len(trace.losses)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as error:
        raise _not_a_trace(path, f"its arrays do not form a trace ({type(error).__name__}: "
                                 f"{error})") from None
    if not losses == len(trace.batch_losses) == rows - 1:
        raise _not_a_trace(path, f"inconsistent arrays: {rows} rate rows but {losses} losses "
                                 "(a trace has one rate row more than losses)")
    return trace


def _trace_of(files: dict[str, np.ndarray]) -> Trace:
    """Assemble a :class:`Trace` from the arrays of a trace file (not yet checked)."""
    lrs = np.atleast_2d(files["lrs"].astype(np.float64))
    counts = files["batch_counts"].astype(np.int64)
    ends = np.cumsum(counts)
    batch = [files["batch_losses"][e - c:e].tolist() for c, e in zip(counts, ends)]
    arrays = {kind: _unpack_arrays(files, kind) for kind in _ARRAY_KINDS if kind in files}
    bpe = int(files.get("batches_per_epoch", np.array(-1)))
    return Trace(lrs, files["losses"].astype(np.float64), batch, arrays,
                 None if bpe < 0 else bpe)


def _unpack_arrays(files: dict, kind: str) -> list[list[np.ndarray] | None]:
    ndims, dims = files[f"{kind}_ndims"], files[f"{kind}_dims"]
    shapes, start = [], 0
    for n in ndims:
        shapes.append(tuple(int(d) for d in dims[start:start + n]))
        start += n
    rows: list[list[np.ndarray] | None] = []
    for flat, present in zip(files[kind], files[f"{kind}_present"]):
        if not present:
            rows.append(None)
            continue
        arrays, offset = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            arrays.append(flat[offset:offset + size].reshape(shape))
            offset += size
        rows.append(arrays)
    return rows
