"""1-D Helmholtz PINN: fixed-rate Adam vs Adam + DLRS over frequencies (DLRS paper §5.1;
docs/methods.md §9), with the hand-derived network of :mod:`refimpl.pinn`.

Both runs of a frequency start from the same weights (seed) and see the same collocation
points and batch order. DLRS uses the paper's PINN setting ``delta_d, delta_o, delta_i =
0.5, 1, 0.1`` and its default clip ``[1e-5, 0.1]``. Interpretation: the paper does not state
the PINN's initial rate; we start both runs at 0.01 (the rate the paper uses for Adam on
MNIST), and boundary values ``u(0) = 1``, ``u(1) = 0``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from refimpl.experiments.common import StudyResult, Table, Timer, machine, new_figure, save_figure
from refimpl.pinn import HelmholtzPINN, train_pinn
from refimpl.schedulers.dlrs import DLRS

FULL = {"frequencies": tuple(range(100, 1001, 100)), "n_points": 1000, "batch_size": 100,
            "epochs": 500, "lr": 0.01}
QUICK = {"frequencies": (300,), "n_points": 500, "batch_size": 50, "epochs": 60, "lr": 0.01}
PAPER_NOTE = "< 1% with DLRS at every frequency; fixed-lr Adam fails above 500 Hz"


def run(quick: bool = False, out: str | Path | None = None, seed: int = 0,
        **overrides) -> StudyResult:
    """Train fixed-rate and DLRS PINNs per frequency; table of relative L2 errors."""
    cfg = {**(QUICK if quick else FULL), **overrides}
    result = StudyResult("pinn-helmholtz", quick, machine=machine())
    result.scale = (f"{cfg['n_points']} collocation points, batch {cfg['batch_size']}, "
                    f"{cfg['epochs']} epochs, Adam lr0 {cfg['lr']}, network 1-100-100-100-1 "
                    f"(sin, cos, sin), float64, frequencies {list(cfg['frequencies'])} Hz, "
                    f"seed {seed}")
    result.paper_scale = ("10,000 collocation points, 10,000 epochs, batch a fraction of the "
                          "points (value lost in extraction), same network, NVIDIA A5000")
    rows, runs = [], {}
    with Timer() as timer:
        for frequency in cfg["frequencies"]:
            runs[frequency] = {}
            for method in ("fixed", "dlrs"):
                pinn = HelmholtzPINN(frequency, seed=seed)
                scheduler = DLRS(cfg["lr"], 0.5, 1.0, 0.1) if method == "dlrs" else None
                with Timer() as t:
                    history = train_pinn(pinn, cfg["epochs"], n_points=cfg["n_points"],
                                         batch_size=cfg["batch_size"], lr=cfg["lr"],
                                         scheduler=scheduler, seed=seed,
                                         error_every=max(1, cfg["epochs"] // 20))
                runs[frequency][method] = (pinn, history, t.seconds)
            fixed, dlrs = runs[frequency]["fixed"][1], runs[frequency]["dlrs"][1]
            rows.append([frequency, fixed.error[-1], dlrs.error[-1], min(fixed.error),
                         min(dlrs.error), dlrs.lr[-1], fixed.loss[-1], dlrs.loss[-1]])
    result.wall_time = timer.seconds
    result.tables.append(Table(
        f"Relative L2 error at the end of training (paper: {PAPER_NOTE})",
        ["f (Hz)", "fixed lr", "DLRS", "fixed lr (best seen)", "DLRS (best seen)",
         "DLRS final lr", "fixed final loss", "DLRS final loss"], rows))
    result.data = {str(f): {m: {"loss": h.loss, "lr": h.lr, "error_epochs": h.error_epochs,
                                "error": h.error, "seconds": s}
                            for m, (_, h, s) in d.items()} for f, d in runs.items()}
    _figures(runs, out, result.figures)
    return result


def _figures(runs, out, figures) -> None:
    freqs = list(runs)
    fig, axes = new_figure(min(len(freqs), 5), width=3.4, height=3.0)
    shown = freqs if len(freqs) <= 5 else freqs[1::2]
    x = np.linspace(0.0, 1.0, 1001)
    for ax, f in zip(axes, shown):
        pinn = runs[f]["fixed"][0]
        ax.plot(x, pinn.exact(x), "k", lw=2, label="exact")
        ax.plot(x, pinn.trial(x)[0], "--", label="fixed lr")
        ax.plot(x, runs[f]["dlrs"][0].trial(x)[0], ":", label="DLRS")
        ax.set_title(f"{f} Hz")
        ax.set_xlabel("x (m)")
    axes[0].legend(fontsize=7)
    save_figure(fig, out, "results_pinn_fields", figures)
    fig, (ax_loss, ax_err) = new_figure(2)
    for f in shown:
        for method, style in (("fixed", "--"), ("dlrs", "-")):
            h = runs[f][method][1]
            ax_loss.semilogy(h.loss, style, lw=0.8, label=f"{f} Hz {method}")
            ax_err.semilogy(h.error_epochs, h.error, style, marker=".", label=f"{f} Hz {method}")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("mean residual loss")
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel("relative L2 error")
    ax_err.legend(fontsize=6, ncol=2)
    save_figure(fig, out, "results_pinn_training", figures)
