"""refimpl.layers / refimpl.model: parameter counts, builder grammar, state dicts, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import ops
from refimpl.init import fans, glorot_uniform, he_uniform
from refimpl.layers import Activation, Conv2d, Dense, Sequential
from refimpl.model import MODELS, build, get_model, parse


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
