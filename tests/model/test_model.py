"""refimpl.layers / refimpl.model: parameter counts, builder grammar, state dicts, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import ops
from refimpl.init import fans, glorot_uniform, he_uniform
from refimpl.layers import Activation, Conv2d, Dense
from refimpl.model import MODELS, Sequential, build, get_model, parse


def test_lrpo_cnn_has_exactly_245290_parameters():
    """docs/methods.md §7: conv3x3 without padding gives 26-13-11-9-4 spatial sizes, 32*4*4 = 512."""
    model = get_model("lrpo_cnn")
    assert model.num_parameters() == 245_290
    assert model.forward(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)


def test_mlp_has_795010_parameters_and_takes_flat_or_image_input():
    model = get_model("mlp", dtype=np.float64)
    assert model.num_parameters() == 784 * 1000 + 1000 + 1000 * 10 + 10 == 795_010
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28))
    np.testing.assert_array_equal(model.forward(x), model.forward(x.reshape(3, 784)))


def test_models_table_and_unknown_name():
    assert set(MODELS) == {"mlp", "lrpo_cnn"}
    with pytest.raises(ValueError, match="^name must be one of"):
        get_model("resnet")


def test_builder_grammar():
    parsed = parse("conv:8x3s2p1, relu ,pool3,flatten,dense:4,identity,conv:2x5")
    assert parsed == [
        ("conv", (8, 3, 2, 1)),
        ("activation", "relu"),
        ("pool", (3,)),
        ("flatten", ()),
        ("dense", (4,)),
        ("activation", "identity"),
        ("conv", (2, 5, 1, 0)),
    ]
    model = build("conv:8x3s2p1,relu,pool2,flatten,dense:4", (2, 9, 9), dtype=np.float64)
    # 9 -> (9 + 2 - 3)//2 + 1 = 5 -> pool 2 -> 8 * 2 * 2 = 32 features
    assert model.parameters()[2].shape == (32, 4)


@pytest.mark.parametrize(
    "spec,input_shape,match",
    [
        ("dense:10,softmax", (4,), "token 1 'softmax'"),
        ("dense10", (4,), "token 0 'dense10'"),
        ("conv:8x", (1, 5, 5), "token 0 'conv:8x'"),
        ("conv:0x3", (1, 5, 5), "sizes must be >= 1"),
        ("dense:0", (4,), "sizes must be >= 1"),
        ("pool0", (1, 4, 4), "sizes must be >= 1"),
        ("", (4,), "^spec must be a non-empty string"),
        ("conv:4x3,dense:10", (1, 5, 5), "put 'flatten' before it"),
        ("dense:4,conv:4x3", (4,), "conv needs \\(C, H, W\\) input"),
        ("pool2", (4,), "pool needs \\(C, H, W\\) input"),
        ("conv:4x7", (1, 5, 5), "too small"),
        ("dense:3", (0,), "^input_shape must be"),
    ],
)
def test_builder_errors_name_the_problem(spec, input_shape, match):
    with pytest.raises(ValueError, match=match):
        build(spec, input_shape)


def test_init_he_before_relu_glorot_otherwise_and_zero_biases():
    model = build(
        "conv:64x3,relu,conv:64x3,pool2,tanh,flatten,dense:300,relu,dense:300",
        (3, 12, 12),
        dtype=np.float64,
    )
    W_conv_relu, b0, W_conv_tanh, _, W_dense_relu, _, W_dense_last, _ = model.parameters()
    assert not b0.any()
    # A uniform U(-a, a) has max |w| close to a for this many draws (within 2%).
    expected = {
        "conv he": (W_conv_relu, np.sqrt(6 / 27)),
        "conv glorot (next activation tanh)": (W_conv_tanh, np.sqrt(6 / (576 + 576))),
        "dense he": (W_dense_relu, np.sqrt(6 / 1024)),
        "dense glorot (no activation)": (W_dense_last, np.sqrt(6 / 600)),
    }
    for name, (W, bound) in expected.items():
        assert bound * 0.98 < np.abs(W).max() <= bound, name
    assert fans((64, 3, 3, 3)) == (27, 576)
    with pytest.raises(ValueError, match="^shape must be"):
        fans((3,))


def test_init_float32_is_the_float64_draw_rounded():
    rng64, rng32 = np.random.default_rng(1), np.random.default_rng(1)
    w64 = he_uniform(rng64, (5, 4), np.float64)
    np.testing.assert_array_equal(he_uniform(rng32, (5, 4), np.float32), w64.astype(np.float32))
    assert glorot_uniform(rng64, (2, 2), np.float64).dtype == np.float64


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = (get_model("lrpo_cnn", seed=s) for s in (3, 3, 4))
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa, pb)
    assert not np.array_equal(a.parameters()[0], c.parameters()[0])


def test_state_dict_round_trip_in_place():
    model = get_model("lrpo_cnn", seed=0, dtype=np.float64)
    other = get_model("lrpo_cnn", seed=1, dtype=np.float64)
    state = model.state_dict()
    assert list(state)[:4] == ["0.W", "0.b", "3.W", "3.b"] and len(state) == 10
    params_before = other.parameters()
    other.load_state_dict(state)
    assert all(p is q for p, q in zip(params_before, other.parameters()))  # updated in place
    x = np.random.default_rng(2).standard_normal((2, 1, 28, 28))
    np.testing.assert_array_equal(model.forward(x), other.forward(x))
    state["0.W"][...] = 0  # a state dict is a copy, not a view of the model
    assert model.parameters()[0].any()


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda s: s.pop("3.b"), r"missing \['3.b'\]"),
        (lambda s: s.update({"99.W": np.zeros(1)}), r"unexpected \['99.W'\]"),
        (lambda s: s.update({"0.W": np.zeros((64, 1, 3, 2))}), r"state\['0.W'\] has shape"),
        (lambda s: s.update({"0.b": np.zeros(64, np.float32)}), r"state\['0.b'\] has dtype"),
    ],
)
def test_load_state_dict_errors(change, match):
    model = get_model("lrpo_cnn", dtype=np.float64)
    state = model.state_dict()
    change(state)
    before = [p.copy() for p in model.parameters()]
    with pytest.raises(ValueError, match=match):
        model.load_state_dict(state)
    assert all(np.array_equal(p, q) for p, q in zip(before, model.parameters()))


def test_parameters_and_gradients_keep_their_identity_across_steps():
    model = build("conv:2x3,relu,pool2,flatten,dense:3", (1, 6, 6), dtype=np.float64)
    params, grads = model.parameters(), model.gradients()
    x, labels = np.random.default_rng(0).standard_normal((4, 1, 6, 6)), np.array([0, 1, 2, 0])
    for _ in range(2):
        _, dlogits = ops.softmax_cross_entropy(model.forward(x), labels)
        model.backward(dlogits)
        for p, g in zip(params, grads):
            p -= 0.1 * g  # an optimizer updating in place
    assert all(p is q for p, q in zip(params, model.parameters()))
    assert all(g is h for g, h in zip(grads, model.gradients()))
    assert [g.shape for g in grads] == [p.shape for p in params] and grads[0].any()


def test_dtype_astype_and_backend():
    model = build("dense:3,relu,dense:2", (4,), dtype=np.float32)
    assert model.dtype == np.float32
    x = np.ones((1, 4), np.float32)
    assert model.forward(x).dtype == np.float32
    model.astype(np.float64)
    assert model.dtype == np.float64 and all(g.dtype == np.float64 for g in model.gradients())
    assert model.forward(x.astype(np.float64)).dtype == np.float64
    assert model.set_backend("numpy").backend == "numpy"
    with pytest.raises(ValueError, match="^backend must be one of"):
        model.set_backend("tpu")
    with pytest.raises(ValueError, match="^dtype must be"):
        model.astype(np.int32)


def test_layer_misuse_errors():
    with pytest.raises(RuntimeError, match="backward called before forward"):
        Dense(2, 2, rng=0).backward(np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"^layers\[1\] must be"):
        Sequential([Dense(2, 2, rng=0), "relu"])
    with pytest.raises(ValueError, match="^activation must be one of"):
        Activation("gelu")


def _run_layers_one_by_one(model, x, dlogits):
    """The unfused reference: every layer's own forward and backward, in turn."""
    for layer in model.layers:
        x = layer.forward(x)
    grad = dlogits
    for layer in reversed(model.layers):
        grad = layer.backward(grad)
    return x, grad, [g.copy() for g in model.gradients()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_relu_layers_give_identical_logits_and_gradients(dtype):
    """With the numba backend, conv+relu and dense+relu run as the fused kernels; the result
    must be bit-identical to the layers one by one (same products, same bias/relu values)."""
    spec = "conv:4x3p1,relu,pool2,conv:3x3,relu,flatten,dense:6,relu,dense:3"
    model = build(spec, (2, 9, 9), seed=3, dtype=dtype, backend="numba")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 2, 9, 9)).astype(dtype)
    dlogits = rng.standard_normal((5, 3)).astype(dtype)
    logits = model.forward(x)
    kinds = [type(step).__name__ for step in model.steps]
    assert kinds == ["Conv2dReLUPool", "Conv2dReLU", "Flatten", "DenseReLU", "Dense"]
    dx = model.backward(dlogits)
    grads = [g.copy() for g in model.gradients()]
    ref_logits, ref_dx, ref_grads = _run_layers_one_by_one(model, x, dlogits)
    np.testing.assert_array_equal(logits, ref_logits)
    np.testing.assert_array_equal(dx, ref_dx)
    for got, want in zip(grads, ref_grads):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_backward_without_input_grad_fills_the_same_gradients(backend):
    """input_grad=False returns None and skips only what the input gradient needs."""
    model = build("pool2,conv:3x3,relu,flatten,dense:4", (1, 10, 10), seed=5,
                  dtype=np.float64, backend=backend)
    rng = np.random.default_rng(6)
    x, dlogits = rng.standard_normal((3, 1, 10, 10)), rng.standard_normal((3, 4))
    model.forward(x)
    dx = model.backward(dlogits)
    want = [g.copy() for g in model.gradients()]
    model.forward(x)
    assert dx.shape == x.shape and model.backward(dlogits, input_grad=False) is None
    for got, ref in zip(model.gradients(), want):
        np.testing.assert_array_equal(got, ref)
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(dlogits)  # every cache was consumed or dropped
    with pytest.raises(RuntimeError, match="before forward"):
        Sequential([Dense(2, 2)]).backward(np.zeros((1, 2)))


def test_fusion_is_chosen_when_the_backend_is_set_and_keeps_the_parameters():
    """Fusion changes the steps, never the layers: names, order and array objects stay."""
    spec = "conv:2x3,relu,flatten,dense:4,relu,dense:2"
    model = build(spec, (1, 6, 6), seed=7)
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.W", "0.b", "3.W", "3.b", "5.W", "5.b"]
    assert model.steps == model.layers  # the oracle runs the layers as written
    params, grads = model.parameters(), model.gradients()
    model.set_backend("numpy", fuse=True)
    assert [type(s).__name__ for s in model.steps] == ["Conv2dReLU", "Flatten", "DenseReLU",
                                                        "Dense"]
    assert [name for name, _ in model.named_parameters()] == names
    assert all(p is q for p, q in zip(params, model.parameters()))
    assert model.steps[0].params is model.layers[0].params
    x = np.random.default_rng(8).standard_normal((3, 1, 6, 6)).astype(np.float32)
    fused_logits = model.forward(x)
    model.backward(np.ones((3, 2), np.float32))
    assert all(g is h for g, h in zip(grads, model.gradients())) and grads[0].any()
    fused_grads = [g.copy() for g in grads]
    model.set_backend("numpy", fuse=False)
    assert model.steps == model.layers
    np.testing.assert_array_equal(model.forward(x), fused_logits)
    model.backward(np.ones((3, 2), np.float32))
    for got, want in zip(model.gradients(), fused_grads):
        np.testing.assert_array_equal(got, want)


def test_layer_forward_takes_no_fusion_flag():
    import inspect

    for layer_type in (Dense, Conv2d):
        assert list(inspect.signature(layer_type.forward).parameters) == ["self", "x"]


# -- backends, plans, and numbers that must not move ---------------------------------------


@pytest.mark.parametrize("name", ["numpy", "numba", "auto"])
def test_model_and_layers_carry_one_backend_name_and_module(name):
    """``backend`` is the name as given, ``ops`` the module it stands for, on the model and
    on every layer alike."""
    from refimpl import kernels

    model = build("conv:2x3,relu,pool2,flatten,dense:3", (1, 6, 6), backend=name)
    assert model.backend == name and model.ops is kernels.get_backend(name)
    assert all(layer.backend == name and layer.ops is model.ops for layer in model.layers)
    assert Dense(2, 2).backend == "numpy" and Dense(2, 2).ops is ops


def _recording_ops(base, grads_out=()):
    """A backend module stand-in: ``base``'s ops, with every call's name and keywords logged."""
    import types

    from refimpl import kernels

    calls = []

    def wrap(name):
        function = getattr(base, name)

        def call(*args, **kwargs):
            calls.append((name, kwargs))
            return function(*args, **kwargs)

        return call

    names = {name for name in kernels.CONTRACT if "." not in name}
    return types.SimpleNamespace(GRADS_OUT=grads_out, **{n: wrap(n) for n in names}), calls


def test_plan_skips_the_input_gradient_of_the_first_trainable_step_only():
    """input_grad=False: need_dx=False reaches the first step with parameters, every later
    step computes its input gradient, and no step before it runs its backward."""
    from refimpl.kernels.plan import make_plan

    model = build("pool2,conv:3x3,relu,flatten,dense:4", (1, 10, 10), seed=5, dtype=np.float64)
    recording, calls = _recording_ops(ops)
    for layer in model.layers:
        layer.ops = recording
    plan = make_plan(model.layers, recording)  # not the oracle module: fused by default
    assert [type(s).__name__ for s in plan.steps] == ["MaxPool2d", "Conv2dReLU", "Flatten",
                                                      "Dense"]
    assert plan.first_trainable == 1
    plan.forward(np.random.default_rng(6).standard_normal((3, 1, 10, 10)))
    calls.clear()
    assert plan.backward(np.ones((3, 4)), input_grad=False) is None
    assert calls == [("dense_backward", {"need_dx": True}),
                     ("conv2d_relu_backward", {"need_dx": False})]


def test_plan_writes_gradients_in_place_only_where_the_backend_offers_it():
    """A fused step passes its layer's gradient buffers as ``out=`` to the ops the backend
    lists in GRADS_OUT, and copies the gradients in otherwise: the same numbers either way
    (the same kernel), and the arrays are never re-bound."""
    from refimpl.kernels.plan import make_plan

    numba_ops = _numba_backend()
    rng = np.random.default_rng(9)
    x, dy = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    grads = {}
    for grads_out in ((), ("dense_relu_backward",)):
        layers = [Dense(5, 3, rng=1, dtype=np.float64), Activation("relu")]
        buffers = dict(layers[0].grads)
        recording, calls = _recording_ops(numba_ops, grads_out)
        plan = make_plan(layers, recording, fuse=True)
        plan.forward(x)
        plan.backward(dy)
        name, kwargs = calls[-1]
        assert name == "dense_relu_backward"
        if grads_out:
            assert kwargs["out"][0] is buffers["W"] and kwargs["out"][1] is buffers["b"]
        else:
            assert "out" not in kwargs
        assert layers[0].grads["W"] is buffers["W"] and layers[0].grads["b"] is buffers["b"]
        assert buffers["W"].any()
        grads[grads_out] = {k: v.copy() for k, v in buffers.items()}
    for key in ("W", "b"):
        np.testing.assert_array_equal(grads[("dense_relu_backward",)][key], grads[()][key])


def _numba_backend():
    pytest.importorskip("numba", reason="the numba backend needs numba")
    from refimpl import kernels

    return kernels.get_backend("numba")


# A CNN with every fused step (conv+relu+pool, conv+relu, dense+relu) and a plain dense, fit
# for 2 epochs of 4 steps on the embedded Fashion-MNIST sample (128 training, 64 test
# images). The values were recorded on 2026-12-04 on the machine of docs/benchmarks.md
# (x86-64, OpenBLAS); a change of how a model runs (fusion, gradient buffers, the plan) must
# not move them. float64, 1e-12 relative: another BLAS
# build may block its sums differently, a few ulps per product, and 8 SGD steps amplify
# that far less than 1e-12; a changed formula moves the first loss by far more.
SMALL_CNN = "conv:8x3,relu,pool2,conv:8x3,relu,conv:4x3,relu,pool2,flatten,dense:16,relu,dense:10"
RECORDED_SMALL_CNN = {
    "numpy": {
        "loss": [2.6687987385496177, 2.3402429794684103, 2.354774114651595, 2.317332535832332,
                 2.332918717907467, 2.295767037184601, 2.2451998711933245, 2.2632877529379076],
        "val_loss": [2.3115543499209523, 2.276368157066747],
    },
    "numba": {
        "loss": [2.6687987385496172, 2.3402429794684108, 2.354774114651595, 2.3173325358323313,
                 2.3329187179074666, 2.2957670371846017, 2.2451998711933245, 2.263287752937908],
        "val_loss": [2.3115543499209514, 2.276368157066747],
    },
}


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_small_cnn_fit_gives_the_recorded_history(backend):
    from refimpl.data import load_sample
    from refimpl.optim import SGD
    from refimpl.train import Trainer

    if backend == "numba":
        _numba_backend()

    def images(split, count):
        X, y = load_sample(split)
        return (X[:count, None] / 255.0).astype(np.float64), y[:count]

    model = build(SMALL_CNN, (1, 28, 28), seed=0, dtype=np.float64, backend=backend)
    trainer = Trainer(model, SGD(model.parameters(), lr=0.05, momentum=0.9), batch_size=32,
                      seed=0, progress=False)
    history = trainer.fit(images("train", 128), images("test", 64), 2)
    for field, want in RECORDED_SMALL_CNN[backend].items():
        np.testing.assert_allclose(getattr(history, field), want, rtol=1e-12, atol=0,
                                   err_msg=field)
