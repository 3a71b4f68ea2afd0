"""The GreedyLR factor sweep (GreedyLR paper §4.3, Fig. 3; docs/methods.md §4).

The paper: an F-sweep fine-tuning Microsoft Phi-2 (2B parameters) on w601sxs/simpleCoT for
about 250 steps. Below a threshold on ``F`` (its value did not survive in the paper's text)
training diverges (final loss 7.78 from an initial 2.28); the three ``F`` values above it
end at 1.89, 1.92 and 1.91, within 1.5%.

A 2B language model is out of reach of this CPU. The stand-in keeps the setting's shape, a
pretrained network fine-tuned with Adam for 250 steps from a rate at its stability edge:
the MLP ``SPEC`` (784-256-256-256-10, relu) is pretrained with Adam (lr 1e-3, batch 64, one
epoch) on ``n_pretrain`` Fashion-MNIST images and fine-tuned on ``n_finetune`` other images,
batch 32. A run *diverges* when its loss turns NaN/inf or its final loss (the mean of the
last 10% of the step losses) ends above its start (the pretrained model's mean loss on the
fine-tuning images), the paper's sign of divergence.

1. The edge (:func:`stability_edge`): bisection on the log grid ``rates`` for the largest
   rate at which a fixed-rate Adam fine-tune does not diverge (4 probes on the full grid);
   each probe is a record, so it is not run again.
2. The sweep: GreedyLR from the edge rate with the paper's bare rule (patience 0: each new
   best of the smoothed loss divides the rate by F, every other step multiplies it by F),
   loss smoothing over 10 steps (Algorithm 1's moving window; the paper's 50 was for runs of
   1,000-5,000 steps), ``max_lr = 1``, ``min_lr = 1e-5``; one run per (F, seed), the seeds
   changing the batch order only. The first loss always beats the initial best (infinity),
   so every run begins with a jump to edge / F: a small F overshoots the edge at once.
   With the transformers default patience 10 the rate never rose above the edge in 250
   noisy steps (eleven new bests in a row are rare), so F only set how fast it fell: F = 0.1
   ended at 0.564 from a start of 0.505, by cutting the rate before the loss recovered from
   the first steps, and F = 0.5 and 0.9 within 1.4% of each other (one seed).

Threshold (:func:`stability_threshold`) = the smallest grid ``F`` with no diverged run at it
or above; spread (:func:`spread`) = max / min - 1 of the per-``F`` median final losses, over
every ``F`` at or above the threshold and over the three largest of them (the paper's 1.5%).

Measured at the full size, one seed (edge 0.002 from a start loss of 0.505): F = 0.05, 0.1,
0.2, 0.3, 0.5 diverged (final losses 59, 10, 2.1, 0.91, 0.55), F = 0.7, 0.9, 0.99 did not
(0.501, 0.475, 0.437).

Cost (NUMBA_NUM_THREADS=1, shared 2-core x86_64 at load 5.5): a 250-step fine-tune (probe
or sweep run) took 1.2-1.9 s; loading the images and pretraining, done once per sitting
that trains, about 4 s. The full study, 4 probes and 12 F x 5 seeds, is 64 runs: about
2 minutes, 0.03 CPU-hours. ``--quick`` takes about 3 s.

The pretrained weights are not stored: they follow from the settings and the seed, and are
computed once, when the first run that trains needs them; ``--report`` loads no images and
pretrains nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from refimpl.data import load_fashion_mnist
from refimpl.experiments._records import cell, records_for
from refimpl.experiments.common import StudyResult, Table, Timer, machine, new_figure, save_figure
from refimpl.experiments.common import data_source as _source
from refimpl.model import build
from refimpl.optim import Adam
from refimpl.schedulers.greedy import GreedyLR
from refimpl.train import NonFiniteLossError, Trainer

SPEC = "dense:256,relu,dense:256,relu,dense:256,relu,dense:10"
FULL = {"factors": (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99),
        "seeds": 5, "n_pretrain": 10000, "n_finetune": 8000, "finetune_epochs": 1,
        "rates": (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0)}
#: the embedded sample (2,000 images): 60 steps, two passes over 960 images; 3 probes. The
#: grid leaves out 0.02, whose fixed-rate run ends within 0.1% of its start, above or below it
#: depending on the BLAS thread count
QUICK = {"factors": (0.1, 0.5, 0.95, 0.99), "seeds": 1, "n_pretrain": 1000, "n_finetune": 960,
         "finetune_epochs": 2, "rates": (2e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.2)}
PRETRAIN_LR, BATCH, PATIENCE, WINDOW, MIN_LR, MAX_LR = 1e-3, 32, 0, 10, 1e-5, 1.0


def stability_edge(diverges: Callable[[float], bool | None],
                   rates: Sequence[float]) -> float | None:
    """The largest of the ascending ``rates`` at which ``diverges(rate)`` is False.

    Bisection on the grid's indices, assuming that a rate above a diverging one diverges
    too: about ``log2(len(rates) + 1)`` calls. ``None`` when every rate diverges, or when a
    call answers ``None`` (not known: a probe not run yet). All rates stable gives the top
    of the grid, a lower bound of the edge.
    """
    stable, diverging = -1, len(rates)  # indices known stable / known diverging
    while diverging - stable > 1:
        middle = (stable + diverging) // 2
        verdict = diverges(rates[middle])
        if verdict is None:
            return None
        stable, diverging = (stable, middle) if verdict else (middle, diverging)
    return rates[stable] if stable >= 0 else None


def stability_threshold(factors: Sequence[float],
                        diverged: Sequence[Sequence[bool]]) -> float:
    """The smallest ``F`` of ascending ``factors`` with no diverged run at it or above.

    ``diverged[i]`` holds one flag per finished run at ``factors[i]``; a factor with no
    finished run neither confirms nor breaks stability. NaN when the largest factor with runs
    has a diverged one (or no factor has runs).
    """
    threshold = math.nan
    for factor, flags in reversed(list(zip(factors, diverged))):
        if any(flags):
            break
        if len(flags):
            threshold = factor
    return threshold


def spread(values: Sequence[float]) -> float:
    """``max / min - 1`` of finite positive ``values``; NaN for fewer than two."""
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) / min(finite) - 1 if len(finite) > 1 else math.nan


def _spread_cell(value: float, above: Sequence[float], needed: int):
    """A spread, or why there is none: fewer than ``needed`` factors at or above."""
    return value if len(above) >= needed else f"n/a: {len(above)} F at or above"


def final_loss(loss: Sequence[float], steps: int) -> float:
    """Mean of the last 10% of the step losses; inf when the run did not finish finite."""
    tail = np.asarray(loss[-max(1, steps // 10):], dtype=np.float64)
    return float(tail.mean()) if len(loss) == steps and np.isfinite(tail).all() else math.inf


#: A second, stricter sign of divergence: a final loss above this multiple of the start.
#: The paper's diverged Phi-2 run ended at 7.78 from 2.28, 3.4 times its start; "ends above
#: its start" also counts runs that merely lost ground.
CATASTROPHIC = 2.0


def is_diverged(record: dict, steps: int, ratio: float = 1.0) -> bool:
    """Whether a fine-tune ended non-finite or above ``ratio`` times its starting loss."""
    return not final_loss(record["loss"], steps) <= ratio * record["start"]


def load_images(cfg: dict, quick: bool, seed: int):
    """Pretraining and fine-tuning images: disjoint slices of one shuffled training set."""
    X, y = load_fashion_mnist("train", source=_source(quick), flatten=True)
    order = np.random.default_rng(seed).permutation(len(X))
    pre, fine = order[:cfg["n_pretrain"]], order[cfg["n_pretrain"]:][:cfg["n_finetune"]]
    return (X[pre], y[pre]), (X[fine], y[fine])


def pretrain(images, seed: int, backend: str) -> dict:
    """``SPEC`` trained one epoch with Adam lr 1e-3, batch 64; its state dict."""
    model = build(SPEC, (784,), seed=seed, backend=backend)
    Trainer(model, Adam(model.parameters(), lr=PRETRAIN_LR), None, batch_size=64, seed=seed,
            progress=False).fit(images, epochs=1)
    return model.state_dict()


def finetune(state: dict, images, lr: float, factor: float | None, seed: int, epochs: int,
             backend: str) -> dict:
    """Adam from ``state`` at ``lr``, under GreedyLR(F) unless ``factor`` is None.

    Returns the step losses and rates, and ``start``: the mean loss of ``state`` on
    ``images``."""
    model = build(SPEC, (784,), seed=seed, backend=backend)
    model.load_state_dict(state)
    scheduler = None if factor is None else GreedyLR(
        lr, factor=factor, patience=PATIENCE, min_lr=MIN_LR, max_lr=MAX_LR, smooth=True,
        window_size=WINDOW)
    trainer = Trainer(model, Adam(model.parameters(), lr=lr), scheduler, batch_size=BATCH,
                      seed=seed, progress=False, eval_batch_size=1000)
    start = trainer.evaluate(*images)[0]
    try:
        trainer.fit(images, epochs=epochs)
    except NonFiniteLossError:
        pass
    return {"loss": trainer.history.loss, "lr": trainer.history.lr, "start": start}


def run(quick: bool = False, out: str | Path | None = None, seed: int = 0,
        backend: str = "numba", results: str | Path | None = None,
        report: bool = False, **overrides) -> StudyResult:
    """The edge by bisection, then one GreedyLR fine-tune per (F, seed); threshold and
    spread. ``report``: train nothing, tabulate the runs recorded in ``results``."""
    cfg = {**(QUICK if quick else FULL), **overrides}
    steps = cfg["n_finetune"] // BATCH * cfg["finetune_epochs"]
    result = StudyResult("greedy-factor-sweep", quick, machine=machine())
    result.scale = (f"MLP {SPEC} pretrained with Adam (1 epoch, {cfg['n_pretrain']} images), "
                    f"fine-tuned on {cfg['n_finetune']} other images for {steps} steps: Adam, "
                    f"batch {BATCH}, fixed-rate edge on {list(cfg['rates'])}, GreedyLR from the "
                    f"edge, patience {PATIENCE}, smoothing window {WINDOW}, max_lr {MAX_LR}, "
                    f"min_lr {MIN_LR}, F in {list(cfg['factors'])}, {cfg['seeds']} seeds "
                    f"(batch order), backend {backend}")
    result.paper_scale = ("Phi-2 (2B) fine-tuned on w601sxs/simpleCoT, ~250 steps; F below "
                          "a threshold diverged, three F above it")
    factors, seeds = cfg["factors"], range(seed, seed + cfg["seeds"])
    records = records_for("greedy-factor-sweep", quick, out, results, report)
    base = {"spec": SPEC, "pretrain_lr": PRETRAIN_LR, "study_seed": seed,
            **{k: cfg[k] for k in ("n_pretrain", "n_finetune", "finetune_epochs")}}
    cache: dict = {}

    def one(lr, factor, s):  # images and pretrained weights made once, by the first run
        if not cache:
            cache["pre"], cache["fine"] = load_images(cfg, quick, seed)
            cache["state"] = pretrain(cache["pre"], seed, backend)
        return finetune(cache["state"], cache["fine"], lr, factor, s, cfg["finetune_epochs"],
                        backend)

    probes: dict[float, dict] = {}
    asked = []

    def probe(lr):
        asked.append(lr)
        record = records.get_or_run({"probe": "fixed rate", "lr": lr, "seed": seed, **base},
                                    lambda: one(lr, None, seed))
        if record is None:
            return None
        probes[lr] = record
        return is_diverged(record, steps)

    runs: dict[tuple, dict] = {}
    with Timer() as timer:
        edge = stability_edge(probe, cfg["rates"])
        records.total = len(asked) + len(factors) * len(seeds)
        for factor in factors if edge is not None else ():
            for s in seeds:
                settings = {"F": factor, "lr": edge, "seed": s, "patience": PATIENCE,
                            "window": WINDOW, "min_lr": MIN_LR, "max_lr": MAX_LR, **base}
                record = records.get_or_run(settings, lambda f=factor, s=s: one(edge, f, s))
                if record is not None:
                    runs[factor, s] = record
    result.wall_time = timer.seconds
    result.records = records.summary()
    result.notes += _notes(records.missing, edge, cfg["rates"], len(factors) * len(seeds))
    _tables(result, cfg, steps, edge, probes, runs)
    _figure(cfg, steps, runs, seed, out, result.figures)
    return result


def _notes(missing: int, edge: float | None, rates, n_sweep: int) -> list[str]:
    """What the tables cannot say themselves: an unknown edge, unfinished runs."""
    if edge is None:
        return ["every rate of the grid diverged at a fixed rate: no edge, no sweep"
                if not missing else "a fixed-rate probe has not run yet, so the edge and the "
                f"sweep's {n_sweep} runs are not known (0 of {n_sweep})"]
    notes = [f"{missing} of {n_sweep} sweep runs have not finished; cells give n"] if missing \
        else []
    if edge == rates[-1]:
        notes.append("no rate of the grid diverged at a fixed rate: the edge is at or above "
                     "its top")
    return notes


def _tables(result: StudyResult, cfg: dict, steps: int, edge, probes, runs) -> None:
    factors, seeds = cfg["factors"], cfg["seeds"]
    result.tables.append(Table(
        "Fixed-rate Adam fine-tunes probed for the stability edge",
        ["lr", "start loss", "final loss", "diverged"],
        [[lr, r["start"], final_loss(r["loss"], steps), is_diverged(r, steps)]
         for lr, r in sorted(probes.items())]))
    finals = {f: [final_loss(r["loss"], steps) for (g, _), r in runs.items() if g == f]
              for f in factors}
    diverged = {f: [is_diverged(r, steps) for (g, _), r in runs.items() if g == f]
                for f in factors}
    medians = {f: float(np.median(v)) if v else math.nan for f, v in finals.items()}
    rows = []
    for f in factors:
        peaks = [max(r["lr"]) for (g, _), r in runs.items() if g == f and r["lr"]]
        rows.append([f, cell(finals[f], seeds, f"{medians[f]:.4g}" if finals[f] else ""),
                     min(finals[f], default=math.nan), max(finals[f], default=math.nan),
                     cell(diverged[f], seeds, f"{sum(diverged[f])} of {len(diverged[f])}"),
                     float(np.median(peaks)) if peaks else math.nan])
    result.tables.append(Table(
        "Fine-tuning loss per factor F (GreedyLR from the edge rate "
        + (f"{edge:g})" if edge is not None else "not known yet)"),
        ["F", "median final loss", "min", "max", "diverged runs", "median peak lr"], rows))
    rows, found = [], {}
    for label, ratio in (("ends above its start", 1.0),
                         (f"ends above {CATASTROPHIC:g}x its start", CATASTROPHIC)):
        flags = diverged if ratio == 1.0 else {
            f: [is_diverged(r, steps, ratio) for (g, _), r in runs.items() if g == f]
            for f in factors}
        threshold = stability_threshold(factors, [flags[f] for f in factors])
        above = [f for f in factors if f >= threshold]
        found[ratio] = (threshold, spread([medians[f] for f in above]),
                        spread([medians[f] for f in above[-3:]]))
        per_factor = ", ".join(f"{f}: {sum(v)}/{len(v)}" if v else f"{f}: not run"
                               for f, v in flags.items())
        rows.append([label, threshold, per_factor,
                     _spread_cell(found[ratio][1], above, 2),
                     _spread_cell(found[ratio][2], above, 3)])
    result.tables.append(Table(
        "Stability threshold and spread above it (paper, Phi-2: divergence below the "
        "threshold, 7.78 from 2.28; three F above it end at 1.89, 1.92, 1.91, within 1.5%); "
        f"edge rate {edge if edge is not None else 'not known yet'}",
        ["a run diverges when it", "threshold F (no divergence at or above)",
         "diverged runs per F", "spread, all F at or above", "spread, three largest F"],
        rows))
    largest = [f for f in factors if finals[f]][-3:]
    result.notes.append(
        "spread = max/min - 1 of the per-F median final losses; over the three largest F "
        "run, whatever their divergence (" + ", ".join(f"{f}: {medians[f]:.4g}"
                                                    for f in largest)
        + f"): {spread([medians[f] for f in largest]):.3g}")
    threshold, spread_all, spread_top3 = found[1.0]
    result.data = {"factors": list(factors), "edge": edge, "threshold": threshold,
                   "spread": spread_all, "spread3": spread_top3,
                   "catastrophic": dict(zip(("threshold", "spread", "spread3"),
                                            found[CATASTROPHIC])),
                   "finals": {str(f): finals[f] for f in factors},
                   "diverged": {str(f): diverged[f] for f in factors}}


def _figure(cfg, steps, runs, seed, out, figures) -> None:
    fig, (ax_f, ax_lr) = new_figure(2)
    factors = [f for f in cfg["factors"] if any(g == f for g, _ in runs)]
    medians = [np.median([min(final_loss(r["loss"], steps), 1e6)
                          for (g, _), r in runs.items() if g == f]) for f in factors]
    ax_f.semilogy(factors, medians, marker="o")
    ax_f.set_xlabel("F")
    ax_f.set_ylabel("final fine-tuning loss (median; non-finite shown as 1e6)")
    for f in factors:
        if (f, seed) in runs:
            ax_lr.semilogy(runs[f, seed]["lr"], lw=0.8, label=f"F={f}")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel(f"lr (seed {seed})")
    if any((f, seed) in runs for f in factors):
        ax_lr.legend(fontsize=6, ncol=2)
    save_figure(fig, out, "results_greedy_factor_sweep", figures)
