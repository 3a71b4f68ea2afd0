"""``refimpl demo``: one small CNN, the embedded sample, several learning-rate schedules.

Each schedule trains the same model (same seed, same initial weights, same batch order) for
a few epochs on the 2,000 embedded training images, validating on the 500 embedded test
images; then a table is printed and ``demo.png`` (loss and lr curves) and ``demo.json``
(the Histories) are written. About 40 s of CPU time with the numpy backend.

Schedules by name (``none`` is a fixed rate, no scheduler, as ``refimpl train --scheduler
none``; the others are built by :func:`refimpl.registry.make_scheduler` for the run's
length)::

    none      lr fixed
    cosine    CosineAnnealingLR over all steps of the run (interval="step")
    greedy    GreedyLR on the batch loss (factor 0.95, patience 5, min_lr 1e-3, max_lr 0.2,
              smoothing over 10 steps)
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from refimpl.checkpoint import atomic_write_bytes
from refimpl.plotting import plot_histories
from refimpl.registry import get_model, load_dataset, make_optimizer, make_scheduler
from refimpl.train import History, Trainer

#: The demo network: two small conv blocks then a dense head (14,410 parameters).
DEMO_SPEC = "conv:8x3,relu,pool2,conv:16x3,relu,pool2,flatten,dense:32,relu,dense:10"
#: Keyword arguments per schedule name; ``None`` means no scheduler (a fixed rate).
SCHEDULES = {
    "none": None,
    "cosine": {"interval": "step"},
    "greedy": {"factor": 0.95, "patience": 5, "min_lr": 1e-3, "max_lr": 0.2,
               "smooth": True, "window_size": 10},
}


def run_demo(epochs: int = 3, schedulers: Sequence[str] = ("none", "cosine", "greedy"),
             lr: float = 0.05, seed: int = 0, backend: str = "numpy",
             out_dir: str | Path = ".", progress: bool | None = None,
             batch_size: int = 32, train_size: int | None = None,
             stream=None) -> dict[str, History]:
    """Train :data:`DEMO_SPEC` once per schedule; print a table; write demo.png/demo.json.

    ``train_size`` trains on a stratified subset of the 2,000 sample images (quick checks).
    A schedule whose scheduler class is not available in this installation is reported
    and skipped (the others still run). Returns ``{schedule name: History}``.
    """
    stream = stream or sys.stdout
    unknown = [name for name in schedulers if name not in SCHEDULES]
    if unknown:
        fixed = (" ('constant' is torch's ConstantLR in refimpl train; the demo's fixed rate "
                 "is 'none')" if "constant" in unknown else "")
        raise ValueError(f"--schedulers: {unknown} are not demo schedules; choose from "
                         f"{sorted(SCHEDULES)}{fixed}")
    train = load_dataset("fashion-mnist-sample", "train", subset=train_size, seed=seed)
    val = load_dataset("fashion-mnist-sample", "test")
    batches = -(-len(train[1]) // batch_size)
    histories: dict[str, History] = {}
    times: dict[str, float] = {}
    for name in schedulers:
        model = get_model(DEMO_SPEC, (1, 28, 28), seed=seed, backend=backend)
        optimizer = make_optimizer("sgd", model.parameters(), lr=lr, momentum=0.9)
        kwargs = SCHEDULES[name]
        try:
            scheduler = make_scheduler("none" if kwargs is None else name, lr, epochs=epochs,
                                       steps_per_epoch=batches, **(kwargs or {}))
        except ValueError as exc:
            print(f"{name}: skipped ({exc})", file=stream)
            continue
        trainer = Trainer(model, optimizer, scheduler, batch_size=batch_size, seed=seed,
                          progress=progress)
        started = time.perf_counter()
        histories[name] = trainer.fit(train, val, epochs=epochs)
        times[name] = time.perf_counter() - started
    if not histories:
        raise ValueError("no demo schedule could run")
    print(format_table(histories, times), file=stream)
    out_dir = Path(out_dir)
    png = plot_histories(histories, out_dir / "demo.png",
                         title=f"refimpl demo: {DEMO_SPEC} on the embedded Fashion-MNIST sample")
    record = {name: h.to_dict() for name, h in histories.items()}
    atomic_write_bytes(out_dir / "demo.json", json.dumps(record).encode("utf-8"))
    print(f"plot: {png}   histories: {out_dir / 'demo.json'}", file=stream)
    return histories


def format_table(histories: dict[str, History], times: dict[str, float]) -> str:
    """A plain-text table: one row per schedule, final-epoch numbers."""
    header = (f"{'schedule':<10} {'train loss':>10} {'val loss':>9} {'val acc':>8} "
              f"{'final lr':>9} {'time s':>7}")
    rows = [header, "-" * len(header)]
    for name, h in histories.items():
        rows.append(f"{name:<10} {h.train_loss[-1]:>10.4f} {h.val_loss[-1]:>9.4f} "
                    f"{h.val_acc[-1]:>8.4f} {h.lr_epoch[-1]:>9.4g} {times[name]:>7.1f}")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    run_demo(progress=False)
