"""The registry: the key=value parser, names -> schedulers/optimizers/models/data sets, and
the run-length defaults."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refimpl import registry
from refimpl.registry import parse_kv


def test_parse_kv_values():
    parsed = parse_kv("a=1, b=0.5,c=true,d=x,e=1;2,f=none,g=[30,60],h=(0.9,0.999),i=inf,"
                      "j=-inf,k=nan,l=1e-3,m='max',n=False,o=[],p=[[1,2],3]")
    nan = parsed.pop("k")
    assert math.isnan(nan)
    assert parsed == {"a": 1, "b": 0.5, "c": True, "d": "x", "e": [1, 2], "f": None,
                      "g": [30, 60], "h": (0.9, 0.999), "i": math.inf, "j": -math.inf,
                      "l": 1e-3, "m": "max", "n": False, "o": [], "p": [[1, 2], 3]}
    assert type(parsed["a"]) is int and type(parsed["l"]) is float
    assert parse_kv("") == {} and parse_kv("  ") == {} and parse_kv("a=1,") == {"a": 1}
    # the two list spellings give the same value
    assert parse_kv("milestones=30;60") == parse_kv("milestones=[30,60]")


@pytest.mark.parametrize(("text", "words"), [
    ("a=1,b", "'b' is not of the form key=value"),
    ("=3", "not of the form key=value"),
    ("a=", "'a=' has no value; write a=VALUE"),
    ("a=1,a=2", "'a' is given twice"),
    ("m=[1,2", "unclosed bracket"),
    ("m=1,2]", "unbalanced ']'"),
])
def test_parse_kv_errors_name_the_option_and_the_item(text, words):
    with pytest.raises(ValueError, match="^--kwargs: ") as info:
        parse_kv(text, option="--kwargs")
    assert words in str(info.value)


def test_every_scheduler_class_is_reachable_by_its_own_name():
    from refimpl import schedulers
    from refimpl.schedulers.base import Scheduler

    names = registry.scheduler_names()
    assert {"none", "cosine", "greedy", "newton", "dlrs", "lrpo"} <= set(names)
    exported = [getattr(schedulers, name) for name in schedulers.__all__]
    classes = [c for c in exported if isinstance(c, type) and issubclass(c, Scheduler)
               and c is not Scheduler]
    assert len(classes) >= 16
    for cls in classes:
        assert cls.__name__ in names
        assert registry.scheduler_class(cls.__name__) is cls
    for alias, class_name in registry.SCHEDULER_ALIASES.items():
        cls = registry.scheduler_class(alias)
        assert (cls is None) if class_name is None else cls.__name__ == class_name


def test_run_length_fills_T_max_and_batches_per_epoch_in_the_schedulers_interval():
    per_epoch = registry.make_scheduler("cosine", 0.1, epochs=4, steps_per_epoch=10)
    per_step = registry.make_scheduler("CosineAnnealingLR", 0.1, epochs=4, steps_per_epoch=10,
                                       interval="step")
    given = registry.make_scheduler("cosine", 0.1, epochs=4, steps_per_epoch=10, T_max=7)
    assert (per_epoch.T_max, per_step.T_max, given.T_max) == (4, 40, 7)
    newton = registry.make_scheduler("newton", 0.1, epochs=4, steps_per_epoch=10)
    assert newton.batches_per_epoch == 10
    assert registry.make_scheduler("none", 0.1, epochs=4) is None


def test_warmup_after_by_name_gets_the_rest_of_the_run():
    warmup = registry.make_scheduler("warmup", 0.1, epochs=20, steps_per_epoch=10,
                                     total_iters=5, after="cosine", after_eta_min=0.01)
    assert type(warmup.after).__name__ == "CosineAnnealingLR"
    assert (warmup.after.T_max, warmup.after.eta_min) == (15, 0.01)
    # per step: 20 epochs of 10 steps, 5 warm-up steps, 195 left for the cosine
    per_step = registry.make_scheduler("warmup", 0.1, epochs=20, steps_per_epoch=10,
                                       total_iters=5, after="cosine", interval="step")
    assert (per_step.after.interval, per_step.after.T_max) == ("step", 195)


def test_a_class_added_to_schedulers_is_found_without_editing_the_registry(monkeypatch):
    from refimpl import schedulers
    from refimpl.schedulers.base import Scheduler

    class HalvingLR(Scheduler):
        def __init__(self, lr, total_steps: int):
            super().__init__(lr)
            self.total_steps = total_steps

    monkeypatch.setattr(schedulers, "HalvingLR", HalvingLR, raising=False)
    monkeypatch.setattr(schedulers, "__all__", [*schedulers.__all__, "HalvingLR"])
    made = registry.make_scheduler("HalvingLR", 0.1, epochs=3, steps_per_epoch=5)
    assert isinstance(made, HalvingLR) and made.total_steps == 3  # interval "epoch"


def test_torch_run_length_arguments_of_one_cycle_and_polynomial():
    from refimpl import schedulers

    if not {"OneCycleLR", "PolynomialLR", "ChainedScheduler"} <= set(schedulers.__all__):
        pytest.skip("OneCycleLR / PolynomialLR / ChainedScheduler are not in this installation")
    one_cycle = registry.make_scheduler("OneCycleLR", 0.1, epochs=3, steps_per_epoch=7,
                                        max_lr=0.5)
    assert one_cycle.total_steps == 21  # interval "step": every optimizer step of the run
    polynomial = registry.make_scheduler("PolynomialLR", 0.1, epochs=3, steps_per_epoch=7)
    assert polynomial.total_iters == 3  # interval "epoch"
    with pytest.raises(ValueError, match="construct it directly"):
        registry.make_scheduler("ChainedScheduler", 0.1)


@pytest.mark.parametrize(("name", "kwargs", "words"), [
    ("nope", {}, "unknown scheduler 'nope'; did you mean 'none'?"),
    ("cosine", {}, "needs T_max; pass T_max=..."),
    ("greedy", {"fctor": 0.5}, "takes no argument 'fctor'; did you mean 'factor'?"),
    ("greedy", {"factor": "abc"}, "factor='abc' is not a number; write e.g. factor="),
    ("none", {"T_max": 3}, "takes no arguments"),
])
def test_scheduler_errors_say_what_to_do(name, kwargs, words):
    with pytest.raises(ValueError) as info:
        registry.make_scheduler(name, 0.1, **kwargs)
    assert words in str(info.value)


def test_optimizers_by_lower_case_or_class_name():
    from refimpl import optim

    assert {"sgd", "adam", "adamw"} <= set(registry.optimizer_names())
    params = [np.zeros(3)]
    assert type(registry.make_optimizer("sgd", params, lr=0.1, momentum=0.9)) is optim.SGD
    assert type(registry.make_optimizer("AdamW", params, lr=0.1)) is optim.AdamW
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprp'"):
        registry.make_optimizer("rmsprp", params, lr=0.1)
    with pytest.raises(ValueError, match="takes no argument 'momentum'"):
        registry.make_optimizer("adam", params, lr=0.1, momentum=0.9)


def test_models_by_name_or_spec():
    assert set(registry.model_names()) >= {"mlp", "lrpo_cnn"}
    named = registry.get_model("mlp", seed=0)
    spec = registry.get_model("dense:4,relu,dense:2", (3,), seed=0)
    assert named.forward(np.zeros((1, 784), np.float32)).shape == (1, 10)
    assert spec.forward(np.zeros((2, 3), np.float32)).shape == (2, 2)
    with pytest.raises(ValueError, match="needs input_shape"):
        registry.get_model("dense:4")


def test_datasets_one_entry_point():
    assert set(registry.dataset_names()) >= {"fashion-mnist", "fashion-mnist-sample", "blobs",
                                             "spirals", "regression"}
    X, y = registry.load_dataset("fashion-mnist-sample", "test", subset=40, seed=1)
    assert X.shape == (40, 1, 28, 28) and X.dtype == np.float32 and len(np.unique(y)) == 10
    X, y = registry.load_dataset("blobs", subset=30, seed=2, dtype=np.float64, n_classes=4)
    assert X.shape == (30, 2) and X.dtype == np.float64 and set(y) <= {0, 1, 2, 3}
    again = registry.load_dataset("blobs", subset=30, seed=2, dtype=np.float64, n_classes=4)
    np.testing.assert_array_equal(X, again[0])
    with pytest.raises(ValueError, match="only split='train'"):
        registry.load_dataset("spirals", "test")
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        registry.load_dataset("mnist")


def test_one_key_value_parser_in_the_package():
    # the CLI, the sweep and the cross-checks share the registry's parser
    from refimpl import cli_train

    assert cli_train.parse_kv is registry.parse_kv


def test_importing_the_registry_imports_none_of_what_it_names():
    # the registry looks classes up when asked, so any module may import it without a cycle;
    # it imports only its own two helpers (the key=value parser, the signature checks)
    import subprocess
    import sys

    code = ("import sys, refimpl.registry; "
            "print(sorted(m for m in sys.modules if m.startswith('refimpl.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['refimpl._kv', 'refimpl._signatures', 'refimpl.registry']"


def test_backend_names_are_the_kernels_table_then_auto():
    from refimpl import kernels

    names = registry.backend_names()
    assert names == [*kernels.BACKENDS, "auto"]
    assert {"numpy", "numba", "cuda"} <= set(kernels.BACKENDS)
    for name in kernels.BACKENDS:
        assert kernels.resolve(name) == name  # get_backend accepts every listed name
    assert kernels.name_of(kernels.get_backend("numpy")) == "numpy"
    with pytest.raises(ValueError, match="is not a backend"):
        kernels.name_of(np)


def test_dtype_nan_policy_and_loss_names_are_what_the_code_accepts():
    from refimpl.model import build
    from refimpl.ops.checks import FLOAT_DTYPES
    from refimpl.optim import SGD
    from refimpl.training import Trainer

    assert [np.dtype(name) for name in registry.dtype_names()] == list(FLOAT_DTYPES)
    model = build("dense:2", (3,), seed=0)
    optimizer = SGD(model.parameters(), lr=0.1)
    assert registry.nan_policy_names() == ["raise", "skip-batch", "rollback"]
    for policy in registry.nan_policy_names():
        assert Trainer(model, optimizer, nan_policy=policy).nan_policy == policy
    for loss in registry.loss_names():
        assert Trainer(model, optimizer, loss=loss).loss == loss
    with pytest.raises(ValueError, match="nan_policy must be one of"):
        Trainer(model, optimizer, nan_policy="ignore")


def test_synthetic_data_sets_are_the_drawn_ones():
    assert [n for n in registry.dataset_names() if registry.is_synthetic(n)] == [
        "blobs", "regression", "spirals"]
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        registry.is_synthetic("mnist")


def test_an_optimizer_name_that_is_not_a_string_is_a_value_error():
    with pytest.raises(ValueError, match="optimizer must be a name such as 'sgd', got None"):
        registry.optimizer_class(None)
