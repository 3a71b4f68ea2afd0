"""torch's optimizers and ops against refimpl's (docs/methods.md §1 and §2).

Optimizers: every class refimpl has, over every combination of its flags (``maximize``,
``amsgrad``, ``nesterov``, ``centered``, decoupled weight decay, ...; numeric
hyper-parameters drawn from the seed), then random configurations; 200 steps of the same
random float64 gradients through :func:`~refimpl.crosscheck.check_optimizer`, rtol 1e-12.
Ops: forward and backward through :func:`~refimpl.crosscheck.check_op` with
:func:`~refimpl.crosscheck.torch_op`, in float32 and float64, on random shapes.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ... import optim
from .common import generator, log_uniform, take
from .core import BY_DESIGN, Case, Comparison, Explanation, Subject

__all__ = ["NADAM_MU_PRODUCT", "OPTIMIZER_FLAGS", "op_subjects", "optimizer_subjects"]

NADAM_MU_PRODUCT = Explanation(
    key="torch-nadam-mu-product-float32",
    verdict=BY_DESIGN,
    summary=(
        "torch's `NAdam` keeps the running product of its momentum schedule, "
        "`mu_product`, in torch's default dtype (float32 unless set), so float64 parameters "
        "drift from refimpl, which keeps it in float64, by float32 rounding. Under "
        "`torch.set_default_dtype(torch.float64)` the two agree to 1e-12."),
    reference="docs/methods.md §2 (NAdam, (2.5))",
    reproduction='''\
import numpy as np
import torch

from refimpl.optim import NAdam


def run(default_dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default_dtype)
    try:
        rng = np.random.default_rng(0)
        w = rng.standard_normal(4)
        theirs = torch.tensor(w.copy(), requires_grad=True)
        optimizer = torch.optim.NAdam([theirs], lr=0.01)
        ours = [w.copy()]
        mine = NAdam(ours, lr=0.01)
        for _ in range(50):
            g = rng.standard_normal(4)
            theirs.grad = torch.tensor(g.copy())
            optimizer.step()
            mine.step([g])
        return np.max(np.abs(ours[0] - theirs.detach().numpy()) / np.abs(ours[0]))
    finally:
        torch.set_default_dtype(previous)


assert run(torch.float32) > 1e-10      # float32 mu_product: parts at float32 rounding
assert run(torch.float64) < 1e-12      # float64 mu_product: the same numbers
''')


# -- optimizers -------------------------------------------------------------------------------
#: class -> flag -> the values every combination takes
OPTIMIZER_FLAGS: dict[str, dict[str, tuple]] = {
    "SGD": {"momentum": (0.0, "draw"), "nesterov": (False, True), "dampening": (0.0, "draw"),
            "weight_decay": (0.0, "draw"), "maximize": (False, True)},
    "Adam": {"amsgrad": (False, True), "weight_decay": (0.0, "draw"),
             "decoupled_weight_decay": (False, True), "maximize": (False, True)},
    "AdamW": {"amsgrad": (False, True), "maximize": (False, True)},
    "Adamax": {"weight_decay": (0.0, "draw"), "maximize": (False, True)},
    "NAdam": {"weight_decay": (0.0, "draw"), "decoupled_weight_decay": (False, True),
              "maximize": (False, True)},
    "RAdam": {"weight_decay": (0.0, "draw"), "decoupled_weight_decay": (False, True),
              "maximize": (False, True)},
    "RMSprop": {"centered": (False, True), "momentum": (0.0, "draw"),
                "weight_decay": (0.0, "draw"), "maximize": (False, True)},
    "Adagrad": {"lr_decay": (0.0, "draw"), "initial_accumulator_value": (0.0, "draw"),
                "weight_decay": (0.0, "draw"), "maximize": (False, True)},
    "Adadelta": {"weight_decay": (0.0, "draw"), "maximize": (False, True)},
}
#: torch optimizers refimpl does not implement
NOT_IN_REFIMPL = ("ASGD", "Adafactor", "LBFGS", "Muon", "Rprop", "SparseAdam")


def _draw(name: str, flag: str, rng: np.random.Generator) -> Any:
    """A random non-default value of a numeric flag (``"draw"`` in :data:`OPTIMIZER_FLAGS`)."""
    if flag == "momentum":
        return float(rng.uniform(0.1, 0.99))
    if flag == "dampening":
        return float(rng.uniform(0.05, 0.9))
    if flag == "weight_decay":
        return log_uniform(rng, 1e-4, 0.1)
    if flag == "lr_decay":
        return log_uniform(rng, 1e-4, 0.1)
    if flag == "initial_accumulator_value":
        return float(rng.uniform(0.01, 1.0))
    raise ValueError(f"no draw for {name}.{flag}")


def _numbers(name: str, rng: np.random.Generator) -> dict[str, Any]:
    """The numeric hyper-parameters that are not flags, drawn in their usual ranges."""
    kwargs: dict[str, Any] = {"lr": log_uniform(rng, 1e-4, 0.1)}
    if name in ("Adam", "AdamW", "Adamax", "NAdam", "RAdam"):
        kwargs["betas"] = (float(rng.uniform(0.5, 0.99)), float(rng.uniform(0.9, 0.9999)))
        kwargs["eps"] = log_uniform(rng, 1e-10, 1e-6)
    if name == "NAdam":
        kwargs["momentum_decay"] = log_uniform(rng, 1e-3, 1e-2)
    if name == "RMSprop":
        kwargs["alpha"] = float(rng.uniform(0.8, 0.999))
        kwargs["eps"] = log_uniform(rng, 1e-10, 1e-6)
    if name == "Adagrad":
        kwargs["eps"] = log_uniform(rng, 1e-12, 1e-8)
    if name == "Adadelta":
        kwargs["rho"] = float(rng.uniform(0.5, 0.99))
        kwargs["eps"] = log_uniform(rng, 1e-8, 1e-5)
        kwargs["lr"] = float(rng.uniform(0.1, 1.0))
    return kwargs


def _valid(name: str, flags: dict[str, Any]) -> bool:
    """torch's constraints between flags (SGD's Nesterov needs momentum, no dampening);
    combinations it refuses are skipped, not counted."""
    if name == "SGD" and flags["nesterov"]:
        return flags["momentum"] != 0.0 and flags["dampening"] == 0.0
    return True


def flag_combinations(name: str, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
    """Every combination of ``name``'s flags that torch accepts, numbers drawn."""
    flags = OPTIMIZER_FLAGS[name]
    for values in itertools.product(*flags.values()):
        chosen = {flag: (_draw(name, flag, rng) if value == "draw" else value)
                  for flag, value in zip(flags, values)}
        if _valid(name, chosen):
            yield {**_numbers(name, rng), **chosen}


def random_flags(name: str, rng: np.random.Generator) -> dict[str, Any]:
    """One random combination, torch's constraints met."""
    while True:
        flags = {flag: rng.choice(len(values)) for flag, values in OPTIMIZER_FLAGS[name].items()}
        chosen = {flag: (_draw(name, flag, rng) if OPTIMIZER_FLAGS[name][flag][index] == "draw"
                         else OPTIMIZER_FLAGS[name][flag][index])
                  for flag, index in flags.items()}
        if _valid(name, chosen):
            return {**_numbers(name, rng), **chosen}


@contextlib.contextmanager
def default_dtype(dtype):
    """torch's default dtype set inside the block only."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def optimizer_comparison(name: str, kwargs: dict, steps: int, seed: int) -> Comparison:
    """Same random float64 gradients through torch's ``name`` and ours; every parameter
    after every step within 1e-12."""
    import torch

    from ..optimizers import check_optimizer

    rng = np.random.default_rng(seed)
    shapes = [(5, 3), (3,)]
    start = [rng.standard_normal(shape) for shape in shapes]
    grads = [[rng.standard_normal(shape) for shape in shapes] for _ in range(steps)]
    theirs_params = [torch.tensor(p.copy(), requires_grad=True) for p in start]
    theirs = getattr(torch.optim, name)(theirs_params, **kwargs)
    ours = getattr(optim, name)([p.copy() for p in start], **kwargs)
    result = check_optimizer(theirs, ours, grads, rtol=OPTIMIZER_RTOL,
                             atol=optimizer_atol(start))
    return Comparison(bool(result.ok), str(result), result)


#: Relative bound of the optimizer comparisons (float64 parameters).
OPTIMIZER_RTOL = 1e-12


def optimizer_atol(params: list[np.ndarray]) -> float:
    """``rtol * max |w0|``: an entry is computed from terms the size of the parameters
    (``w - lr * update``), so an entry passing near zero carries their rounding, not its
    own; this bound accepts a few ulps of those terms and nothing larger."""
    return OPTIMIZER_RTOL * max(float(np.max(np.abs(p))) for p in params)


def _under_float64_default(name: str, kwargs: dict, steps: int, seed: int
                           ) -> Callable[[Comparison], bool]:
    def holds(_: Comparison) -> bool:
        import torch

        with default_dtype(torch.float64):
            return optimizer_comparison(name, kwargs, steps, seed).ok
    return holds


def optimizer_case(name: str, kwargs: dict, steps: int, seed: int) -> Case:
    explanations = []
    if name == "NAdam":
        explanations.append((NADAM_MU_PRODUCT, _under_float64_default(name, kwargs, steps,
                                                                      seed)))
    config = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in kwargs.items())
    return Case(name, f"{config}; {steps} steps, seed {seed}",
                lambda: optimizer_comparison(name, kwargs, steps, seed), explanations)


def _optimizer_cases(name: str, steps: int) -> Callable[[int, int], Iterable[Case]]:
    def cases(seed: int, configs: int) -> Iterable[Case]:
        rng = generator(seed, f"optimizer {name}")
        edges = [optimizer_case(name, kwargs, steps, int(rng.integers(2**31)))
                 for kwargs in flag_combinations(name, rng)]
        yield from take(edges, lambda _: optimizer_case(name, random_flags(name, rng), steps,
                                                        int(rng.integers(2**31))), configs)
    return cases


def optimizer_subjects(quick: bool = False) -> list[Subject]:
    steps = 30 if quick else 200
    subjects = [Subject(name, "optimizer", ours=f"refimpl.optim.{name}",
                        cases=_optimizer_cases(name, steps)) for name in OPTIMIZER_FLAGS]
    return subjects + [Subject(name, "optimizer", note="no refimpl equivalent")
                       for name in NOT_IN_REFIMPL]


# -- ops --------------------------------------------------------------------------------------
def _conv_inputs(rng: np.random.Generator, dtype) -> tuple[list[np.ndarray], dict]:
    n, c_in, c_out = (int(rng.integers(1, m)) for m in (4, 5, 6))
    k, stride, padding = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 2))
    h, w = (int(rng.integers(k, 10)) for _ in range(2))
    arrays = [rng.standard_normal((n, c_in, h, w)), rng.standard_normal((c_out, c_in, k, k)),
              rng.standard_normal(c_out)]
    return [a.astype(dtype) for a in arrays], {"stride": stride, "padding": padding}


def _dense_inputs(rng: np.random.Generator, dtype) -> tuple[list[np.ndarray], dict]:
    n, d_in, d_out = (int(rng.integers(1, m)) for m in (9, 11, 11))
    arrays = [rng.standard_normal((n, d_in)), rng.standard_normal((d_in, d_out)),
              rng.standard_normal(d_out)]
    return [a.astype(dtype) for a in arrays], {}


def _pool_inputs(rng: np.random.Generator, dtype) -> tuple[list[np.ndarray], dict]:
    k = int(rng.integers(1, 4))
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4)), k * int(rng.integers(1, 5)),
             k * int(rng.integers(1, 5)))
    return [rng.standard_normal(shape).astype(dtype)], {"k": k}


def _elementwise_inputs(rng: np.random.Generator, dtype) -> tuple[list[np.ndarray], dict]:
    shape = (int(rng.integers(1, 6)), int(rng.integers(1, 8)))
    return [(3 * rng.standard_normal(shape)).astype(dtype)], {}


def _cross_entropy_inputs(rng: np.random.Generator, dtype) -> tuple[list[np.ndarray], dict]:
    n, classes = int(rng.integers(1, 9)), int(rng.integers(2, 8))
    logits = (3 * rng.standard_normal((n, classes))).astype(dtype)
    return [logits, rng.integers(0, classes, size=n)], {}


def _mse_inputs(rng: np.random.Generator, dtype) -> tuple[list[np.ndarray], dict]:
    shape = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    return [rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)], {}


#: torch's function -> (our op name, input generator)
OPS: dict[str, tuple[str, Callable]] = {
    "F.conv2d": ("conv2d", _conv_inputs),
    "F.linear": ("dense", _dense_inputs),
    "F.max_pool2d": ("maxpool2d", _pool_inputs),
    "torch.relu": ("relu", _elementwise_inputs),
    "torch.tanh": ("tanh", _elementwise_inputs),
    "torch.sigmoid": ("sigmoid", _elementwise_inputs),
    "torch.sin": ("sin", _elementwise_inputs),
    "torch.cos": ("cos", _elementwise_inputs),
    "F.cross_entropy": ("softmax_cross_entropy", _cross_entropy_inputs),
    "F.mse_loss": ("mse", _mse_inputs),
}


def op_case(subject: str, op: str, inputs: list[np.ndarray], args: dict, seed: int) -> Case:
    def compare() -> Comparison:
        from ..op_adapters import torch_op
        from ..ops import check_op

        result = check_op(op, *torch_op(op), inputs=inputs, seed=seed, **args)
        return Comparison(bool(result.ok), str(result), result)

    shapes = ", ".join(str(tuple(a.shape)) for a in inputs)
    extra = "".join(f", {k}={v}" for k, v in args.items())
    return Case(subject, f"{op} {inputs[0].dtype}: inputs {shapes}{extra}", compare)


def _op_cases(subject: str) -> Callable[[int, int], Iterable[Case]]:
    op, make_inputs = OPS[subject]

    def cases(seed: int, configs: int) -> Iterable[Case]:
        rng = generator(seed, f"op {subject}")
        for _ in range(max(configs, 1)):
            case_seed = int(rng.integers(2**31))
            for dtype in (np.float32, np.float64):
                inputs, args = make_inputs(np.random.default_rng(case_seed), dtype)
                yield op_case(subject, op, inputs, args, case_seed)
    return cases


def op_subjects(quick: bool = False) -> list[Subject]:
    del quick  # ops are quick at any size drawn here
    return [Subject(name, "op", ours=f"refimpl.ops ({op})", cases=_op_cases(name))
            for name, (op, _) in OPS.items()]
