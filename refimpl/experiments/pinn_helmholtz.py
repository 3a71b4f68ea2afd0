"""1-D Helmholtz PINN: fixed-rate Adam vs Adam + DLRS over frequencies (DLRS paper §5.1;
docs/methods.md §9), with the hand-derived network of :mod:`refimpl.pinn`.

The paper states the trial solution, 10,000 random collocation points, Adam, DLRS with
``delta_d, delta_o, delta_i = 0.5, 1, 0.1`` and 10,000 epochs, and reports < 1% error at
every frequency. Where it is silent this study follows the public TensorFlow implementation
by one of its authors (the same problem by the trial-solution method, using DLRS):
boundary values ``u(0) = 1``, ``u(1) = -1``; Adam at lr 0.005 for both runs; DLRS's rate
clipped to ``[5.55e-5, 9e-3]``; 10,000 points in fixed mini-batches of 1,000 visited in a
fixed order (a shuffled order is the variant); float32 (TensorFlow's default); training
stops once the relative L2 error falls below 0.9%, checked every 50 epochs from epoch 100 on.

The full size is the paper's: 10,000 points, at most 10,000 epochs, the authors' five
frequencies (250-2000 Hz) and a grid of ten (100-1000 Hz; 500 and 1000 Hz are in both),
fixed batch order, and the authors' five again in shuffled order. Both runs of a frequency
start from the same weights (seed) and see the same points and batch order.

Records (:mod:`refimpl.experiments._records`): every finished run is one line of
``results/pinn-helmholtz.jsonl``, keyed by its settings (``dtype`` among them), and a re-run
skips it. The most informative runs go first: the authors' five frequencies in fixed order
(DLRS, then the fixed rate, frequency by frequency), then the rest of the grid, the
shuffled variant last. ``--report`` trains nothing: the tables give the runs that have
finished, say which are still to run, and state ``n`` where a cell counts runs.

Cost, measured with ``NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1`` on a shared 2-core x86_64
machine (Intel Xeon, AVX-512; other work running, load average ~4): one float32 epoch at
10,000 points (ten loss-and-gradient calls of 1,000 points and ten Adam steps) takes 0.040 s
of CPU, so a run that never reaches 0.9% (10,000 epochs) ~6.7 CPU-minutes, and the whole
study (36 runs: 13 frequencies in fixed order and 5 in shuffled order, two methods each) at
most ~4.0 CPU-hours; runs that stop early cost less. (A float64 epoch: 0.093 s.)
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from refimpl.experiments._records import cell, records_for
from refimpl.experiments.common import StudyResult, Table, Timer, machine, new_figure, save_figure
from refimpl.pinn import HelmholtzPINN, train_pinn
from refimpl.schedulers.dlrs import DLRS

AUTHORS_FREQUENCIES = (250, 500, 1000, 1500, 2000)
METHODS = ("dlrs", "fixed")
#: shared settings (the authors' code where the paper is silent)
SETUP = {"A": 1.0, "B": -1.0, "lr": 0.005, "min_lr": 5.55e-5, "max_lr": 9e-3,
         "stop_below": 0.009, "check_every": 50, "stop_after": 100}
FULL = {"frequencies": AUTHORS_FREQUENCIES, "grid": tuple(range(100, 1001, 100)),
        "orders": ("fixed", "shuffled"), "n_points": 10_000, "batch_size": 1000,
        "epochs": 10_000, "dtype": "float32"}
QUICK = {"frequencies": (250,), "grid": (), "orders": ("fixed", "shuffled"), "n_points": 500,
         "batch_size": 50, "epochs": 300, "dtype": "float32"}
PAPER_NOTE = "DLRS < 1% at every frequency after 10,000 epochs"
_X = np.linspace(0.0, 1.0, 201)


def train_one(frequency: float, method: str, shuffle: bool, cfg: dict, seed: int) -> dict:
    """One PINN run; the record stored for it (errors, rates, field on 201 points)."""
    pinn = HelmholtzPINN(frequency, A=SETUP["A"], B=SETUP["B"], seed=seed, dtype=cfg["dtype"])
    scheduler = (DLRS(SETUP["lr"], 0.5, 1.0, 0.1, min_lr=SETUP["min_lr"],
                      max_lr=SETUP["max_lr"]) if method == "dlrs" else None)
    with Timer() as t:
        history = train_pinn(pinn, cfg["epochs"], n_points=cfg["n_points"],
                             batch_size=cfg["batch_size"], lr=SETUP["lr"], scheduler=scheduler,
                             seed=seed, error_every=SETUP["check_every"], shuffle=shuffle,
                             stop_below=SETUP["stop_below"], stop_after=SETUP["stop_after"])
    floor = [e for e, lr in enumerate(history.lr) if lr <= SETUP["min_lr"] * (1 + 1e-9)]
    return {"loss": history.loss, "lr": history.lr, "error_epochs": history.error_epochs,
            "error": history.error, "stopped_at": history.stopped_at,
            "epochs_run": len(history.loss), "floor_epoch": floor[0] + 1 if floor else None,
            "seconds": t.seconds, "backend": pinn.backend, "field": pinn.trial(_X)[0],
            "exact": pinn.exact(_X)}


def plan(cfg: dict) -> list[tuple[float, str, str]]:
    """Every ``(frequency, order, method)`` of the study, in the order they train: the
    authors' frequencies in fixed order, then the rest of the grid, the other orders last;
    DLRS before the fixed rate at each frequency."""
    fixed = list(cfg["frequencies"]) + [f for f in cfg["grid"] if f not in cfg["frequencies"]]
    units = [(f, "fixed") for f in fixed] if "fixed" in cfg["orders"] else []
    units += [(f, order) for order in cfg["orders"] if order != "fixed"
              for f in cfg["frequencies"]]
    return [(f, order, method) for f, order in units for method in METHODS]


def run(quick: bool = False, out: str | Path | None = None, seed: int = 0,
        results: str | Path | None = None,
        report: bool = False, **overrides) -> StudyResult:
    """Fixed-rate and DLRS PINNs per frequency and batch order; errors, stop and floor epochs.

    ``results``: the directory of ``pinn-helmholtz.jsonl``; ``report``: train nothing, build
    the tables from the runs in it."""
    cfg = {**(QUICK if quick else FULL), **overrides}
    result = StudyResult("pinn-helmholtz", quick, machine=machine())
    result.scale = (f"{cfg['n_points']:,} collocation points in fixed batches of "
                    f"{cfg['batch_size']:,} ({cfg['n_points'] // cfg['batch_size']} per epoch), "
                    f"at most {cfg['epochs']:,} epochs, network 1-100-100-100-1 (sin, cos, sin), "
                    f"{cfg['dtype']}, seed {seed}; frequencies {list(cfg['frequencies'])} Hz in "
                    f"{' and '.join(cfg['orders'])} order, grid {list(cfg['grid'])} Hz in fixed "
                    "order")
    result.paper_scale = ("10,000 collocation points (authors' code: fixed batches of 1,000, "
                          "10 per epoch), 10,000 epochs, same network, float32 (TensorFlow), "
                          "NVIDIA A5000")
    runs_planned = plan(cfg)
    records = records_for("pinn-helmholtz", quick, out, results, report,
                          total=len(runs_planned))
    runs: dict = {}
    with Timer() as timer:
        for frequency, order, method in runs_planned:
            settings = {"study": "pinn-helmholtz", "f": frequency, "order": order,
                        "method": method, "seed": seed, **SETUP,
                        **{k: cfg[k] for k in ("n_points", "batch_size", "epochs", "dtype")}}
            record = records.get_or_run(settings, partial(
                train_one, frequency, method, order == "shuffled", cfg, seed))
            if record is not None:
                runs[frequency, order, method] = record
    result.wall_time = timer.seconds
    result.records = records.summary()
    result.tables.append(_per_run_table(runs, runs_planned))
    result.tables.append(_summary_table(runs, runs_planned))
    result.data = {f"{f} {o} {m}": rec for (f, o, m), rec in runs.items()}
    missing = [f"{f} Hz {o} {m}" for f, o, m in runs_planned if (f, o, m) not in runs]
    if missing:
        result.notes.append(f"{len(missing)} of {len(runs_planned)} runs still to run: "
                            + ", ".join(missing))
    result.notes.append("first epoch < 0.9%: the error is checked every 50 epochs from epoch "
                        "100; training stops there. '-': never below 0.9% in the epochs run")
    _figures(runs, list(cfg["frequencies"]), out, result.figures)
    return result


def _per_run_table(runs: dict, runs_planned: list) -> Table:
    headers = ["f (Hz)", "order", "method", "final error", "first epoch < 0.9%",
               "DLRS floor epoch", "best error", "final lr", "epochs run", "paper"]
    rows = []
    for frequency, order, method in sorted(runs_planned, key=lambda r: (r[1] != "fixed", r)):
        rec = runs.get((frequency, order, method))
        if rec is None:
            rows.append([frequency, order, method, "not run yet", *["-"] * 5,
                         _paper(frequency, method)])
            continue
        rows.append([frequency, order, method, rec["error"][-1],
                     rec["stopped_at"] if rec["stopped_at"] is not None else "-",
                     rec["floor_epoch"] if rec["floor_epoch"] is not None else "-",
                     min(rec["error"]), rec["lr"][-1], rec["epochs_run"],
                     _paper(frequency, method)])
    return Table(f"Relative L2 error (paper: {PAPER_NOTE})", headers, rows)


def _summary_table(runs: dict, runs_planned: list) -> Table:
    """Per order and method: how many frequencies reached < 0.9%, of those finished."""
    rows = []
    for order in dict.fromkeys(o for _, o, _ in runs_planned):
        for method in METHODS:
            asked = [f for f, o, m in runs_planned if o == order and m == method]
            done = [runs[f, order, method] for f in asked if (f, order, method) in runs]
            reached = [rec for rec in done if rec["stopped_at"] is not None]
            epochs = [rec["stopped_at"] for rec in reached]
            rows.append([order, method,
                         cell(done, len(asked), f"{len(reached)} of {len(done)}"),
                         cell(done, len(asked), f"{np.median(epochs):.0f}" if epochs else "-")])
    return Table("Frequencies below 0.9% (n: finished runs of those asked)",
                 ["order", "method", "below 0.9%", "median first epoch < 0.9%"], rows)


def _paper(frequency: float, method: str) -> str:
    """What the paper states for this run (it gives no per-frequency numbers)."""
    if method == "dlrs":
        return "< 1%"
    return "loss unstable, no convergence" if frequency > 500 else "-"


def _figures(runs, shown, out, figures) -> None:
    """The fields and training curves of the shown frequencies in fixed order; a run not
    finished yet is left out (and said so in the panel's title)."""
    if not any((f, "fixed", m) in runs for f in shown for m in METHODS):
        return
    fig, axes = new_figure(len(shown), width=3.2, height=3.0)
    for ax, f in zip(axes, shown):
        ax.plot(_X, HelmholtzPINN(f, A=SETUP["A"], B=SETUP["B"], widths=(1,),
                                  activations=("sin",)).exact(_X), "k", lw=2, label="exact")
        for method, style, label in (("fixed", "--", "fixed lr"), ("dlrs", ":", "DLRS")):
            if (f, "fixed", method) in runs:
                ax.plot(_X, runs[f, "fixed", method]["field"], style, label=label)
        absent = [m for m in METHODS if (f, "fixed", m) not in runs]
        ax.set_title(f"{f} Hz (fixed order)"
                     + (f"\n{' and '.join(absent)}: not run yet" if absent else ""), fontsize=8)
        ax.set_xlabel("x (m)")
    axes[0].legend(fontsize=7)
    save_figure(fig, out, "results_pinn_fields", figures)
    fig, (ax_err, ax_lr) = new_figure(2)
    for f in shown:
        for method, style in (("fixed", "--"), ("dlrs", "-")):
            if (f, "fixed", method) in runs:
                rec = runs[f, "fixed", method]
                ax_err.semilogy(rec["error_epochs"], rec["error"], style, marker=".",
                                label=f"{f} Hz {method}")
        if (f, "fixed", "dlrs") in runs:
            ax_lr.semilogy(runs[f, "fixed", "dlrs"]["lr"], label=f"{f} Hz")
    ax_err.axhline(SETUP["stop_below"], color="grey", lw=0.5)
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel("relative L2 error")
    ax_err.legend(fontsize=6, ncol=2)
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("DLRS rate")
    if ax_lr.lines:
        ax_lr.legend(fontsize=6)
    save_figure(fig, out, "results_pinn_training", figures)
