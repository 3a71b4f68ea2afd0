"""refimpl.optim: SGD / Adam / AdamW against torch.optim, state dicts, validation."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl import optim
from refimpl.optim import SGD, Adam, AdamW

SHAPES = [(3, 4), (4,), (2, 1, 3)]
STEPS = 200
# float64: both sides do the same operations in nearly the same order, so the traces differ
# only by rounding (a few ulps per step); 1e-12 relative to the parameter scale is the issue's
# bound and leaves ~3 orders of margin over 200 steps.
RTOL64 = 1e-12
# float32: one ulp is 6e-8; a few ulps per step over 200 steps stays well under 1e-5.
RTOL32 = 1e-5


def _random_problem(seed: int, dtype=np.float64, steps: int = STEPS):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]
    return params, grads


def _torch_trace(torch_cls, params, grads, groups=None, **kwargs):
    torch = pytest.importorskip("torch", reason="torch cross-check needs torch")
    tparams = [torch.tensor(p.copy()) for p in params]
    if groups is None:
        opt = torch_cls(tparams, **kwargs)
    else:
        opt = torch_cls([{**g, "params": [tparams[i] for i in g["params"]]} for g in groups],
                        **kwargs)
    trace = []
    for step_grads in grads:
        for p, g in zip(tparams, step_grads):
            p.grad = torch.tensor(g.copy())
        opt.step()
        trace.append([p.detach().numpy().copy() for p in tparams])
    return trace


def _our_trace(cls, params, grads, groups=None, **kwargs):
    ours = [p.copy() for p in params]
    if groups is None:
        opt = cls(ours, **kwargs)
    else:
        opt = cls([{**g, "params": [ours[i] for i in g["params"]]} for g in groups], **kwargs)
    trace = []
    for step_grads in grads:
        opt.step(step_grads)
        trace.append([p.copy() for p in ours])
    return trace


def _assert_traces_close(ours, theirs, rtol):
    for step, (a_list, b_list) in enumerate(zip(ours, theirs)):
        for a, b in zip(a_list, b_list):
            scale = max(1.0, float(np.max(np.abs(b))))
            err = float(np.max(np.abs(a - b))) / scale
            assert err <= rtol, f"step {step + 1}: relative difference {err:.3e} > {rtol}"


SGD_CONFIGS = [
    {"momentum": m, "dampening": d, "nesterov": n, "weight_decay": wd, "maximize": mx}
    for m, d, n, wd, mx in itertools.product([0.0, 0.9], [0.0, 0.3], [False, True],
                                             [0.0, 0.05], [False, True])
    if not (n and (m == 0 or d != 0))
]


@pytest.mark.torch
@pytest.mark.parametrize("config", SGD_CONFIGS,
                         ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_sgd_matches_torch(config):
    torch = pytest.importorskip("torch", reason="torch cross-check needs torch")
    params, grads = _random_problem(1)
    ours = _our_trace(SGD, params, grads, lr=0.01, **config)
    theirs = _torch_trace(torch.optim.SGD, params, grads, lr=0.01, **config)
    _assert_traces_close(ours, theirs, RTOL64)


ADAM_CONFIGS = [{"weight_decay": wd, "amsgrad": a, "maximize": mx}
                for wd, a, mx in itertools.product([0.0, 0.1], [False, True], [False, True])]


@pytest.mark.torch
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("config", ADAM_CONFIGS,
                         ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_adam_family_matches_torch(name, config):
    torch = pytest.importorskip("torch", reason="torch cross-check needs torch")
    params, grads = _random_problem(2)
    cls = {"Adam": Adam, "AdamW": AdamW}[name]
    kwargs = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, **config)
    ours = _our_trace(cls, params, grads, **kwargs)
    theirs = _torch_trace(getattr(torch.optim, name), params, grads, **kwargs)
    _assert_traces_close(ours, theirs, RTOL64)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_param_groups_match_torch(name):
    torch = pytest.importorskip("torch", reason="torch cross-check needs torch")
    params, grads = _random_problem(3, steps=50)
    extra = {"SGD": {"momentum": 0.5}, "Adam": {"betas": (0.5, 0.9)},
             "AdamW": {"weight_decay": 0.3}}[name]
    groups = [{"params": [0, 1], "lr": 0.05, **extra}, {"params": [2]}]
    cls = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[name]
    ours = _our_trace(cls, params, grads, groups=groups, lr=0.01)
    theirs = _torch_trace(getattr(torch.optim, name), params, grads, groups=groups, lr=0.01)
    _assert_traces_close(ours, theirs, RTOL64)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_float32_preserved_and_matches_torch(name):
    torch = pytest.importorskip("torch", reason="torch cross-check needs torch")
    params, grads = _random_problem(4, dtype=np.float32, steps=50)
    kwargs = {"SGD": {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}}.get(name, {})
    cls = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[name]
    ours = _our_trace(cls, params, grads, lr=0.01, **kwargs)
    assert all(p.dtype == np.float32 for p in ours[-1])
    theirs = _torch_trace(getattr(torch.optim, name), params, grads, lr=0.01, **kwargs)
    _assert_traces_close(ours, theirs, RTOL32)


def test_updates_in_place_and_plain_sgd_formula():
    w = np.array([1.0, -2.0])
    alias = w
    SGD([w], lr=0.5).step([np.array([2.0, 4.0])])
    assert alias is w
    np.testing.assert_array_equal(w, [0.0, -4.0])


def test_none_grad_skips_parameter():
    a, b = np.ones(2), np.ones(2)
    opt = Adam([a, b], lr=0.1)
    opt.step([np.ones(2), None])
    np.testing.assert_array_equal(b, np.ones(2))
    assert 1 not in opt.state and opt.state[0]["step"] == 1


@pytest.mark.parametrize("cls, kwargs", [
    (SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    (AdamW, {"lr": 0.01}),
])
def test_state_dict_round_trip_continues_identically(cls, kwargs):
    params, grads = _random_problem(5, steps=20)
    reference = [p.copy() for p in params]
    opt = cls(reference, **kwargs)
    for g in grads:
        opt.step(g)

    first = [p.copy() for p in params]
    opt1 = cls(first, **kwargs)
    for g in grads[:10]:
        opt1.step(g)
    saved = opt1.state_dict()
    resumed = [p.copy() for p in first]
    for g in grads[10:13]:  # keep stepping opt1: the saved dict must hold copies
        opt1.step(g)
    opt2 = cls(resumed, lr=123.0)  # hyper-parameters come from the state dict
    opt2.load_state_dict(saved)
    for g in grads[10:]:
        opt2.step(g)
    for a, b in zip(resumed, reference):
        np.testing.assert_array_equal(a, b)


def test_load_state_dict_errors():
    w = np.zeros(3)
    saved = SGD([w], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="belongs to 'SGD'"):
        Adam([np.zeros(3)]).load_state_dict(saved)
    with pytest.raises(ValueError, match="missing keys"):
        SGD([np.zeros(3)]).load_state_dict({"class": "SGD", "state": {}})
    with pytest.raises(ValueError, match="group sizes"):
        SGD([np.zeros(3), np.zeros(2)]).load_state_dict(saved)


def test_lr_property_get_set_per_group():
    a, b = np.zeros(2), np.zeros(2)
    opt = SGD([{"params": [a], "lr": 0.1}, {"params": [b]}], lr=0.2)
    assert opt.lr == 0.1 and opt.param_groups[1]["lr"] == 0.2
    opt.lr = 0.5
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.5]
    opt.lr = [0.3, 0.4]
    assert [g["lr"] for g in opt.param_groups] == [0.3, 0.4]
    with pytest.raises(ValueError, match="lr has 3 entries"):
        opt.lr = [0.1, 0.2, 0.3]
    with pytest.raises(ValueError, match="lr"):
        opt.lr = float("nan")


@pytest.mark.parametrize("cls, kwargs, name", [
    (SGD, {"lr": -0.1}, "lr"),
    (SGD, {"lr": float("nan")}, "lr"),
    (SGD, {"momentum": -0.5}, "momentum"),
    (SGD, {"weight_decay": -1.0}, "weight_decay"),
    (SGD, {"nesterov": True}, "nesterov"),
    (SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "nesterov"),
    (Adam, {"betas": (1.0, 0.9)}, r"betas\[0\]"),
    (Adam, {"betas": (0.9, -0.1)}, r"betas\[1\]"),
    (Adam, {"betas": 0.9}, "betas"),
    (AdamW, {"eps": -1e-8}, "eps"),
    (AdamW, {"lr": "fast"}, "lr"),
])
def test_invalid_hyper_parameters_name_the_argument(cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cls([np.zeros(2)], **kwargs)


def test_invalid_params_and_grads():
    with pytest.raises(ValueError, match="params is empty"):
        SGD([])
    with pytest.raises(ValueError, match="floating-point"):
        SGD([np.zeros(2, dtype=np.int64)])
    with pytest.raises(ValueError, match="unknown keys"):
        SGD([{"params": [np.zeros(2)], "betas": (0.9, 0.9)}])
    w = np.zeros(2)
    with pytest.raises(ValueError, match="more than one"):
        SGD([{"params": [w]}, {"params": [w]}])
    opt = SGD([np.zeros(2)])
    with pytest.raises(ValueError, match="shape"):
        opt.step([np.zeros(3)])
    with pytest.raises(ValueError, match="grads has 2 arrays"):
        opt.step([np.zeros(2), np.zeros(2)])


@settings(max_examples=30, deadline=None)
@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    shapes=st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple),
                    min_size=1, max_size=3),
    name=st.sampled_from(["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam",
                          "RAdam", "Adadelta"]),
)
def test_step_keeps_dtype_shape_identity_and_leaves_grads_alone(dtype, shapes, name):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ids = [id(p) for p in params]
    grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads_before = [g.copy() for g in grads]
    cls = getattr(optim, name)
    opt = cls(params, lr=0.1, weight_decay=0.01,
              **({"momentum": 0.9} if name in ("SGD", "RMSprop") else {}))
    for _ in range(2):
        opt.step(grads)
    assert [id(p) for p in params] == ids
    assert all(p.dtype == dtype and p.shape == s for p, s in zip(params, shapes))
    assert all(np.array_equal(g, b) for g, b in zip(grads, grads_before))


# -- the optimizers beyond SGD/Adam/AdamW (their torch cross-check: test_torch_optim.py) --
BUSY = {  # every option switched on, so a round trip has every piece of state to carry
    "RMSprop": {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 0.1},
    "Adagrad": {"lr": 0.05, "lr_decay": 0.01, "initial_accumulator_value": 0.5},
    "Adamax": {"lr": 0.01, "weight_decay": 0.1, "maximize": True},
    "NAdam": {"lr": 0.01, "momentum_decay": 0.1, "decoupled_weight_decay": True,
              "weight_decay": 0.1},
    "RAdam": {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1},
    "Adadelta": {"lr": 0.5, "rho": 0.8, "weight_decay": 0.1},
    "Adam": {"lr": 0.01, "amsgrad": True, "decoupled_weight_decay": True, "weight_decay": 0.1},
}


def _plain(value):
    """A state dict as JSON would bring it back: arrays as lists, tuples as lists, int keys
    as strings."""
    return json.loads(json.dumps(value, default=lambda a: a.tolist()))


@pytest.mark.parametrize("name", sorted(BUSY))
def test_json_round_trip_mid_run_continues_identically(name):
    cls, kwargs = getattr(optim, name), BUSY[name]
    params, grads = _random_problem(6, steps=40)
    reference = [p.copy() for p in params]
    opt = cls([{"params": reference[:2], "lr": 0.02}, {"params": reference[2:]}], **kwargs)
    for g in grads:
        opt.step(g)

    first = [p.copy() for p in params]
    opt1 = cls([{"params": first[:2], "lr": 0.02}, {"params": first[2:]}], **kwargs)
    for g in grads[:20]:
        opt1.step(g)
    saved = _plain(opt1.state_dict())
    resumed = [p.copy() for p in first]
    opt2 = cls([{"params": resumed[:2]}, {"params": resumed[2:]}], lr=123.0)
    opt2.load_state_dict(saved)
    assert [g["lr"] for g in opt2.param_groups] == [0.02, kwargs["lr"]]
    for g in grads[20:]:
        opt2.step(g)
    for a, b in zip(resumed, reference):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_a_group_of_one_bare_array_is_one_parameter(name):
    """torch takes ``{"params": tensor}`` as one parameter; so do we, whatever its rank."""
    for shape in [(3,), (2, 3)]:
        alone, in_list = np.ones(shape), np.ones(shape)
        grad = np.arange(np.prod(shape), dtype=float).reshape(shape)
        bare = getattr(optim, name)([{"params": alone, "lr": 0.1}])
        listed = getattr(optim, name)([{"params": [in_list], "lr": 0.1}])
        assert len(bare.param_groups[0]["params"]) == 1
        bare.step([grad])
        listed.step([grad])
        np.testing.assert_array_equal(alone, in_list)
        assert not np.array_equal(alone, np.ones(shape))


def test_one_bare_array_as_params_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"params .*got one array; pass \[array\]"):
        SGD(np.zeros(3))


@pytest.mark.parametrize("cls, kwargs, name", [
    (optim.RMSprop, {"alpha": -0.1}, "alpha"),
    (optim.RMSprop, {"momentum": -0.5}, "momentum"),
    (optim.RMSprop, {"eps": -1.0}, "eps"),
    (optim.RMSprop, {"centered": "yes"}, "centered"),
    (optim.Adagrad, {"lr_decay": -0.1}, "lr_decay"),
    (optim.Adagrad, {"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
    (optim.Adagrad, {"maximize": 1}, "maximize"),
    (optim.Adamax, {"betas": (0.9, 1.0)}, r"betas\[1\]"),
    (optim.Adamax, {"weight_decay": -1.0}, "weight_decay"),
    (optim.NAdam, {"momentum_decay": -1e-3}, "momentum_decay"),
    (optim.NAdam, {"decoupled_weight_decay": "no"}, "decoupled_weight_decay"),
    (optim.RAdam, {"betas": (-0.1, 0.9)}, r"betas\[0\]"),
    (optim.RAdam, {"lr": float("inf")}, "lr"),
    (optim.Adadelta, {"rho": 1.5}, "rho"),
    (optim.Adadelta, {"lr": -1.0}, "lr"),
    (Adam, {"decoupled_weight_decay": None}, "decoupled_weight_decay"),
    (SGD, {"nesterov": "False"}, "nesterov"),
])
def test_new_hyper_parameters_are_checked_and_named(cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cls([np.zeros(2)], **kwargs)


def test_torch_boundary_values_are_accepted():
    """The ends of torch's ranges: rho = 1 and 0, alpha > 1, zero rates and decays."""
    optim.Adadelta([np.zeros(2)], rho=1.0)
    optim.Adadelta([np.zeros(2)], rho=0.0)
    optim.RMSprop([np.zeros(2)], alpha=1.5, lr=0.0)
    optim.NAdam([np.zeros(2)], momentum_decay=0.0, betas=(0.0, 0.0))


def test_adagrad_accumulators_start_at_the_constructor_value():
    a = np.zeros(2)
    opt = optim.Adagrad([{"params": [a], "initial_accumulator_value": 9.0}],
                        initial_accumulator_value=1.0, lr=1.0, eps=0.0)
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["sum"], [1.0, 1.0])
    opt.step([np.array([1.0, -1.0])])  # s = 1 + 1 = 2: w = -g / sqrt(2)
    np.testing.assert_allclose(a, [-2**-0.5, 2**-0.5], rtol=1e-15)


@pytest.mark.parametrize("change, message", [
    ({"momentum": -1.0}, "momentum"),
    ({"centered": "yes"}, "centered"),
    ({"betas": (0.9, 0.9)}, "unknown keys"),
])
def test_load_refuses_what_the_constructor_refuses_and_changes_nothing(change, message):
    a, b = np.ones(2), np.ones(3)
    opt = optim.RMSprop([{"params": [a]}, {"params": [b]}], lr=0.1, momentum=0.5)
    opt.step([np.ones(2), np.ones(3)])
    before = opt.state_dict()
    saved = opt.state_dict()
    saved["param_groups"][0]["lr"] = 0.7  # a valid change in the first group ...
    saved["param_groups"][1].update(change)  # ... and a refused one in the second
    saved["state"][0]["square_avg"] = np.full(2, 5.0)
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(saved)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    np.testing.assert_array_equal(after["state"][0]["square_avg"],
                                  before["state"][0]["square_avg"])


def test_load_refuses_state_for_a_parameter_that_does_not_exist():
    saved = SGD([np.zeros(2), np.zeros(2)], momentum=0.9).state_dict()
    saved["state"] = {5: {"momentum_buffer": np.zeros(2)}}
    with pytest.raises(ValueError, match="parameter 5"):
        SGD([np.zeros(2), np.zeros(2)]).load_state_dict(saved)
