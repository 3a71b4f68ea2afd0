"""``refimpl theory a1|a2|tlr [--full]``: run a theorem check and print its table.

The default sizes finish in seconds (they are the notebooks' small sizes); ``--full`` runs
the sizes reported in docs/theory.md. Each ``*_rows`` function returns plain dicts so that
notebooks and docs reuse exactly what the command prints.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

import numpy as np

from .bounds import optimal_factor
from .problems import make_least_squares, make_logistic, make_quadratic

# The checks (:mod:`.montecarlo`, which needs scipy.stats, and :mod:`.tlr`) are imported
# inside the functions that run them, so that ``refimpl theory --help`` answers at once.

#: ``(eta_min, eta_max)`` in units of ``1/L_max``; all satisfy ``eta_max <= 1/(4 L_max)``.
A1_PAIRS = ((1 / 16, 1 / 4), (1 / 80, 1 / 8), (1 / 32, 1 / 16), (1 / 8, 1 / 4))
#: A pair that violates the step-size assumption (and makes SGD unstable on quadratics).
A1_VIOLATED = (4.0, 8.0)


def a1_problems():
    return [make_least_squares(), make_logistic(), make_quadratic()]


def a1_rows(full: bool = False, seed: int = 0) -> list[dict]:
    """One row per (problem, pair, T): the MC mean, its 95% CI, the bound, and the verdict."""
    from .montecarlo import check_a1, log_grid

    T_grid = log_grid(100_000, 2) if full else log_grid(1000, 1)
    n_seeds = 200 if full else 50
    rows = []
    for problem in a1_problems():
        for lo, hi in (*A1_PAIRS, A1_VIOLATED):
            check = check_a1(problem, lo / problem.L_max, hi / problem.L_max, T_grid,
                             n_seeds=n_seeds, seed=seed)
            for k, T in enumerate(check.T):
                rows.append({
                    "problem": problem.name, "eta_min*L_max": lo, "eta_max*L_max": hi,
                    "assumption": check.assumption_holds, "T": int(T),
                    "mean": float(check.mean[k]), "ci_low": float(check.ci_low[k]),
                    "ci_high": float(check.ci_high[k]), "bound": float(check.bound[k]),
                    "holds": bool(check.holds[k]),
                })
    return rows


A2_FACTORS_FULL = np.round(np.arange(0.05, 0.99, 0.025), 3)
A2_FACTORS_SMALL = np.round(np.arange(0.1, 0.99, 0.05), 3)


def a2_rows(full: bool = False, seed: int = 0) -> list[dict]:
    """Formula ``F*`` beside the empirical best F and the divergence threshold, per setting."""
    from .montecarlo import sweep_factor

    factors = A2_FACTORS_FULL if full else A2_FACTORS_SMALL
    eta_maxes = (1.5, 2.5, 3.0, 4.0, 6.0, 10.0) if full else (2.5, 4.0, 10.0)
    mus = (0.1, 0.01) if full else (0.1,)
    rows = []
    for mu in mus:
        spectrum = np.linspace(mu, 1.0, 20)
        for eta_max in eta_maxes:
            sweep = sweep_factor(spectrum, factors, eta_max, n_seeds=20 if full else 8,
                                 max_steps=5000 if full else 2000, seed=seed)
            best = sweep.empirical_best
            rows.append({
                "mu/L": mu, "L*eta_max": eta_max, "F*_formula": optimal_factor(1.0, eta_max),
                "F_best": best, "steps_best": float(np.min(sweep.median_steps)),
                "steps_at_formula": _steps_at(sweep, optimal_factor(1.0, eta_max)),
                "threshold": sweep.stability_threshold,
            })
    return rows


def _steps_at(sweep, F: float) -> float:
    if math.isnan(F):
        return float("nan")
    return float(sweep.median_steps[int(np.argmin(np.abs(sweep.factors - F)))])


STABILITY_FACTORS = np.round(np.r_[np.arange(0.1, 0.96, 0.05), 0.99], 3)


def stability_rows(full: bool = False, seed: int = 0) -> list[dict]:
    """Threshold F below which SGD + GreedyLR diverges (logistic regression, 250 steps)."""
    from .montecarlo import stability_sweep

    problem = make_logistic(n=500, d=20)
    rows = []
    for patience in (0, 10):
        # start at 1/L_max (stable for single-sample SGD); the rule may climb to 100/L
        sweep = stability_sweep(problem, STABILITY_FACTORS, lr0=1.0 / problem.L_max,
                                max_lr=100.0 / problem.L, n_seeds=40 if full else 10,
                                patience=patience, seed=seed)
        threshold = sweep.threshold
        rows.append({
            "patience": patience, "threshold": threshold,
            "spread_above": sweep.spread_above() if not math.isnan(threshold) else float("nan"),
            "flat_1.5%_from": sweep.flat_from(0.015),
            "initial_loss": sweep.initial_loss, "f_star": problem.f_star,
            "final_loss": {float(F): float(v) for F, v in zip(sweep.factors, sweep.median_final)},
        })
    return rows


def tlr_rows(full: bool = False, seed: int = 0) -> list[dict]:
    """Steps to ``f - f* < 1e-8`` for GD under each rule, and TLR's distance to the line search."""
    from .tlr import compare_rules

    spectrum = np.linspace(0.1, 1.0, 10 if not full else 50)
    rows = []
    for K in (1, 5):
        for lr0 in (0.05, 0.5, 1.5):
            runs = compare_rules(spectrum, lr0, n_steps=1000 if full else 300, seed=seed, K=K,
                                 hyper_lr=0.05)
            newton = runs["newton"]
            # compare while the run is still far from converged (later directions are noise)
            before = np.asarray(newton.update_steps) < newton.steps_to(1e-8)
            ratio = (np.asarray(newton.lr_after)[before]
                     / np.asarray(newton.line_search)[before])
            rows.append({
                "K": K, "lr0": lr0, **{f"steps_{r}": run.steps_to() for r, run in runs.items()},
                "median_tlr_lr/eta_ls": float(np.median(ratio)) if ratio.size else float("nan"),
            })
    return rows


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_table(rows: list[dict], skip: Sequence[str] = ()) -> None:
    """Print rows as a Markdown table (the format docs/theory.md uses)."""
    if not rows:
        return
    keys = [k for k in rows[0] if k not in skip]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(_format(row[k]) for k in keys) + " |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="refimpl theory",
        description="Run a numerical check and print its table: a1 (GreedyLR's Theorem A.1, "
                    "convergence of the average iterate), a2 (Theorem A.2, the optimal factor "
                    "F, and the stability threshold in F), tlr (TLR's Newton step against the "
                    "line-search optimum). The default sizes take seconds; --full runs those "
                    "of docs/theory.md.")
    parser.add_argument("check", choices=("a1", "a2", "tlr"), help="which theorem to check")
    parser.add_argument("--full", action="store_true", help="run the sizes of docs/theory.md")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Monte-Carlo runs (0)")
    args = parser.parse_args(argv)
    if args.check == "a1":
        rows = a1_rows(args.full, args.seed)
        print_table(rows)
        kept = [r for r in rows if r["assumption"]]
        broken = [r for r in rows if not r["assumption"]]
        print(f"\nTheorem A.1: the bound holds in {sum(r['holds'] for r in kept)} of {len(kept)} "
              f"rows that satisfy eta_max <= 1/(4 L_max); with the assumption violated it "
              f"fails in {sum(not r['holds'] for r in broken)} of {len(broken)} rows.")
    elif args.check == "a2":
        print_table(a2_rows(args.full, args.seed))
        print()
        print_table(stability_rows(args.full, args.seed), skip=("final_loss",))
    else:
        print_table(tlr_rows(args.full, args.seed))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
