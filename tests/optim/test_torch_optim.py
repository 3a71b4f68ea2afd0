"""The optimizers beyond SGD/Adam/AdamW against torch.optim: every flag combination, two
parameter groups with different rates, 200 steps of random float64 gradients.

Reference: torch 2.13's ``torch/optim/{rmsprop,adagrad,adamax,nadam,radam,adadelta,adam}.py``
(the single-tensor code paths, ``foreach=False``).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from refimpl import optim

torch = pytest.importorskip("torch", reason="the cross-check against torch.optim needs torch")
pytestmark = pytest.mark.torch

SHAPES = [(3, 4), (5,), (2, 1, 3)]
STEPS = 200
# float64 on both sides and the same operations in the same order up to a few reassociations
# (e.g. ``(1-b) g g`` vs torch's addcmul), so traces differ by a few ulps per step; 1e-12
# relative to the parameters' scale leaves about three orders of margin over 200 steps.
RTOL = 1e-12
# every group gets its own rate: the first two arrays 0.03, the last the constructor's lr
GROUPS = [{"params": [0, 1], "lr": 0.03}, {"params": [2]}]


@pytest.fixture(autouse=True)
def torch_float64_scalars():
    """torch keeps scalar state (NAdam's mu_product) in its default dtype: make it float64,
    as ours is, for the length of one test."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _problem(seed: int):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(STEPS)]
    return params, grads


def _grouped(arrays):
    return [{**g, "params": [arrays[i] for i in g["params"]]} for g in GROUPS]


def _ours(name, params, grads, kwargs):
    arrays = [p.copy() for p in params]
    opt = getattr(optim, name)(_grouped(arrays), **kwargs)
    trace = []
    for step_grads in grads:
        opt.step(step_grads)
        trace.append([a.copy() for a in arrays])
    return trace


def _torch(name, params, grads, kwargs):
    tensors = [torch.tensor(p.copy()) for p in params]
    opt = getattr(torch.optim, name)(_grouped(tensors), foreach=False, **kwargs)
    trace = []
    for step_grads in grads:
        for tensor, grad in zip(tensors, step_grads):
            tensor.grad = torch.tensor(grad)
        opt.step()
        trace.append([t.detach().numpy().copy() for t in tensors])
    return trace


def _configs(**choices):
    names = list(choices)
    return [dict(zip(names, values)) for values in itertools.product(*choices.values())]


BETAS = [(0.9, 0.999), (0.3, 0.8)]  # the second puts RAdam's rho_inf at 9, near its cut of 5
CASES = (
    [("RMSprop", c) for c in _configs(lr=[0.01], alpha=[0.99, 0.5], momentum=[0.0, 0.9],
                                       centered=[False, True], weight_decay=[0.0, 0.1],
                                       maximize=[False, True])]
    + [("Adagrad", c) for c in _configs(lr=[0.05], lr_decay=[0.0, 0.05],
                                         initial_accumulator_value=[0.0, 0.5],
                                         weight_decay=[0.0, 0.1], maximize=[False, True])]
    + [("Adamax", c) for c in _configs(lr=[0.01], betas=BETAS, weight_decay=[0.0, 0.1],
                                        maximize=[False, True])]
    + [("NAdam", c) for c in _configs(lr=[0.01], betas=BETAS, momentum_decay=[4e-3, 0.1],
                                       weight_decay=[0.0, 0.1],
                                       decoupled_weight_decay=[False, True],
                                       maximize=[False, True])]
    + [("RAdam", c) for c in _configs(lr=[0.01], betas=BETAS, weight_decay=[0.0, 0.1],
                                       decoupled_weight_decay=[False, True],
                                       maximize=[False, True])]
    + [("Adadelta", c) for c in _configs(lr=[1.0, 0.1], rho=[0.9, 0.5],
                                          weight_decay=[0.0, 0.1], maximize=[False, True])]
    + [("Adam", c) for c in _configs(lr=[0.01], weight_decay=[0.1], amsgrad=[False, True],
                                      decoupled_weight_decay=[False, True],
                                      maximize=[False, True])]
    + [("AdamW", c) for c in _configs(lr=[0.01], weight_decay=[0.1], amsgrad=[False, True],
                                       maximize=[False, True])]
)


def _case_id(case):
    name, config = case
    return name + ":" + ",".join(f"{k}={v}" for k, v in config.items())


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_matches_torch_for_every_flag_combination(case):
    name, config = case
    params, grads = _problem(seed=len(_case_id(case)))
    ours = _ours(name, params, grads, config)
    theirs = _torch(name, params, grads, config)
    for step, (a_list, b_list) in enumerate(zip(ours, theirs), start=1):
        for a, b in zip(a_list, b_list):
            scale = max(1.0, float(np.max(np.abs(b))))
            error = float(np.max(np.abs(a - b))) / scale
            assert error <= RTOL, f"step {step}: relative difference {error:.2e} > {RTOL}"


@pytest.mark.parametrize("shape", [(4,), (3, 2)])
def test_a_group_of_one_bare_array_matches_torch(shape):
    rng = np.random.default_rng(7)
    start, grad = rng.standard_normal(shape), rng.standard_normal(shape)
    ours = start.copy()
    optim.RMSprop([{"params": ours, "lr": 0.1}], momentum=0.5).step([grad])
    theirs = torch.tensor(start.copy())
    theirs.grad = torch.tensor(grad)
    torch.optim.RMSprop([{"params": theirs, "lr": 0.1}], momentum=0.5).step()
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=RTOL, atol=0)


def test_state_dict_layout_matches_torch():
    """Same state names per parameter and same group keys (less torch's execution switches)."""
    switches = {"foreach", "capturable", "differentiable", "fused"}
    for name in ["RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam", "Adadelta", "Adam"]:
        kwargs = {"RMSprop": {"momentum": 0.9, "centered": True},
                  "Adam": {"amsgrad": True}}.get(name, {})
        ours = getattr(optim, name)([np.ones(3)], **kwargs)
        tensor = torch.ones(3)
        theirs = getattr(torch.optim, name)([tensor], **kwargs)
        ours.step([np.ones(3)])
        tensor.grad = torch.ones(3)
        theirs.step()
        our_state, their_state = ours.state_dict(), theirs.state_dict()
        assert set(our_state["state"][0]) == set(their_state["state"][0]), name
        their_keys = set(their_state["param_groups"][0]) - switches
        assert set(our_state["param_groups"][0]) == their_keys, name
