"""refimpl.crosscheck.check_optimizer (the same gradients in, parameters compared after every
update) and ``explain()`` on every refimpl optimizer (the numbers of the last update)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from refimpl import optim
from refimpl.crosscheck import OptimizerCheckResult, check_optimizer

SHAPES = [(3, 4), (5,), (2, 1, 3)]
STEPS = 200
# Float64 entries are computed from terms the size of the parameters (O(1): standard-normal
# starts), so two correct implementations that group the same operations differently differ
# by about an ulp of those terms (2e-16), which is a large *relative* difference for an entry
# passing near zero (test_an_element_wise_bound_fails_rounding_near_zero shows one). The
# checks below use check_optimizer's default: the project's float64 1e-12 (float32 1e-5),
# relative to each parameter's largest entry (the norm-wise bound).


@pytest.fixture
def torch64():
    """torch, with its default dtype float64 for one test: torch keeps scalar state (NAdam's
    mu_product) in the default dtype, and ours is float64."""
    torch = pytest.importorskip("torch", reason="the cross-check against torch.optim needs torch")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield torch
    finally:
        torch.set_default_dtype(previous)


def _problem(seed: int, shapes=SHAPES, steps: int = STEPS, dtype=np.float64):
    rng = np.random.default_rng(seed)
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    return start, grads


def _groups(arrays):
    """Two groups, the first with its own rate: the parameter order crosses a group edge."""
    return [{"params": arrays[:2], "lr": 0.03}, {"params": arrays[2:]}]


def _pair(torch, name: str, config: dict, start):
    theirs = getattr(torch.optim, name)(_groups([torch.tensor(p) for p in start]), **config)
    ours = getattr(optim, name)(_groups([p.copy() for p in start]), **config)
    return theirs, ours


# -- acceptance: nothing between torch's optimizers and ours, over every flag --------------------
def _product(name: str, **choices):
    keys = list(choices)
    configs = [dict(zip(keys, values)) for values in itertools.product(*choices.values())]
    if name == "SGD":  # torch and ours refuse nesterov without momentum or with dampening
        configs = [c for c in configs
                   if not (c["nesterov"] and (c["momentum"] == 0 or c["dampening"] != 0))]
    return [(name, c) for c in configs]


BETAS = [(0.9, 0.999), (0.3, 0.8)]  # the second puts RAdam's rho_inf at 9, near its cut of 5
EVERY_COMBINATION = (
    _product("SGD", lr=[0.05], momentum=[0.0, 0.9], dampening=[0.0, 0.3],
             nesterov=[False, True], weight_decay=[0.0, 0.1], maximize=[False, True])
    + _product("Adam", lr=[0.01], amsgrad=[False, True], weight_decay=[0.0, 0.1],
               decoupled_weight_decay=[False, True], maximize=[False, True])
    + _product("AdamW", lr=[0.01], amsgrad=[False, True], weight_decay=[0.0, 0.1],
               maximize=[False, True])
    + _product("Adamax", lr=[0.01], betas=BETAS, weight_decay=[0.0, 0.1],
               maximize=[False, True])
    + _product("NAdam", lr=[0.01], betas=BETAS, momentum_decay=[4e-3, 0.1],
               weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True],
               maximize=[False, True])
    + _product("RAdam", lr=[0.01], betas=BETAS, weight_decay=[0.0, 0.1],
               decoupled_weight_decay=[False, True], maximize=[False, True])
    + _product("RMSprop", lr=[0.01], alpha=[0.99, 0.5], momentum=[0.0, 0.9],
               centered=[False, True], weight_decay=[0.0, 0.1], maximize=[False, True])
    + _product("Adagrad", lr=[0.05], lr_decay=[0.0, 0.05], initial_accumulator_value=[0.0, 0.5],
               weight_decay=[0.0, 0.1], maximize=[False, True])
    + _product("Adadelta", lr=[1.0, 0.1], rho=[0.9, 0.5], weight_decay=[0.0, 0.1],
               maximize=[False, True])
)
# every flag on at least once, and all of a class's flags together: the fast set
EVERY_FLAG = [
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1,
             "maximize": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1,
             "maximize": True}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    ("Adamax", {"lr": 0.01}),
    ("Adamax", {"lr": 0.01, "betas": (0.3, 0.8), "weight_decay": 0.1, "maximize": True}),
    ("NAdam", {"lr": 0.01}),
    ("NAdam", {"lr": 0.01, "momentum_decay": 0.1, "weight_decay": 0.1, "maximize": True}),
    ("NAdam", {"lr": 0.01, "betas": (0.3, 0.8), "weight_decay": 0.1,
               "decoupled_weight_decay": True}),
    ("RAdam", {"lr": 0.01}),
    ("RAdam", {"lr": 0.01, "betas": (0.3, 0.8), "weight_decay": 0.1, "maximize": True}),
    ("RAdam", {"lr": 0.01, "betas": (0.3, 0.8), "weight_decay": 0.1,
               "decoupled_weight_decay": True}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.5, "momentum": 0.9, "weight_decay": 0.1,
                 "maximize": True}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.9}),
    ("Adagrad", {"lr": 0.05}),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.05, "initial_accumulator_value": 0.5,
                 "weight_decay": 0.1, "maximize": True}),
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.1, "rho": 0.5, "weight_decay": 0.1, "maximize": True}),
]


def _case_id(case) -> str:
    name, config = case
    return name + ":" + ",".join(f"{k}={v}" for k, v in config.items())


def _check_against_torch(torch, case, seed: int) -> OptimizerCheckResult:
    name, config = case
    start, grads = _problem(seed)
    theirs, ours = _pair(torch, name, config, start)
    result = check_optimizer(theirs, ours, grads)
    assert result.ok, str(result)
    assert result.steps == STEPS and result.params == 3
    assert result.subject == f"{name} vs torch.optim.{name.lower()}.{name}"
    moved = [ours.param_groups[0]["params"][0], start[0]]
    assert not np.allclose(*moved)  # the updates did something
    return result


@pytest.mark.torch
@pytest.mark.parametrize("case", EVERY_FLAG, ids=[_case_id(c) for c in EVERY_FLAG])
def test_torch_and_ours_agree_for_every_flag(torch64, case):
    _check_against_torch(torch64, case, seed=len(_case_id(case)))


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("case", EVERY_COMBINATION, ids=[_case_id(c) for c in EVERY_COMBINATION])
def test_torch_and_ours_agree_for_every_flag_combination(torch64, case):
    _check_against_torch(torch64, case, seed=len(_case_id(case)) + 1)


@pytest.mark.torch
def test_an_element_wise_bound_fails_rounding_near_zero(torch64):
    """Element-wise, plain SGD "differs" at an entry near zero by a fraction of an ulp of
    the parameter's scale: torch's CPU kernel fuses ``p + (-lr) g`` into one rounding, ours
    rounds ``lr g`` first. The report says it is rounding-sized; the default (norm-wise)
    bound passes the same run."""
    start, grads = _problem(seed=0)
    theirs, ours = _pair(torch64, "SGD", {"lr": 0.05}, start)
    result = check_optimizer(theirs, ours, grads, relative_to="element")
    assert not result.ok and result.bound == "rtol" and result.rtol == 1e-12
    assert abs(result.theirs) < 1e-3 * result.scale  # an entry near zero
    assert abs(result.ours - result.theirs) <= 2 * result.ulp  # of the parameter's scale
    assert "rounding-sized" in str(result)
    theirs, ours = _pair(torch64, "SGD", {"lr": 0.05}, start)
    assert check_optimizer(theirs, ours, grads).ok


# -- a planted difference is found where it was planted ------------------------------------------
@pytest.mark.torch
def test_a_change_planted_at_step_37_is_found_there(torch64):
    torch = torch64
    start, grads = _problem(seed=5)
    tensors = [torch.tensor(p) for p in start]
    adam = torch.optim.Adam(tensors, lr=0.01)
    updates = 0

    def feed(optimizer, step_grads):
        """torch's Adam, with one element moved by 1e-9 after the 37th update."""
        nonlocal updates
        for tensor, grad in zip(tensors, step_grads):
            tensor.grad = torch.tensor(grad)
        optimizer.step()
        updates += 1
        if updates == 37:
            with torch.no_grad():
                tensors[2][1, 0, 2] += 1e-9

    ours_params = [p.copy() for p in start]
    ours = optim.Adam(ours_params, lr=0.01)
    result = check_optimizer(adam, ours, grads, feed=feed)
    assert not result and not result.ok
    assert (result.step, result.param, result.index, result.steps) == (37, 2, (1, 0, 2), 37)
    assert result.ours == ours_params[2][1, 0, 2]  # ours is left at step 37
    assert result.theirs == float(tensors[2][1, 0, 2])
    assert abs(result.theirs - result.ours - 1e-9) < 1e-15
    assert result.bound == "rtol"
    assert result.explain["t"] == 37 and result.previous["t"] == 36
    assert result.explain == ours.explain(2, (1, 0, 2))
    text = str(result)
    assert "first difference at step 37 (after update 37), parameter 2, element (1, 0, 2)" in text
    assert "adam: p -= lr * m_hat / (sqrt(v_hat) + eps)" in text and "before (step 36)" in text


def _numpy_adam(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, bug_at=None):
    """Adam as a pure function (optax style: the closure keeps m, v, t), written from
    docs/methods.md (2.2); ``bug_at``: the step whose bias correction uses t - 1."""
    m = v = None
    t = 0

    def update(params, grads):
        nonlocal m, v, t
        if m is None:
            m, v = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
        t += 1
        t_used = t - 1 if t == bug_at else t
        new = []
        for i, (p, g) in enumerate(zip(params, grads)):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat, v_hat = m[i] / (1 - beta1**t_used), v[i] / (1 - beta2**t_used)
            new.append(p - lr * m_hat / (np.sqrt(v_hat) + eps))
        return new
    return update


def test_a_pure_function_with_a_bug_at_one_step_is_found_at_that_step():
    start, grads = _problem(seed=6, steps=80)
    clean = check_optimizer(_numpy_adam(), optim.Adam([p.copy() for p in start], lr=0.01),
                            grads)
    assert clean.ok, str(clean)
    result = check_optimizer(_numpy_adam(bug_at=50), optim.Adam([p.copy() for p in start],
                                                                lr=0.01), grads)
    assert not result.ok and result.step == 50
    assert result.explain["t"] == 50 and result.previous["t"] == 49
    # the worst element: where their step, with 1 - beta^49 in place of 1 - beta^50, moved most
    assert result.param in range(3) and len(result.index) == len(SHAPES[result.param])
    assert result.subject == "Adam vs update"


def test_previous_is_our_explanation_one_step_earlier():
    start, grads = _problem(seed=7, steps=30)
    ours = optim.Adam([p.copy() for p in start], lr=0.01)
    result = check_optimizer(_numpy_adam(bug_at=12), ours, grads)
    assert result.step == 12
    replayed = optim.Adam([p.copy() for p in start], lr=0.01)
    for step_grads in grads[:11]:
        replayed.step(step_grads)
    assert result.previous == replayed.explain(result.param, result.index)
    assert result.previous["t"] == 11 and result.previous["step"] == 11
    first = check_optimizer(_numpy_sgd_momentum(0.01, 0.5, 0.0, False), optim.Adam(
        [p.copy() for p in start]), grads)  # another rule altogether: parts at update 1
    assert first.step == 1 and first.previous["updated"] is False


# -- the function form, the closed loop, float32 --------------------------------------------------
def _numpy_sgd_momentum(lr, momentum, dampening, nesterov):
    """SGD with momentum as a pure function, written from docs/methods.md (2.1)."""
    buffers = None

    def update(params, grads):
        nonlocal buffers
        if buffers is None:
            buffers = [g.copy() for g in grads]  # b <- g at the first step
        else:
            buffers = [momentum * b + (1 - dampening) * g for b, g in zip(buffers, grads)]
        steps = [g + momentum * b if nesterov else b for g, b in zip(grads, buffers)]
        return [p - lr * d for p, d in zip(params, steps)]
    return update


@pytest.mark.parametrize("dampening,nesterov", [(0.0, False), (0.3, False), (0.0, True)])
def test_function_form_against_ours(dampening, nesterov):
    start, grads = _problem(seed=8)
    ours_params = [p.copy() for p in start]
    update, seen = _numpy_sgd_momentum(0.05, 0.9, dampening, nesterov), []

    def theirs(params, step_grads):
        seen.append(params)
        return update(params, step_grads)

    ours = optim.SGD(ours_params, lr=0.05, momentum=0.9, dampening=dampening,
                     nesterov=nesterov)
    result = check_optimizer(theirs, ours, grads)
    assert result.ok, str(result)
    assert len(seen) == STEPS
    assert all(np.array_equal(a, b) for a, b in zip(seen[0], start))  # started from ours
    assert not any(np.shares_memory(a, b) for a, b in zip(seen[0], ours_params))  # copies
    assert result.explain["rule"].startswith("sgd (momentum=0.9")


def test_closed_loop_feeds_the_gradient_at_our_parameters():
    """Least squares, y = X W + b: the gradient is evaluated at our current parameters."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((32, 4))
    target = x @ rng.standard_normal((4, 2)) + 0.5 + 0.01 * rng.standard_normal((32, 2))

    def gradient_at(params):
        residual = (x @ params[0] + params[1] - target) / len(x)
        return [x.T @ residual, residual.sum(axis=0)]

    def loss(params):
        return float(np.mean((x @ params[0] + params[1] - target) ** 2))

    calls = []

    def gradient(params):
        calls.append([p.copy() for p in params])
        return gradient_at(params)

    start = [np.zeros((4, 2)), np.zeros(2)]
    ours_params = [p.copy() for p in start]
    ours = optim.Adam(ours_params, lr=0.05, amsgrad=True)
    result = check_optimizer(_numpy_adam_amsgrad(0.05), ours, gradient, steps=60)
    assert result.ok, str(result)
    assert len(calls) == 60 and result.steps == 60
    replay_params = [p.copy() for p in start]
    replay = optim.Adam(replay_params, lr=0.05, amsgrad=True)
    for seen in calls:  # call k saw our parameters after k updates
        assert all(np.array_equal(a, b) for a, b in zip(seen, replay_params))
        replay.step(gradient_at(replay_params))
    assert loss(ours_params) < 0.1 * loss(start)  # the loop descended
    with pytest.raises(ValueError, match="steps=N"):
        check_optimizer(_numpy_adam_amsgrad(0.05), optim.Adam([p.copy() for p in start]),
                        gradient)


def _numpy_adam_amsgrad(lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """Adam with AMSGrad as a pure function, written from docs/methods.md (2.2)."""
    m = v = v_max = None
    t = 0

    def update(params, grads):
        nonlocal m, v, v_max, t
        if m is None:
            m, v, v_max = ([np.zeros_like(p) for p in params] for _ in range(3))
        t += 1
        new = []
        for i, (p, g) in enumerate(zip(params, grads)):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            v_max[i] = np.maximum(v_max[i], v[i])
            new.append(p - lr * (m[i] / (1 - beta1**t))
                       / (np.sqrt(v_max[i] / (1 - beta2**t)) + eps))
        return new
    return update


@pytest.mark.torch
@pytest.mark.parametrize("name,config", [("Adam", {"lr": 0.01, "amsgrad": True}),
                                         ("SGD", {"lr": 0.05, "momentum": 0.9}),
                                         ("RMSprop", {"lr": 0.01, "centered": True})])
def test_float32_torch_against_float32_ours(name, config):
    torch = pytest.importorskip("torch", reason="the cross-check against torch.optim needs torch")
    start, grads = _problem(seed=10, dtype=np.float32)
    theirs, ours = _pair(torch, name, config, start)
    result = check_optimizer(theirs, ours, grads)
    assert result.rtol == 1e-5  # chosen because the parameters are float32
    assert result.ok, str(result)
    assert ours.param_groups[0]["params"][0].dtype == np.float32


def test_float32_rtol_is_chosen_when_either_side_is_float32():
    start, grads = _problem(seed=11, steps=5)
    ours = optim.SGD([p.copy() for p in start], lr=0.1)
    theirs = optim.SGD([p.astype(np.float32) for p in start], lr=0.1)
    result = check_optimizer(theirs, ours, grads)
    assert result.rtol == 1e-5 and result.ok, str(result)
    exact = check_optimizer(optim.SGD([p.copy() for p in start], lr=0.1),
                            optim.SGD([p.copy() for p in start], lr=0.1), grads)
    assert exact.rtol == 1e-12 and exact.ok and exact.max_rel_diff == 0.0


@pytest.mark.torch
def test_initial_parameters_that_differ_are_step_0():
    torch = pytest.importorskip("torch", reason="the cross-check against torch.optim needs torch")
    start, grads = _problem(seed=12, steps=3)
    theirs = torch.optim.SGD([torch.tensor(p) for p in start], lr=0.1)
    shifted = [p.copy() for p in start]
    shifted[1][4] += 1.0
    result = check_optimizer(theirs, optim.SGD(shifted, lr=0.1), grads)
    assert (result.step, result.param, result.index, result.steps) == (0, 1, (4,), 0)
    assert result.previous == {} and result.explain["updated"] is False
    assert "before any update" in str(result)


# -- bad input ------------------------------------------------------------------------------------
def _sgd(start):
    return optim.SGD([p.copy() for p in start], lr=0.1)


def test_bad_inputs_are_refused_with_the_fix():
    start, grads = _problem(seed=13, steps=3)
    same = _numpy_sgd_momentum(0.1, 0.0, 0.0, False)
    with pytest.raises(TypeError, match="ours must be a refimpl optimizer"):
        check_optimizer(same, [p.copy() for p in start], grads)
    with pytest.raises(ValueError, match="they have 2 parameters.*ours 3"):
        check_optimizer(lambda params, g: params[:2], _sgd(start), grads,
                        read_params=lambda t: start[:2], feed=lambda t, g: None)
    with pytest.raises(ValueError, match=r"their parameter 1 has shape \(6,\).*ours \(5,\)"):
        check_optimizer(object(), _sgd(start), grads, feed=lambda t, g: None,
                        read_params=lambda t: [start[0], np.zeros(6), start[2]])
    with pytest.raises(ValueError, match="grads\\[1\\] has 2 arrays but ours has 3"):
        check_optimizer(same, _sgd(start), [grads[0], grads[1][:2]])
    with pytest.raises(ValueError, match=r"grads\[0\]\[2\] has shape \(6,\).*\(2, 1, 3\)"):
        check_optimizer(same, _sgd(start), [[grads[0][0], grads[0][1], np.zeros(6)]])
    with pytest.raises(TypeError, match=r"grads\[0\] must be a list of arrays"):
        check_optimizer(same, _sgd(start), [np.zeros(3)])
    with pytest.raises(TypeError, match="grads must be a sequence"):
        check_optimizer(same, _sgd(start), 3)
    with pytest.raises(ValueError, match="steps=5 but only 3"):
        check_optimizer(same, _sgd(start), grads, steps=5)
    with pytest.raises(TypeError, match="cannot read parameters from a int"):
        check_optimizer(42, _sgd(start), grads)
    with pytest.raises(ValueError, match="read_params and feed together"):
        check_optimizer(object(), _sgd(start), grads, read_params=lambda t: start)
    with pytest.raises(ValueError, match="rtol must be a number >= 0"):
        check_optimizer(same, _sgd(start), grads, rtol=-1.0)
    with pytest.raises(ValueError, match="atol must be a number >= 0"):
        check_optimizer(same, _sgd(start), grads, atol=float("nan"))
    with pytest.raises(TypeError, match="must return the new parameters as a list"):
        check_optimizer(lambda params, g: 3.0, _sgd(start), grads)
    with pytest.raises(ValueError, match="they have 2 parameters \\(after update 1\\)"):
        check_optimizer(lambda params, g: params[:2], _sgd(start), grads)


@pytest.mark.torch
def test_shared_memory_with_ours_is_refused():
    torch = pytest.importorskip("torch", reason="the cross-check against torch.optim needs torch")
    start, grads = _problem(seed=14, steps=3)
    ours_params = [p.copy() for p in start]
    theirs = torch.optim.SGD([torch.from_numpy(p) for p in ours_params], lr=0.1)
    with pytest.raises(ValueError, match="shares memory with ours"):
        check_optimizer(theirs, optim.SGD(ours_params, lr=0.1), grads)


# -- optax, through the function form -------------------------------------------------------------
def _optax_function(tx, start):
    """An optax transformation as ``theirs(params, grads) -> new params``."""
    import optax

    state = tx.init(list(start))

    def theirs(params, grads):
        nonlocal state
        updates, state = tx.update(list(grads), state, list(params))
        return optax.apply_updates(list(params), updates)
    return theirs


@pytest.mark.parametrize("which", ["adam", "sgd-momentum", "sgd-nesterov"])
def test_optax_against_ours(which):
    """optax.adam(lr, b1, b2, eps, eps_root=0) is (2.2): eps outside the square root, as in
    torch; optax.sgd(lr, momentum, nesterov) is (2.1) with dampening 0 (its trace starts at
    0, so its first buffer is g, as ours). Float64 needs JAX's x64 mode, scoped here."""
    jax = pytest.importorskip("jax", reason="the optax cross-check needs jax (extra: optax)")
    optax = pytest.importorskip("optax", reason="the optax cross-check needs optax")
    start, grads = _problem(seed=15)
    ours_params = [p.copy() for p in start]
    with jax.enable_x64(True):
        if which == "adam":
            tx = optax.adam(0.01, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0)
            ours = optim.Adam(ours_params, lr=0.01, betas=(0.9, 0.999), eps=1e-8)
        else:
            nesterov = which == "sgd-nesterov"
            tx = optax.sgd(0.05, momentum=0.9, nesterov=nesterov)
            ours = optim.SGD(ours_params, lr=0.05, momentum=0.9, nesterov=nesterov)
        result = check_optimizer(_optax_function(tx, start), ours, grads, label=f"optax.{which}")
    assert result.ok, str(result)
    assert result.steps == STEPS and result.subject.endswith(f"vs optax.{which}")


# -- explain(): the numbers of the last update reproduce it ---------------------------------------
EXPLAIN_CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.1,
             "maximize": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("AdamW", {"lr": 0.01, "amsgrad": True}),
    ("Adamax", {"lr": 0.01, "weight_decay": 0.1, "maximize": True}),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.1}),
    ("NAdam", {"lr": 0.01, "momentum_decay": 0.1, "weight_decay": 0.1,
               "decoupled_weight_decay": True, "maximize": True}),
    ("RAdam", {"lr": 0.01, "betas": (0.3, 0.8), "weight_decay": 0.1}),
    ("RAdam", {"lr": 0.01, "betas": (0.3, 0.8), "weight_decay": 0.1,
               "decoupled_weight_decay": True}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1,
                 "maximize": True}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.5, "momentum": 0.9}),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.1, "initial_accumulator_value": 0.5,
                 "weight_decay": 0.1}),
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.5, "weight_decay": 0.1, "maximize": True}),
]
EXPLAIN_STEPS = 8  # RAdam with beta2 = 0.8 is rectified from step 7 (rho_t > 5)


def _close(computed, stated, scale=None):
    """``|computed - stated| <= 1e-12 * scale`` elementwise; ``scale`` defaults to
    ``|stated|`` (products and quotients: relative rounding). A sum's rounding is relative
    to its terms, so for a recursion ``scale`` is the sum of the terms' magnitudes."""
    scale = np.abs(stated) if scale is None else scale
    assert np.all(np.abs(np.asarray(computed) - stated) <= 1e-12 * scale), \
        (computed, stated)


def _ema(previous, new, beta):
    """``beta * previous + (1 - beta) * new``, and the scale of its rounding."""
    return beta * previous + (1 - beta) * new, beta * np.abs(previous) + (1 - beta) * np.abs(new)


def _expected(name: str, e: dict, prev: dict, p: np.ndarray, g: np.ndarray,
              config: dict) -> np.ndarray:
    """The new parameter by docs/methods.md §2 from the explained numbers; checks the
    moment recursions against the previous step's ``explain`` on the way. ``g`` is the
    gradient after maximize and L2 weight decay, ``p`` the parameter before the step."""
    lr, t = e["lr"], e.get("t")
    p = p * e.get("decay_factor", 1.0)
    if name == "SGD":
        direction = g
        if e["momentum"]:
            if e["buffer_started"]:  # b <- g at the first step
                _close(g, e["momentum_buffer"])
            else:  # b <- momentum b + (1 - dampening) g
                keep, previous = 1 - e["dampening"], prev["momentum_buffer"]
                _close(e["momentum"] * previous + keep * g, e["momentum_buffer"],
                       e["momentum"] * np.abs(previous) + keep * np.abs(g))
            buf = e["momentum_buffer"]
            direction = g + e["momentum"] * buf if e["nesterov"] else buf
        _close(direction, e["direction"])
        return p - lr * direction
    if name in ("Adam", "AdamW", "NAdam", "RAdam", "Adamax"):
        b1, b2 = e["beta1"], e["beta2"]
        m, scale = _ema(prev.get("exp_avg", 0.0), g, b1)
        _close(m, e["exp_avg"], scale)
        if name == "Adamax":
            u = np.maximum(b2 * prev.get("exp_inf", 0.0), np.abs(g) + e["eps"])
            _close(u, e["exp_inf"])
            _close(1 - b1**t, e["bias_correction1"])
            _close(lr / (1 - b1**t), e["step_size"])
            _close(e["exp_avg"] / (1 - b1**t), e["m_hat"])
            return p - lr / (1 - b1**t) * e["exp_avg"] / e["exp_inf"]
        v, scale = _ema(prev.get("exp_avg_sq", 0.0), g * g, b2)
        _close(v, e["exp_avg_sq"], scale)
        m_hat, v_hat = e["exp_avg"] / (1 - b1**t), e["exp_avg_sq"] / (1 - b2**t)
        _close(1 - b2**t, e["bias_correction2"])
        if name in ("Adam", "AdamW"):
            if "max_exp_avg_sq" in e:
                v_max = np.maximum(prev.get("max_exp_avg_sq", 0.0), e["exp_avg_sq"])
                _close(v_max, e["max_exp_avg_sq"])
                v_hat = e["max_exp_avg_sq"] / (1 - b2**t)
            _close(m_hat, e["m_hat"])
            _close(v_hat, e["v_hat"])
            _close(1 - b1**t, e["bias_correction1"])
            _close(lr / (1 - b1**t), e["step_size"])
            _close(np.sqrt(e["v_hat"]) + e["eps"], e["denom"])
            return p - lr * e["m_hat"] / (np.sqrt(e["v_hat"]) + e["eps"])
        if name == "NAdam":
            psi = e["momentum_decay"]
            mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
            mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
            _close(mu, e["mu"])
            _close(mu_next, e["mu_next"])
            _close(prev.get("mu_product", 1.0) * mu, e["mu_product"])
            product = e["mu_product"]
            d = np.sqrt(v_hat) + e["eps"]
            _close(d, e["denom"])
            _close(lr * (1 - mu) / (1 - product), e["grad_coef"])
            _close(lr * mu_next / (1 - product * mu_next), e["momentum_coef"])
            return (p - lr * (1 - mu) / (1 - product) * g / d
                    - lr * mu_next / (1 - product * mu_next) * e["exp_avg"] / d)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
        _close(rho_t, e["rho_t"])
        _close(rho_inf, e["rho_inf"])
        _close(m_hat, e["m_hat"])
        if rho_t <= 5:
            assert not e["rectified"]
            return p - lr * m_hat
        assert e["rectified"]
        r = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        _close(r, e["rect"])
        _close(np.sqrt(1 - b2**t) / (np.sqrt(e["exp_avg_sq"]) + e["eps"]), e["adaptive"])
        return p - lr * m_hat * r * np.sqrt(1 - b2**t) / (np.sqrt(e["exp_avg_sq"]) + e["eps"])
    if name == "RMSprop":
        v, scale = _ema(prev.get("square_avg", 0.0), g * g, e["alpha"])
        _close(v, e["square_avg"], scale)
        d = np.sqrt(e["square_avg"]) + e["eps"]
        if e["centered"]:
            a, scale = _ema(prev.get("grad_avg", 0.0), g, e["alpha"])
            _close(a, e["grad_avg"], scale)
            d = np.sqrt(e["square_avg"] - e["grad_avg"] ** 2) + e["eps"]
        _close(d, e["denom"])
        if e["momentum"] > 0:
            b = e["momentum"] * prev.get("momentum_buffer", 0.0) + g / d
            _close(b, e["momentum_buffer"],
                   e["momentum"] * np.abs(prev.get("momentum_buffer", 0.0)) + np.abs(g / d))
            return p - lr * e["momentum_buffer"]
        return p - lr * g / d
    if name == "Adagrad":
        s = prev.get("sum", config.get("initial_accumulator_value", 0.0)) + g * g
        _close(s, e["sum"])
        _close(lr / (1 + (t - 1) * e["lr_decay"]), e["clr"])
        _close(np.sqrt(e["sum"]) + e["eps"], e["denom"])
        return p - lr / (1 + (t - 1) * e["lr_decay"]) * g / (np.sqrt(e["sum"]) + e["eps"])
    assert name == "Adadelta"
    rho, eps = e["rho"], e["eps"]
    v, scale = _ema(prev.get("square_avg", 0.0), g * g, rho)
    _close(v, e["square_avg"], scale)
    _close(np.sqrt(prev.get("acc_delta", 0.0) + eps), e["std_delta"])
    _close(np.sqrt(e["square_avg"] + eps), e["std"])
    delta = e["std_delta"] / np.sqrt(e["square_avg"] + eps) * g
    _close(delta, e["delta"])
    u, scale = _ema(prev.get("acc_delta", 0.0), delta * delta, rho)
    _close(u, e["acc_delta"], scale)
    return p - lr * delta


def _applied(e: dict, p: np.ndarray) -> np.ndarray:
    """The step's own arithmetic on the explained arrays (bit for bit the new parameter)."""
    p = p * e["decay_factor"] if "decay_factor" in e else p
    if "grad_term" in e:  # NAdam subtracts its two terms one after the other
        return (p - e["grad_term"]) - e["momentum_term"]
    return p - e["update"]


@pytest.mark.parametrize("case", EXPLAIN_CASES, ids=[_case_id(c) for c in EXPLAIN_CASES])
def test_explain_reproduces_the_last_update(case):
    """Entries start in [1, 2], so none comes near zero in the few steps taken and every
    element can be held to 1e-12 relative."""
    name, config = case
    rng = np.random.default_rng(len(_case_id(case)))
    params = [rng.uniform(1, 2, s) for s in SHAPES]
    opt = getattr(optim, name)(_groups(params), **config)
    previous = [opt.explain(i) for i in range(len(params))]
    rectified = set()
    for step in range(1, EXPLAIN_STEPS + 1):
        grads = [rng.standard_normal(s) for s in SHAPES]
        before = [p.copy() for p in params]
        opt.step(grads)
        for i, (p_before, p_after, grad) in enumerate(zip(before, params, grads)):
            e = opt.explain(i)
            assert e["updated"] and e["step"] == step and e["param"] == i
            assert e["group"] == (0 if i < 2 else 1)
            assert e["lr"] == opt.param_groups[e["group"]]["lr"]
            if "t" in e:
                assert e["t"] == step
            sign = -1.0 if config.get("maximize") else 1.0
            assert np.array_equal(e["grad"], sign * grad)
            used = e["grad"]
            if "decay_term" in e:
                _close(config["weight_decay"] * p_before, e["decay_term"])
                used = e["grad_used"]
                _close(e["grad"] + config["weight_decay"] * p_before, used,
                       np.abs(e["grad"]) + np.abs(e["decay_term"]))
            assert np.array_equal(_applied(e, p_before), p_after)  # what was subtracted
            if "decay_factor" in e:
                weight_decay = opt.param_groups[e["group"]]["weight_decay"]
                _close(1 - e["lr"] * weight_decay, e["decay_factor"])
            _close(_expected(name, e, previous[i], p_before, used, config), p_after)
            element = tuple(n - 1 for n in p_after.shape)
            at = opt.explain(i, element)
            for key, value in e.items():
                expected = value[element] if isinstance(value, np.ndarray) else value
                assert at[key] == expected, key
            rectified.add(e.get("rectified"))
            previous[i] = e
    if name == "RAdam":
        assert rectified == {False, True}  # both branches of (2.6) were explained


def test_explain_without_a_parameter_and_before_any_step():
    opt = optim.Adam(_groups([np.ones(2), np.ones(3), np.ones(1)]), amsgrad=True)
    assert opt.explain() == {"rule": "adam (amsgrad): p -= lr * m_hat / (sqrt(v_hat_max) + eps)",
                             "step": 0, "lr": [0.03, 0.001]}
    first = opt.explain(2)
    assert first["updated"] is False and first["rule"].endswith("(no step taken yet)")
    mixed = optim.SGD([{"params": [np.ones(2)]}, {"params": [np.ones(2)], "momentum": 0.9}])
    assert mixed.explain()["rule"] == ("group 0: sgd: p -= lr * g; group 1: sgd (momentum=0.9): "
                                       "b = momentum * b + (1 - dampening) * g; p -= lr * b")


def test_explain_keeps_what_the_step_used():
    """A parameter without a gradient was not updated; the rate a scheduler sets after the
    step, and the caller's gradient buffer refilled after it, do not change the numbers."""
    params = [np.full(3, 2.0), np.full(2, 1.0)]
    buffer = np.array([0.5, -1.0, 2.0])
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    opt.step([buffer, None])
    before = params[0].copy()
    opt.step([buffer, None])
    opt.lr = 0.5  # a scheduler's move after the step
    buffer[:] = 99.0  # the next backward pass into the same buffer
    e = opt.explain(0)
    assert e["lr"] == 0.1 and np.array_equal(e["grad"], [0.5, -1.0, 2.0])
    assert np.array_equal(before - e["update"], params[0])
    assert opt.explain(1)["updated"] is False
    assert "no update of this parameter at the last step" in opt.explain(1)["rule"]
    e["momentum_buffer"][:] = 0.0  # the arrays handed out are copies
    assert np.all(opt.state[0]["momentum_buffer"] != 0.0)
    opt.load_state_dict(opt.state_dict())
    assert opt.explain(0)["updated"] is False  # the numbers belonged to the state replaced


def test_step_without_copying_the_gradients_explains_from_the_callers_arrays():
    """``copy_grads=False`` (the trainer's call) keeps a reference: the same update, and an
    explanation that reads the caller's array as it is when explain() is called."""
    copied, referenced = optim.Adam([np.full(3, 2.0)]), optim.Adam([np.full(3, 2.0)])
    buffer = np.array([0.5, -1.0, 2.0])
    copied.step([buffer])
    referenced.step([buffer], copy_grads=False)
    assert np.array_equal(copied.param_groups[0]["params"][0],
                          referenced.param_groups[0]["params"][0])
    buffer[:] = 99.0
    assert np.array_equal(copied.explain(0)["grad"], [0.5, -1.0, 2.0])
    assert np.array_equal(referenced.explain(0)["grad"], [99.0, 99.0, 99.0])


def test_explain_refuses_bad_indices():
    opt = optim.Adam([np.ones((2, 3)), np.ones(4)])
    opt.step([np.ones((2, 3)), np.ones(4)])
    assert opt.explain(0, 4) == opt.explain(0, (1, 1))  # an int indexes the flattened array
    assert opt.explain(0, (-1, -1)) == opt.explain(0, (1, 2))
    with pytest.raises(IndexError, match="param 2 is out of range.*parameters 0..1"):
        opt.explain(2)
    with pytest.raises(TypeError, match="param must be a parameter index"):
        opt.explain("0")
    with pytest.raises(IndexError, match=r"index \(1,\) has 1 entries.*shape \(2, 3\)"):
        opt.explain(0, (1,))
    with pytest.raises(IndexError, match=r"index \(2, 0\) is out of range for shape \(2, 3\)"):
        opt.explain(0, (2, 0))
    with pytest.raises(IndexError, match="index 6 is out of range"):
        opt.explain(0, 6)
    with pytest.raises(TypeError, match="index must be an int or a tuple of ints"):
        opt.explain(0, 1.5)
