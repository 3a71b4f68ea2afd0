"""optax's optimizers against refimpl's, through the function form of
:func:`~refimpl.crosscheck.check_optimizer` (docs/methods.md §2).

The argument mapping (``ours`` column of the report) is the documented one:

* ``sgd(lr, momentum, nesterov)`` is ``SGD(lr, momentum, nesterov, dampening=0)``; weight
  decay is ``chain(add_decayed_weights(wd), sgd(...))``, i.e. ``SGD(weight_decay=wd)``;
* ``adam``, ``adamax`` take ``b1, b2`` as ``betas`` and ``eps`` as is (both put ``eps``
  outside the root of the bias-corrected second moment), ``eps_root=0``;
* ``adamw(weight_decay=wd, mask=m)`` is ``AdamW`` with one parameter group per parameter,
  ``weight_decay=0`` for the parameters the mask leaves out;
* ``rmsprop(decay=alpha, eps_in_sqrt=False)`` is ``RMSprop(alpha, eps)`` (optax's default
  ``eps_in_sqrt=True`` puts ``eps`` inside the root: torch's and ours is outside), with
  ``centered`` and ``momentum`` as they are;
* ``adagrad(initial_accumulator_value, eps=0)`` and ``radam(eps=0)`` are ``Adagrad`` and
  ``RAdam`` with ``eps=0``: with ``eps > 0`` optax places it differently (findings);
* ``adadelta(rho, eps, weight_decay)`` is ``Adadelta`` with the same names;
* ``amsgrad`` is ``Adam(amsgrad=True)`` and ``nadam`` is ``NAdam``: both differ by design
  (findings), and are re-run against the variant optax documents.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ... import optim
from .common import generator, log_uniform, take
from .core import BY_DESIGN, Case, Comparison, Explanation, Subject

__all__ = ["AMSGRAD_CORRECTED_MAX", "NADAM_VARIANT", "OPTIMIZERS", "ROOT_EPS",
           "optimizer_subjects"]


# -- the documented variants, as refimpl optimizers -------------------------------------------
# Each replaces one rule of refimpl's class (its _update) by the one optax documents; the
# rest (groups, maximize, validation, explain's rule line) is the class's own.
def _moments(param: np.ndarray, grad: np.ndarray, state: dict, group: dict
             ) -> tuple[int, np.ndarray]:
    """``t += 1``; L2 weight decay; ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``
    (docs/methods.md (2.2)); returns ``t`` and the gradient used."""
    beta1, beta2 = group["betas"]
    if not state:
        state.update(step=0, exp_avg=np.zeros_like(param), exp_avg_sq=np.zeros_like(param))
    state["step"] += 1
    if group["weight_decay"]:
        grad = grad + group["weight_decay"] * param
    state["exp_avg"] += (1 - beta1) * (grad - state["exp_avg"])
    state["exp_avg_sq"] *= beta2
    state["exp_avg_sq"] += (1 - beta2) * grad * grad
    return state["step"], grad


class AdamMaxOfCorrected(optim.Adam):
    """AMSGrad as optax takes it: the running maximum of the *bias-corrected* second moment.

    ``v_hat = v / (1 - beta2^t)``, ``v_max <- max(v_max, v_hat)``,
    ``w <- w - lr m_hat / (sqrt(v_max) + eps)`` (refimpl's Adam, docs/methods.md (2.2),
    keeps the maximum of the raw ``v``, as torch does).
    """

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        beta1, beta2 = group["betas"]
        step, _ = _moments(param, grad, state, group)
        m_hat = state["exp_avg"] / (1 - beta1**step)
        v_hat = state["exp_avg_sq"] / (1 - beta2**step)
        v_max = state.setdefault("max_exp_avg_sq", np.zeros_like(param))
        np.maximum(v_max, v_hat, out=v_max)
        param -= group["lr"] * m_hat / (np.sqrt(v_max) + group["eps"])


class AdamNesterov(optim.Adam):
    """Adam with optax's Nesterov look-ahead (``optax.nadam``; no momentum-decay schedule).

    ``m_hat = beta1 m / (1 - beta1^(t+1)) + (1 - beta1) g / (1 - beta1^t)``,
    ``w <- w - lr m_hat / (sqrt(v / (1 - beta2^t)) + eps)`` (refimpl's NAdam, (2.5), is
    torch's, with the schedule ``mu_t``).
    """

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        beta1, beta2 = group["betas"]
        step, grad = _moments(param, grad, state, group)
        m_hat = (beta1 * (state["exp_avg"] / (1 - beta1 ** (step + 1)))
                 + (1 - beta1) * (grad / (1 - beta1**step)))
        v_hat = state["exp_avg_sq"] / (1 - beta2**step)
        param -= group["lr"] * m_hat / (np.sqrt(v_hat) + group["eps"])


class RAdamEpsOutside(optim.RAdam):
    """RAdam as optax writes it: ``eps`` added to ``sqrt(v_hat)`` (the bias-corrected
    moment), and the rectified step taken when ``rho_t >= 5``.

    ``w <- w - lr r_t m_hat / (sqrt(v / (1 - beta2^t)) + eps)`` (refimpl, as torch, adds
    ``eps`` to ``sqrt(v)`` and then scales by ``sqrt(1 - beta2^t)``, (2.6)).
    """

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        beta1, beta2 = group["betas"]
        step, _ = _moments(param, grad, state, group)
        m_hat = state["exp_avg"] / (1 - beta1**step)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * beta2**step / (1 - beta2**step)
        if rho_t >= 5.0:
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                    / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            v_hat = state["exp_avg_sq"] / (1 - beta2**step)
            param -= group["lr"] * rect * m_hat / (np.sqrt(v_hat) + group["eps"])
        else:
            param -= group["lr"] * m_hat


class AdagradEpsInRoot(optim.Adagrad):
    """Adagrad with ``eps`` inside the root, as optax: ``w <- w - lr g / sqrt(s + eps)``
    (0 where ``s = 0``); refimpl, as torch, divides by ``sqrt(s) + eps`` (2.8)."""

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        if "sum" not in state:
            state.update(step=0, sum=np.full_like(param, self.defaults[
                "initial_accumulator_value"]))
        state["step"] += 1
        accumulator = state["sum"]
        accumulator += grad * grad
        with np.errstate(divide="ignore"):
            scale = np.where(accumulator > 0, 1 / np.sqrt(accumulator + group["eps"]), 0.0)
        param -= group["lr"] * scale * grad


# -- findings ---------------------------------------------------------------------------------
AMSGRAD_CORRECTED_MAX = Explanation(
    key="optax-amsgrad-max-of-corrected-moment",
    verdict=BY_DESIGN,
    summary=(
        "`optax.amsgrad` keeps the running maximum of the bias-corrected second moment "
        "`v / (1 - b2^t)`; torch's `Adam(amsgrad=True)`, and refimpl's, keep the maximum of "
        "the raw `v` and bias-correct it after (docs/methods.md (2.2)). Re-run against "
        "refimpl's Adam with the maximum taken of `v_hat`, the two agree."),
    reference="docs/methods.md §2 (Adam, (2.2))",
    reproduction='''\
import jax
import jax.numpy as jnp
import numpy as np
import optax

from refimpl.optim import Adam

grads = [np.array([1.0]), np.array([0.1]), np.array([0.1])]
with jax.enable_x64(True):
    transform = optax.amsgrad(0.1)
    params = [jnp.zeros(1)]
    state = transform.init(params)
    for g in grads:
        updates, state = transform.update([jnp.asarray(g)], state, params)
        params = optax.apply_updates(params, updates)
    theirs = float(params[0][0])
ours = [np.zeros(1)]
adam = Adam(ours, lr=0.1, amsgrad=True)
for g in grads:
    adam.step([g])
# v_hat falls after the large first gradient, the raw v's maximum does not
assert abs(theirs - ours[0][0]) > 1e-3
''')

NADAM_VARIANT = Explanation(
    key="optax-nadam-is-adam-with-nesterov",
    verdict=BY_DESIGN,
    summary=(
        "`optax.nadam` is Adam with a Nesterov look-ahead on the bias-corrected first "
        "moment, `b1 m / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t)`, and no momentum "
        "schedule; torch's `NAdam`, and refimpl's, follow Dozat with the schedule "
        "`mu_t = b1 (1 - 0.5 * 0.96^(t psi))` (docs/methods.md (2.5)), which no `psi` "
        "turns into optax's. Re-run against that look-ahead written over refimpl's Adam, "
        "the two agree."),
    reference="docs/methods.md §2 (NAdam, (2.5))",
    reproduction='''\
import jax
import jax.numpy as jnp
import numpy as np
import optax

from refimpl.optim import NAdam

with jax.enable_x64(True):
    transform = optax.nadam(0.1)
    params = [jnp.zeros(1)]
    state = transform.init(params)
    updates, state = transform.update([jnp.ones(1)], state, params)
    theirs = float(optax.apply_updates(params, updates)[0][0])
# first step, g = 1: m_hat = 0.9 * 0.1 / (1 - 0.9**2) + 0.1 / 0.1 = 1.47368..., v_hat = 1
assert abs(theirs - -0.1 * (0.09 / 0.19 + 1) / (1 + 1e-8)) < 1e-15
for psi in (0.0, 0.004, 0.1):          # torch's schedule: mu_1 = 0.9 (1 - 0.96^psi / 2)
    ours = [np.zeros(1)]
    NAdam(ours, lr=0.1, momentum_decay=psi).step([np.ones(1)])
    assert abs(ours[0][0] - theirs) > 0.04            # about -0.106 against -0.147
''')

ROOT_EPS = Explanation(
    key="optax-eps-placement",
    verdict=BY_DESIGN,
    summary=(
        "`optax.adagrad` adds `eps` inside the root, `g / sqrt(s + eps)`, and `optax.radam` "
        "adds it to the root of the bias-corrected moment, `sqrt(v / (1 - b2^t)) + eps`; "
        "torch and refimpl divide by `sqrt(s) + eps` (Adagrad, (2.8)) and by `sqrt(v) + "
        "eps` before the bias correction (RAdam, (2.6)). With `eps = 0` they agree; with "
        "`eps > 0`, re-run against refimpl's optimizer with optax's placement, they agree."),
    reference="docs/methods.md §2 ((2.6), (2.8))",
    reproduction='''\
import jax
import jax.numpy as jnp
import numpy as np
import optax

from refimpl.optim import Adagrad

with jax.enable_x64(True):
    transform = optax.adagrad(1.0, initial_accumulator_value=0.0, eps=0.01)
    params = [jnp.zeros(1)]
    state = transform.init(params)
    updates, state = transform.update([jnp.full(1, 0.1)], state, params)
    theirs = float(optax.apply_updates(params, updates)[0][0])
ours = [np.zeros(1)]
Adagrad(ours, lr=1.0, eps=0.01).step([np.full(1, 0.1)])
assert abs(theirs - -0.1 / np.sqrt(0.01 + 0.01)) < 1e-12      # g / sqrt(s + eps)
assert abs(ours[0][0] - -0.1 / (0.1 + 0.01)) < 1e-12           # g / (sqrt(s) + eps)
''')


# -- the catalogue ------------------------------------------------------------------------------
def _optax_function(transform, label: str) -> Callable:
    """``theirs(params, grads) -> new params`` of an optax transformation (jit-compiled)."""
    import jax
    import jax.numpy as jnp
    import optax

    update = jax.jit(transform.update)
    box: dict[str, Any] = {}

    def theirs(params, grads):
        current = [jnp.asarray(p) for p in params]
        if "state" not in box:
            box["state"] = transform.init(current)
        updates, box["state"] = update([jnp.asarray(g) for g in grads], box["state"], current)
        return [np.asarray(p) for p in optax.apply_updates(current, updates)]

    theirs.__name__ = label
    return theirs


def _sgd(rng, flags):
    import optax

    lr = log_uniform(rng, 1e-4, 0.1)
    momentum = float(rng.uniform(0.1, 0.99)) if flags["momentum"] else None
    nesterov = bool(flags["nesterov"] and flags["momentum"])
    wd = log_uniform(rng, 1e-4, 0.1) if flags["weight_decay"] else 0.0
    config = {"learning_rate": lr, "momentum": momentum, "nesterov": nesterov,
              "weight_decay": wd}

    def build(params):
        sgd = optax.sgd(lr, momentum=momentum, nesterov=nesterov)
        theirs = optax.chain(optax.add_decayed_weights(wd), sgd) if wd else sgd
        return theirs, optim.SGD(params, lr=lr, momentum=momentum or 0.0, nesterov=nesterov,
                                 weight_decay=wd)
    return config, build


def _adam_numbers(rng) -> dict:
    return {"learning_rate": log_uniform(rng, 1e-4, 0.1), "b1": float(rng.uniform(0.5, 0.99)),
            "b2": float(rng.uniform(0.9, 0.9999)), "eps": log_uniform(rng, 1e-10, 1e-6)}


def _adam_like(optax_name: str, ours_class: type, **extra):
    def make(rng, flags):
        import optax

        config = _adam_numbers(rng)

        def build(params):
            return (getattr(optax, optax_name)(**config),
                    ours_class(params, lr=config["learning_rate"],
                               betas=(config["b1"], config["b2"]), eps=config["eps"], **extra))
        return config, build
    return make


def _adamw(rng, flags):
    import optax

    config = {**_adam_numbers(rng), "weight_decay": log_uniform(rng, 1e-4, 0.1)}
    mask = [True, False] if flags["mask"] else None

    def build(params):
        decays = [config["weight_decay"] if mask is None or mask[i] else 0.0
                  for i in range(len(params))]
        groups = [{"params": [p], "weight_decay": wd} for p, wd in zip(params, decays)]
        return (optax.adamw(**config, mask=mask),
                optim.AdamW(groups, lr=config["learning_rate"],
                            betas=(config["b1"], config["b2"]), eps=config["eps"]))
    return {**config, "mask": mask}, build


def _rmsprop(rng, flags):
    import optax

    config = {"learning_rate": log_uniform(rng, 1e-4, 0.1),
              "decay": float(rng.uniform(0.8, 0.999)), "eps": log_uniform(rng, 1e-10, 1e-6),
              "centered": bool(flags["centered"]),
              "momentum": float(rng.uniform(0.1, 0.95)) if flags["momentum"] else None}

    def build(params):
        return (optax.rmsprop(**config, eps_in_sqrt=False),
                optim.RMSprop(params, lr=config["learning_rate"], alpha=config["decay"],
                              eps=config["eps"], centered=config["centered"],
                              momentum=config["momentum"] or 0.0))
    return config, build


def _adagrad(rng, flags):
    import optax

    config = {"learning_rate": log_uniform(rng, 1e-4, 0.1),
              "initial_accumulator_value": float(rng.uniform(0.01, 1.0)),
              "eps": log_uniform(rng, 1e-10, 1e-6) if flags["eps"] else 0.0}

    def build(params):
        return optax.adagrad(**config), optim.Adagrad(
            params, lr=config["learning_rate"],
            initial_accumulator_value=config["initial_accumulator_value"], eps=config["eps"])
    return config, build


def _radam(rng, flags):
    import optax

    config = {**_adam_numbers(rng), "eps": log_uniform(rng, 1e-10, 1e-6) if flags["eps"]
              else 0.0}

    def build(params):
        return optax.radam(**config), optim.RAdam(
            params, lr=config["learning_rate"], betas=(config["b1"], config["b2"]),
            eps=config["eps"])
    return config, build


def _adadelta(rng, flags):
    import optax

    config = {"learning_rate": float(rng.uniform(0.1, 1.0)), "rho": float(rng.uniform(0.5, 0.99)),
              "eps": log_uniform(rng, 1e-8, 1e-5),
              "weight_decay": log_uniform(rng, 1e-4, 0.1) if flags["weight_decay"] else 0.0}

    def build(params):
        return optax.adadelta(**config), optim.Adadelta(
            params, lr=config["learning_rate"], rho=config["rho"], eps=config["eps"],
            weight_decay=config["weight_decay"])
    return config, build


#: optax optimizer -> (refimpl's equivalent, its boolean flags, configuration maker,
#: the documented variant (refimpl optimizer class) and its finding, if it differs)
OPTIMIZERS: dict[str, tuple[str, tuple[str, ...], Callable, type | None,
                            Explanation | None]] = {
    "sgd": ("SGD(dampening=0)", ("momentum", "nesterov", "weight_decay"), _sgd, None, None),
    "adam": ("Adam", (), _adam_like("adam", optim.Adam), None, None),
    "adamw": ("AdamW, masked parameters in a group with weight_decay=0", ("mask",), _adamw,
              None, None),
    "adamax": ("Adamax", (), _adam_like("adamax", optim.Adamax), None, None),
    "amsgrad": ("Adam(amsgrad=True)", (), _adam_like("amsgrad", optim.Adam, amsgrad=True),
                AdamMaxOfCorrected, AMSGRAD_CORRECTED_MAX),
    "nadam": ("NAdam", (), _adam_like("nadam", optim.NAdam), AdamNesterov, NADAM_VARIANT),
    "radam": ("RAdam (eps=0)", ("eps",), _radam, RAdamEpsOutside, ROOT_EPS),
    "rmsprop": ("RMSprop (eps_in_sqrt=False)", ("centered", "momentum"), _rmsprop, None, None),
    "adagrad": ("Adagrad (eps=0)", ("eps",), _adagrad, AdagradEpsInRoot, ROOT_EPS),
    "adadelta": ("Adadelta", ("weight_decay",), _adadelta, None, None),
}


def _comparison(theirs_transform, ours, label: str, start: list[np.ndarray], grads: list,
                ) -> Comparison:
    from ..optimizers import check_optimizer
    from .torch_numeric import OPTIMIZER_RTOL, optimizer_atol

    theirs = _optax_function(theirs_transform, f"optax.{label}")
    result = check_optimizer(theirs, ours, grads, rtol=OPTIMIZER_RTOL,
                             atol=optimizer_atol(start))
    return Comparison(bool(result.ok), str(result), result)


def _as_variant(ours: Any, variant: type) -> Any:
    """A fresh optimizer of class ``variant`` with ``ours``'s groups (hyper-parameters)."""
    accepted = inspect.signature(variant).parameters
    groups = [{k: v for k, v in group.items() if k == "params" or k in accepted}
              for group in ours.param_groups]
    return variant(groups, **{k: v for k, v in ours.defaults.items() if k in accepted})


def optimizer_case(name: str, flags: dict, rng: np.random.Generator, steps: int) -> Case:
    _, _, make, variant, explanation = OPTIMIZERS[name]
    config, build = make(rng, flags)
    seed = int(rng.integers(2**31))

    def data() -> tuple[list[np.ndarray], list]:
        draws = np.random.default_rng(seed)
        shapes = [(4, 3), (3,)]
        start = [draws.standard_normal(shape) for shape in shapes]
        return start, [[draws.standard_normal(s) for s in shapes] for _ in range(steps)]

    def compare() -> Comparison:
        start, grads = data()
        theirs, ours = build([p.copy() for p in start])
        return _comparison(theirs, ours, name, start, grads)

    explanations = []
    if variant is not None:
        def holds(_: Comparison) -> bool:
            start, grads = data()
            theirs, ours = build([p.copy() for p in start])
            return _comparison(theirs, _as_variant(ours, variant), name, start, grads).ok
        explanations.append((explanation, holds))
    text = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in config.items())
    return Case(f"{name}", f"optax.{name}({text}); {steps} steps, seed {seed}", compare,
                explanations)


def _cases(name: str, steps: int) -> Callable[[int, int], Iterable[Case]]:
    flag_names = OPTIMIZERS[name][1]

    def cases(seed: int, configs: int) -> Iterable[Case]:
        rng = generator(seed, f"optax {name}")
        edges = [optimizer_case(name, dict(zip(flag_names, values)), rng, steps)
                 for values in itertools.product((False, True), repeat=len(flag_names))]
        yield from take(edges, lambda _: optimizer_case(
            name, {flag: bool(rng.random() < 0.5) for flag in flag_names}, rng, steps),
            configs)
    return cases


def optimizer_subjects(quick: bool = False) -> list[Subject]:
    steps = 30 if quick else 200
    return [Subject(name, "optimizer", ours=ours, cases=_cases(name, steps))
            for name, (ours, *_) in OPTIMIZERS.items()]
