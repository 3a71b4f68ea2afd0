"""optax's catalogue: its schedules (functions ``count -> value``), ``contrib.reduce_on_plateau``
and its optimizers, against refimpl (docs/methods.md §2-§3).

A schedule is evaluated at counts ``0 .. steps`` in 64-bit JAX and compared, count by
count, with the refimpl scheduler its arguments map to (the table :data:`SCHEDULE_MAP`);
``reduce_on_plateau`` is fed the same losses as a :class:`~refimpl.schedulers.
ReduceLROnPlateau` and its ``scale`` times the rate is compared. The optimizers are in
:mod:`.optax_optim`. JAX runs in 64-bit mode inside :func:`session` only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ... import schedulers
from ..frameworks import random_losses
from .common import differing_steps, generator, log_uniform, schedule_comparison, take
from .core import BUG, BY_DESIGN, Case, Comparison, Explanation, Subject

__all__ = [
    "COSINE_HOLDS",
    "ONECYCLE_PHASES",
    "PLATEAU_EQUALS_PATIENCE",
    "PLATEAU_PATIENCE_ZERO",
    "SCHEDULE_MAP",
    "SGDR_HOLDS",
    "catalogue",
    "session",
    "version",
]


def version() -> str:
    import jax
    import optax

    return f"{optax.__version__} (JAX {jax.__version__})"


@contextlib.contextmanager
def session() -> Iterator[None]:
    """64-bit JAX for the run (float64 rates, compared to 1e-12), restored after."""
    import jax

    with jax.enable_x64(True):
        yield


# -- findings ---------------------------------------------------------------------------------
COSINE_HOLDS = Explanation(
    key="optax-cosine-holds-after-decay",
    verdict=BY_DESIGN,
    summary=(
        "`cosine_decay_schedule` (and `warmup_cosine_decay_schedule`) holds its final value "
        "(`alpha * init_value`, or `end_value`) for every count past `decay_steps`; "
        "`CosineAnnealingLR`, as torch's, continues the cosine, which rises back towards "
        "the initial rate. Up to `decay_steps` the two agree."),
    reference="docs/methods.md §3 (3.7: the cosine continues past T_max)",
    reproduction='''\
import jax
import optax

from refimpl.schedulers import CosineAnnealingLR

with jax.enable_x64(True):
    schedule = optax.cosine_decay_schedule(0.1, decay_steps=10, alpha=0.1)
    theirs = [float(schedule(t)) for t in range(16)]
ours = CosineAnnealingLR(0.1, T_max=10, eta_min=0.01)
rates = [ours.lr] + [ours.step() for _ in range(15)]
assert abs(theirs[10] - rates[10]) <= 1e-12 * rates[10]      # equal up to decay_steps
assert theirs[11:] == [theirs[10]] * 5                        # optax holds 0.01
assert all(b > a for a, b in zip(rates[10:], rates[11:]))     # the cosine rises again
''')

SGDR_HOLDS = Explanation(
    key="optax-sgdr-holds-after-last-cycle",
    verdict=BY_DESIGN,
    summary=(
        "`sgdr_schedule` runs the cycles it is given and then holds the last cycle's end "
        "value; `CosineAnnealingWarmRestarts` restarts for ever (cycle lengths "
        "`T_0 T_mult^k`). Over the cycles given the two agree."),
    reference="docs/methods.md §3 (3.11)",
    reproduction='''\
import jax
import optax

from refimpl.schedulers import CosineAnnealingWarmRestarts

cycles = [dict(init_value=0.1, peak_value=0.1, warmup_steps=0, decay_steps=n, end_value=0.0)
          for n in (4, 8)]
with jax.enable_x64(True):
    schedule = optax.sgdr_schedule(cycles)
    theirs = [float(schedule(t)) for t in range(16)]
ours = CosineAnnealingWarmRestarts(0.1, T_0=4, T_mult=2)
rates = [ours.lr] + [ours.step() for _ in range(15)]
assert max(abs(a - b) for a, b in zip(theirs[:12], rates[:12])) < 1e-15
assert theirs[12:] == [0.0] * 4 and rates[12] == 0.1          # held at 0; restarted
''')

ONECYCLE_PHASES = Explanation(
    key="optax-onecycle-phase-ends",
    verdict=BY_DESIGN,
    summary=(
        "optax's onecycle schedules end a phase at count `int(pct * T)` and the last at `T` "
        "(pct = (count - start) / (end - start) between them); torch's `OneCycleLR`, and "
        "refimpl's, end them at `pct T - 1` and `T - 1` (docs/methods.md (3.16)). Re-run "
        "with refimpl's phase ends moved to optax's, the two agree."),
    reference="docs/methods.md §3 (OneCycleLR, (3.16))",
    reproduction='''\
import jax
import optax

from refimpl.schedulers import OneCycleLR

with jax.enable_x64(True):
    schedule = optax.cosine_onecycle_schedule(100, 0.1, pct_start=0.3)
    theirs = [float(schedule(t)) for t in range(101)]
ours = OneCycleLR(0.1, max_lr=0.1, total_steps=100, pct_start=0.3, cycle_momentum=False)
rates = [ours.lr] + [ours.step() for _ in range(99)]
assert theirs[30] == 0.1 and rates[29] == 0.1     # the peak: count 30 (optax), step 29 (ours)
moved = OneCycleLR(0.1, max_lr=0.1, total_steps=100, pct_start=0.3, cycle_momentum=False)
moved.phase_ends = [30.0, 100.0]                 # optax's phase ends
rates = [moved.lr] + [moved.step() for _ in range(100)]
assert max(abs(a - b) / b for a, b in zip(rates, theirs)) < 1e-12
''')

PLATEAU_EQUALS_PATIENCE = Explanation(
    key="optax-plateau-count-equals-patience",
    verdict=BY_DESIGN,
    summary=(
        "`contrib.reduce_on_plateau` reduces when its plateau count *equals* `patience`; "
        "torch's `ReduceLROnPlateau`, and refimpl's, when the count *exceeds* it "
        "(docs/methods.md §3, (3.14)). optax with `patience=p` is refimpl with "
        "`patience=p - 1` (for p >= 1), and re-run so the two agree."),
    reference="docs/methods.md §3 (ReduceLROnPlateau, (3.13)-(3.14))",
    reproduction='''\
import jax
import jax.numpy as jnp
import optax

from refimpl.schedulers import ReduceLROnPlateau

losses = [1.0, 1.0, 1.0, 1.0, 1.0]
with jax.enable_x64(True):
    transform = optax.contrib.reduce_on_plateau(factor=0.5, patience=2)
    state = transform.init(jnp.zeros(1))
    scales = []
    for loss in losses:
        _, state = transform.update(jnp.zeros(1), state, value=loss)
        scales.append(float(state.scale))
assert scales == [1.0, 1.0, 0.5, 0.5, 0.25]       # reduced at the 2nd non-improving loss
ours = ReduceLROnPlateau(1.0, factor=0.5, patience=2, eps=0.0)
assert [ours.step(loss) for loss in losses] == [1.0, 1.0, 1.0, 0.5, 0.5]   # at the 3rd
ours = ReduceLROnPlateau(1.0, factor=0.5, patience=1, eps=0.0)
assert [ours.step(loss) for loss in losses] == scales
''')

PLATEAU_PATIENCE_ZERO = Explanation(
    key="optax-plateau-patience-zero",
    verdict=BUG,
    summary=(
        "`contrib.reduce_on_plateau(patience=0)` reduces the scale at every step where the "
        "value *improves* outside its cooldown (its plateau count is reset to 0, which "
        "equals `patience`) and never where it does not (the count grows past 0 and is "
        "never equal to it again): the opposite of its documentation, 'number of iterations with no improvement after "
        "which learning rate will be reduced'."),
    reference=("the `patience` argument in optax's documentation of `reduce_on_plateau`; "
               "refimpl's rule is docs/methods.md §3 (3.14)"),
    reproduction='''\
import jax
import jax.numpy as jnp
import optax

losses = [1.0, 0.9, 0.95, 0.96, 0.97, 0.8]       # improve, improve, then three worse
with jax.enable_x64(True):
    transform = optax.contrib.reduce_on_plateau(factor=0.5, patience=0)
    state = transform.init(jnp.zeros(1))
    scales = []
    for loss in losses:
        _, state = transform.update(jnp.zeros(1), state, value=loss)
        scales.append(float(state.scale))
assert scales == [0.5, 0.25, 0.25, 0.25, 0.25, 0.125]   # halved exactly at the improvements
''')


# -- schedules ----------------------------------------------------------------------------------
def _values(schedule: Callable, steps: int) -> np.ndarray:
    """The schedule at counts 0..steps, in float64."""
    import jax
    import jax.numpy as jnp

    values = np.asarray(jax.vmap(schedule)(jnp.arange(steps + 1)), dtype=np.float64)
    return values


def _schedule_case(name: str, config: dict, build: Callable[[], tuple[Callable, Any]],
                   steps: int, explanations=()) -> Case:
    """``build() -> (their schedule, our fresh scheduler)``; counts 0..steps compared."""
    def compare() -> Comparison:
        schedule, ours = build()
        values = _values(schedule, steps)
        return schedule_comparison(lambda t: values[t], ours, steps=steps,
                                   label=f"optax.{name}")

    text = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in config.items())
    return Case(name, f"{name}({text}), counts 0..{steps}", compare, list(explanations))


def _held_after(limit: int, value: Callable[[], float]) -> Callable[[Comparison], bool]:
    """Every difference comes after count ``limit``, where theirs holds ``value()``."""
    def holds(comparison: Comparison) -> bool:
        result = comparison.result
        steps = differing_steps(comparison)
        if not steps or min(steps) <= limit:
            return False
        return all(abs(d.theirs - value()) <= 1e-12 * abs(value()) for d in result.differences
                   if d.label != "rounding")
    return holds


def _constant(rng, steps):
    import optax

    lr = log_uniform(rng, 1e-4, 1.0)
    return ({"value": lr}, lambda: (optax.constant_schedule(lr),
                                    schedulers.ConstantLR(lr, factor=1.0, total_iters=1)), ())


def _exponential(rng, steps):
    import optax

    lr, rate = log_uniform(rng, 1e-4, 1.0), float(rng.uniform(0.3, 0.99))
    every = int(rng.integers(1, 20))
    staircase, begin = bool(rng.random() < 0.5), int(rng.choice([0, rng.integers(1, steps)]))
    config = {"init_value": lr, "transition_steps": every, "decay_rate": rate,
              "transition_begin": begin, "staircase": staircase}

    def build():
        groups = schedulers.ParamGroups(lr)
        decay = (schedulers.StepLR(groups, step_size=every, gamma=rate) if staircase
                 else schedulers.ExponentialLR(groups, gamma=rate ** (1.0 / every)))
        ours = decay if begin == 0 else schedulers.SequentialLR(
            groups, [schedulers.ConstantLR(groups, factor=1.0, total_iters=1), decay], [begin])
        return optax.exponential_decay(**config), ours
    return config, build, ()


def _cosine_decay(rng, steps):
    import optax

    lr, decay = log_uniform(rng, 1e-4, 1.0), int(rng.integers(1, steps))
    alpha = float(rng.choice([0.0, rng.uniform(0.0, 0.5)]))
    config = {"init_value": lr, "decay_steps": decay, "alpha": alpha}
    build = lambda: (optax.cosine_decay_schedule(**config),
                     schedulers.CosineAnnealingLR(lr, T_max=decay, eta_min=alpha * lr))
    return config, build, [(COSINE_HOLDS, _held_after(decay, lambda: alpha * lr))]


def _warmup_cosine(rng, steps):
    import optax

    peak = log_uniform(rng, 1e-4, 1.0)
    warmup, decay = int(rng.integers(1, steps // 3)), int(rng.integers(steps // 3, steps))
    init, end = peak * float(rng.uniform(0.01, 1.0)), peak * float(rng.choice([0.0, 0.1]))
    config = {"init_value": init, "peak_value": peak, "warmup_steps": warmup,
              "decay_steps": decay, "end_value": end}

    def build():
        after = schedulers.CosineAnnealingLR(peak, T_max=decay - warmup, eta_min=end)
        return optax.warmup_cosine_decay_schedule(**config), schedulers.LinearWarmup(
            peak, after, start_factor=init / peak, total_iters=warmup)
    return config, build, [(COSINE_HOLDS, _held_after(decay, lambda: end))]


def _linear(rng, steps):
    import optax

    low, high = sorted(log_uniform(rng, 1e-4, 1.0) for _ in range(2))
    falling, every = bool(rng.random() < 0.5), int(rng.integers(1, steps))
    init, end = (high, low) if falling else (low, high)
    config = {"init_value": init, "end_value": end, "transition_steps": every}

    def build():
        ours = (schedulers.LinearLR(high, 1.0, low / high, every) if falling
                else schedulers.LinearLR(high, low / high, 1.0, every))
        return optax.linear_schedule(**config), ours
    return config, build, ()


def _polynomial(rng, steps):
    import optax

    lr, power, every = log_uniform(rng, 1e-4, 1.0), float(rng.uniform(0.5, 3.0)), \
        int(rng.integers(1, steps))
    config = {"init_value": lr, "end_value": 0.0, "power": power, "transition_steps": every}
    return config, lambda: (optax.polynomial_schedule(**config),
                            schedulers.PolynomialLR(lr, total_iters=every, power=power)), ()


def _piecewise_constant(rng, steps):
    import optax

    lr = log_uniform(rng, 1e-4, 1.0)
    boundaries = sorted({int(b) for b in rng.integers(0, steps, size=int(rng.integers(1, 5)))})
    scales = {b: float(rng.uniform(0.1, 2.0)) for b in boundaries}

    def build():
        groups = schedulers.ParamGroups(lr)
        steps_down = [schedulers.MultiStepLR(groups, [b], gamma=s) for b, s in scales.items()]
        return (optax.piecewise_constant_schedule(lr, scales),
                schedulers.ChainedScheduler(steps_down))
    return {"init_value": lr, "boundaries_and_scales": scales}, build, ()


def _sgdr(rng, steps):
    import optax

    lr, first, mult = log_uniform(rng, 1e-4, 1.0), int(rng.integers(1, 20)), \
        int(rng.integers(1, 4))
    eta_min = float(rng.choice([0.0, 1e-5]))
    lengths, total = [], 0
    while total < steps * 2 // 3:  # the cycles end before the last count: the hold shows
        lengths.append(first * mult ** len(lengths))
        total += lengths[-1]
    cycles = [{"init_value": lr, "peak_value": lr, "warmup_steps": 0, "decay_steps": n,
               "end_value": eta_min} for n in lengths]
    build = lambda: (optax.sgdr_schedule(cycles),
                     schedulers.CosineAnnealingWarmRestarts(lr, T_0=first, T_mult=mult,
                                                            eta_min=eta_min))
    config = {"cycles": lengths, "peak_value": lr, "end_value": eta_min}
    return config, build, [(SGDR_HOLDS, _held_after(total - 1, lambda: eta_min))]


def _onecycle_pct(rng, total: int) -> float:
    pct = float(rng.uniform(0.1, 0.5))
    while pct * total == int(pct * total):  # a zero-length phase in torch's rule
        pct = float(rng.uniform(0.1, 0.5))
    return pct


def _with_phase_ends(ours: Any, ends: list[float]) -> Any:
    """``ours`` with its phase ends moved (the documented alternative of optax's)."""
    ours.phase_ends = [float(e) for e in ends]
    return ours


def _onecycle_alternative(schedule_build: Callable, steps: int, ends: list[float]
                          ) -> Callable[[Comparison], bool]:
    def holds(_: Comparison) -> bool:
        schedule, ours = schedule_build()
        values = _values(schedule, steps)
        return schedule_comparison(lambda t: values[t], _with_phase_ends(ours, ends),
                                   steps=steps).ok
    return holds


def _cosine_onecycle(rng, steps):
    import optax

    total, peak = steps, log_uniform(rng, 1e-3, 1.0)
    pct, div, final = _onecycle_pct(rng, total), float(rng.uniform(2, 50)), \
        log_uniform(rng, 10, 1e5)
    config = {"transition_steps": total, "peak_value": peak, "pct_start": pct,
              "div_factor": div, "final_div_factor": final}

    def build():
        return optax.cosine_onecycle_schedule(**config), schedulers.OneCycleLR(
            peak, max_lr=peak, total_steps=total, pct_start=pct, div_factor=div,
            final_div_factor=final, cycle_momentum=False)
    ends = [int(pct * total), total]
    return config, build, [(ONECYCLE_PHASES, _onecycle_alternative(build, total, ends))]


def _linear_onecycle(rng, steps):
    import optax

    total, peak = steps, log_uniform(rng, 1e-3, 1.0)
    pct, div, final = _onecycle_pct(rng, total), float(rng.uniform(2, 50)), \
        log_uniform(rng, 10, 1e5)
    pct_final = float(rng.uniform(pct + 0.1, 0.95))
    config = {"transition_steps": total, "peak_value": peak, "pct_start": pct,
              "pct_final": pct_final, "div_factor": div, "final_div_factor": final}

    def build():
        return optax.linear_onecycle_schedule(**config), schedulers.OneCycleLR(
            peak, max_lr=peak, total_steps=total, pct_start=pct, anneal_strategy="linear",
            div_factor=div, final_div_factor=final, three_phase=True, cycle_momentum=False)
    ends = [int(pct * total), int(pct_final * total), total]
    return config, build, [(ONECYCLE_PHASES, _onecycle_alternative(build, total, ends))]


def _warmup_constant(rng, steps):
    import optax

    peak, warmup = log_uniform(rng, 1e-4, 1.0), int(rng.integers(1, steps))
    init = peak * float(rng.uniform(0.01, 1.0))
    config = {"init_value": init, "peak_value": peak, "warmup_steps": warmup}
    return config, lambda: (optax.warmup_constant_schedule(**config), schedulers.LinearWarmup(
        peak, None, start_factor=init / peak, total_iters=warmup)), ()


def _join(rng, steps):
    """join_schedules of decays that start from the same rate, against SequentialLR."""
    import optax

    lr = log_uniform(rng, 1e-4, 1.0)
    kinds = [str(rng.choice(["exponential", "cosine", "polynomial", "constant"]))
             for _ in range(int(rng.integers(2, 4)))]
    boundaries = sorted(int(b) for b in rng.choice(np.arange(1, steps), len(kinds) - 1,
                                                   replace=False))
    gammas = [float(rng.uniform(0.9, 0.999)) for _ in kinds]
    powers = [float(rng.uniform(0.5, 3.0)) for _ in kinds]

    def pieces(groups):
        theirs, ours = [], []
        for kind, gamma, power in zip(kinds, gammas, powers):
            if kind == "exponential":
                theirs.append(optax.exponential_decay(lr, 1, gamma))
                ours.append(schedulers.ExponentialLR(groups, gamma=gamma))
            elif kind == "cosine":  # longer than any piece: no hold inside the join
                theirs.append(optax.cosine_decay_schedule(lr, 2 * steps))
                ours.append(schedulers.CosineAnnealingLR(groups, T_max=2 * steps))
            elif kind == "polynomial":
                theirs.append(optax.polynomial_schedule(lr, 0.0, power, 2 * steps))
                ours.append(schedulers.PolynomialLR(groups, total_iters=2 * steps, power=power))
            else:
                theirs.append(optax.constant_schedule(lr))
                ours.append(schedulers.ConstantLR(groups, factor=1.0, total_iters=1))
        return theirs, ours

    def build():
        groups = schedulers.ParamGroups(lr)
        theirs, ours = pieces(groups)
        return (optax.join_schedules(theirs, boundaries),
                schedulers.SequentialLR(groups, ours, boundaries))
    return {"init_value": lr, "schedules": kinds, "boundaries": boundaries}, build, ()


#: optax schedule -> (its mapping to refimpl, in words; the configuration generator)
SCHEDULE_MAP: dict[str, tuple[str, Callable]] = {
    "constant_schedule": ("ConstantLR(factor=1)", _constant),
    "exponential_decay": (
        ("ExponentialLR(gamma=decay_rate ** (1 / transition_steps)); StepLR("
         "transition_steps, decay_rate) when staircase; after transition_begin through "
         "SequentialLR"), _exponential),
    "cosine_decay_schedule": (
        "CosineAnnealingLR(T_max=decay_steps, eta_min=alpha * init_value)", _cosine_decay),
    "warmup_cosine_decay_schedule": (
        ("LinearWarmup(start_factor=init/peak, total_iters=warmup_steps, after="
         "CosineAnnealingLR(T_max=decay_steps - warmup_steps, eta_min=end_value))"),
        _warmup_cosine),
    "linear_schedule": ("LinearLR(start_factor, end_factor) from the larger value", _linear),
    "polynomial_schedule": (
        "PolynomialLR(total_iters=transition_steps, power), end_value=0", _polynomial),
    "piecewise_constant_schedule": (
        "ChainedScheduler of one MultiStepLR([boundary], gamma=scale) per boundary",
        _piecewise_constant),
    "sgdr_schedule": (
        "CosineAnnealingWarmRestarts(T_0, T_mult, eta_min) over cycles T_0 T_mult^k", _sgdr),
    "cosine_onecycle_schedule": (
        "OneCycleLR(max_lr=peak, total_steps=T, anneal_strategy='cos')", _cosine_onecycle),
    "linear_onecycle_schedule": (
        "OneCycleLR(three_phase=True, anneal_strategy='linear')", _linear_onecycle),
    "warmup_constant_schedule": (
        "LinearWarmup(start_factor=init/peak, total_iters=warmup_steps)", _warmup_constant),
    "join_schedules": ("SequentialLR(children, milestones=boundaries)", _join),
}
#: optax schedules refimpl has no equivalent of
NOT_IN_REFIMPL = ("piecewise_interpolate_schedule", "warmup_exponential_decay_schedule")


def _schedule_cases(name: str, steps: int) -> Callable[[int, int], Iterable[Case]]:
    _, make = SCHEDULE_MAP[name]

    def cases(seed: int, configs: int) -> Iterable[Case]:
        rng = generator(seed, name)
        for _ in range(configs + (1 if name in _EDGE_NAMES else 0)):
            config, build, explanations = make(rng, steps)
            yield _schedule_case(name, config, build, steps, explanations)
    return cases


#: schedules with a documented difference: one extra configuration, so a quick run sees it
_EDGE_NAMES = {"cosine_decay_schedule", "warmup_cosine_decay_schedule", "sgdr_schedule",
               "cosine_onecycle_schedule", "linear_onecycle_schedule"}


# -- reduce_on_plateau ----------------------------------------------------------------------
def _optax_plateau_rates(kwargs: dict, lr: float, losses: list[float]) -> list[float]:
    """``lr * scale`` after construction and after each loss."""
    import jax
    import jax.numpy as jnp
    import optax

    transform = optax.contrib.reduce_on_plateau(**kwargs)
    params = jnp.zeros(1, dtype=jnp.float64)
    state = transform.init(params)
    update = jax.jit(transform.update)
    rates = [lr * float(state.scale)]
    for loss in losses:
        _, state = update(params, state, value=loss)
        rates.append(lr * float(state.scale))
    return rates


def _our_plateau(kwargs: dict, lr: float, patience: int) -> schedulers.ReduceLROnPlateau:
    """refimpl's equivalent: min mode, rel threshold rtol (or abs atol), min_lr = lr *
    min_scale, eps 0 (optax's scale always takes max(scale * factor, min_scale))."""
    relative = kwargs["rtol"] > 0
    return schedulers.ReduceLROnPlateau(
        lr, mode="min", factor=kwargs["factor"], patience=patience,
        threshold=kwargs["rtol"] if relative else kwargs["atol"],
        threshold_mode="rel" if relative else "abs", cooldown=kwargs["cooldown"],
        min_lr=lr * kwargs["min_scale"], eps=0.0)


def _replay(rates: list[float], ours: Any, losses: list[float]) -> Comparison:
    """Compare their recorded rates with ours fed the same losses."""
    position = {"t": 0}

    def read(_):
        return rates[position["t"]]

    def feed(_, loss):
        position["t"] += 1

    return schedule_comparison(rates, ours, losses, read_lr=read, feed=feed,
                               label="optax.contrib.reduce_on_plateau")


def plateau_case(kwargs: dict, lr: float, losses: list[float]) -> Case:
    rates_box: list[list[float]] = []

    def rates() -> list[float]:
        if not rates_box:
            rates_box.append(_optax_plateau_rates(kwargs, lr, losses))
        return rates_box[0]

    def compare() -> Comparison:
        return _replay(rates(), _our_plateau(kwargs, lr, kwargs["patience"]), losses)

    def one_less(_: Comparison) -> bool:
        if kwargs["patience"] < 1:
            return False
        return _replay(rates(), _our_plateau(kwargs, lr, kwargs["patience"] - 1), losses).ok

    def at_improvements(_: Comparison) -> bool:
        """The bug's rule: multiply by ``factor`` exactly at the improving losses outside
        the cooldown (improvement judged as refimpl judges it); their rates follow it."""
        if kwargs["patience"] != 0:
            return False
        judge = _our_plateau(kwargs, lr, 0)
        expected, rate, best, cooling = [lr], lr, np.inf, 0
        for loss in losses:
            improved = judge.is_better(loss, best)
            best = loss if improved else best
            if cooling > 0:
                cooling -= 1
            elif improved:
                rate = max(rate * kwargs["factor"], lr * kwargs["min_scale"])
                cooling = kwargs["cooldown"]
            expected.append(rate)
        return bool(np.allclose(rates(), expected, rtol=1e-12, atol=0.0))

    text = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in kwargs.items())
    return Case("contrib.reduce_on_plateau", f"reduce_on_plateau({text}), lr={lr:.6g}, "
                f"{len(losses)} losses", compare,
                [(PLATEAU_EQUALS_PATIENCE, one_less), (PLATEAU_PATIENCE_ZERO, at_improvements)])


def random_plateau(rng: np.random.Generator, patience: int | None = None) -> dict:
    relative = rng.random() < 0.7
    return {"factor": float(rng.uniform(0.1, 0.9)),
            "patience": int(rng.integers(0, 8)) if patience is None else patience,
            "rtol": float(rng.choice([1e-4, 0.01])) if relative else 0.0,
            "atol": 0.0 if relative else float(rng.choice([1e-4, 0.01])),
            "cooldown": int(rng.integers(0, 4)),
            "min_scale": float(rng.choice([0.0, 1e-3]))}


def _plateau_cases(steps: int) -> Callable[[int, int], Iterable[Case]]:
    def cases(seed: int, configs: int) -> Iterable[Case]:
        rng = generator(seed, "contrib.reduce_on_plateau")
        edges = [plateau_case(random_plateau(rng, patience), log_uniform(rng, 1e-4, 1.0),
                              random_losses(steps, int(rng.integers(2**31))))
                 for patience in (0, 2)]
        yield from take(edges, lambda _: plateau_case(
            random_plateau(rng), log_uniform(rng, 1e-4, 1.0),
            random_losses(steps, int(rng.integers(2**31)))), configs)
    return cases


def catalogue(quick: bool = False) -> list[Subject]:
    from . import optax_optim

    steps = 60 if quick else 200
    subjects = [Subject(name, "schedule", ours=mapping, cases=_schedule_cases(name, steps))
                for name, (mapping, _) in SCHEDULE_MAP.items()]
    subjects += [Subject(name, "schedule", note="no refimpl equivalent")
                 for name in NOT_IN_REFIMPL]
    subjects.append(Subject("contrib.reduce_on_plateau", "schedule",
                            ours="ReduceLROnPlateau(patience=patience - 1, eps=0)",
                            cases=_plateau_cases(steps)))
    return subjects + optax_optim.optimizer_subjects(quick)
