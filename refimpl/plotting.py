"""Plots of training runs: loss and learning-rate curves of several :class:`History` objects.

Uses Matplotlib's object API with the Agg canvas (no pyplot, no global backend switch), so
it works headless and does not disturb a notebook's own settings.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from refimpl.checkpoint import atomic_write_bytes

__all__ = ["moving_average", "plot_histories"]


def moving_average(values, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values, ignoring NaN (skipped batches).

    ``out[t] = nanmean(values[max(0, t - window + 1) : t + 1])``.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    x = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(x)
    sums = np.concatenate([[0.0], np.cumsum(np.where(ok, x, 0.0))])
    counts = np.concatenate([[0], np.cumsum(ok)])
    t = np.arange(1, len(x) + 1)
    lo = np.maximum(0, t - window)
    n = counts[t] - counts[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[t] - sums[lo]) / np.maximum(n, 1), np.nan)


def plot_histories(histories: Mapping[str, object], path: str | os.PathLike,
                   title: str | None = None, window: int = 10, dpi: int = 110) -> Path:
    """Save a PNG with three panels, one line per run: the per-step training loss (moving
    average over ``window`` steps, raw values faint), the per-step learning rate (log scale)
    and the per-epoch validation accuracy. The file is written atomically.

    ``histories`` maps a label to a :class:`refimpl.train.History` (or anything with list
    attributes ``loss``, ``lr`` and ``val_acc``). Returns the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not histories:
        raise ValueError("histories is empty; pass at least one {label: History}")
    fig = Figure(figsize=(13, 3.8))
    FigureCanvasAgg(fig)
    ax_loss, ax_lr, ax_acc = fig.subplots(1, 3)
    for index, (label, h) in enumerate(histories.items()):
        color = f"C{index % 10}"
        steps = np.arange(1, len(h.loss) + 1)
        ax_loss.plot(steps, h.loss, color=color, alpha=0.2, linewidth=0.6)
        ax_loss.plot(steps, moving_average(h.loss, window), color=color, label=label)
        ax_lr.plot(steps, h.lr, color=color, label=label)
        epochs = np.arange(1, len(h.val_acc) + 1)
        ax_acc.plot(epochs, h.val_acc, "o-", color=color, label=label)
    ax_loss.set(xlabel="step", ylabel="training loss", title=f"loss (mean of {window} steps)")
    ax_lr.set(xlabel="step", ylabel="learning rate", title="learning rate", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_loss, ax_lr, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
