"""Everything that can be named on a command line or in a config file, in one place.

* optimizers -- :func:`make_optimizer`: every class of :mod:`refimpl.optim`, by its name or
  its lower-case name (``sgd``, ``adam``, ``adamw``, ...); :func:`optimizer_default_lr` reads
  each one's default rate from its signature;
* schedulers -- :func:`make_scheduler`: the short names of :data:`SCHEDULER_ALIASES` and
  every class exported by :mod:`refimpl.schedulers` under its own (torch) name, with the
  run-length arguments (``T_max``, ``total_steps``, ...) filled from the run's length;
* models -- :func:`get_model`: the named models of :mod:`refimpl.model`, or a spec string
  (:func:`check_model` checks a name or spec without building it);
* data sets -- :func:`load_dataset`: Fashion-MNIST (full or the embedded sample) and the
  synthetic sets of :mod:`refimpl.data`;
* backends, dtypes, NaN policies, losses -- :func:`backend_names`, :func:`dtype_names`,
  :func:`nan_policy_names`, :func:`loss_names`: read from the module that defines each;
* the one ``key=value`` parser, :func:`parse_kv`, for ``--scheduler-args`` and the like.

A command line, a sweep file, a cross-check or a study takes its choices from here and
spells none of them again (``tests/registry/test_name_table.py`` looks for copies). The classes are
looked up when asked for, so a class added to :mod:`refimpl.schedulers` or
:mod:`refimpl.optim` is available here without editing this file. This module imports the
others lazily (inside the functions), so any of them may use it without an import cycle;
what it reads from signatures is in :mod:`refimpl._signatures`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import numpy as np

from refimpl._kv import parse_kv
from refimpl._signatures import check_arguments, default_of, first_parameter, takes

__all__ = [
    "DATASETS",
    "RUN_LENGTH",
    "SCHEDULER_ALIASES",
    "backend_names",
    "check_model",
    "dataset_builder",
    "dataset_names",
    "dtype_names",
    "get_model",
    "is_synthetic",
    "load_dataset",
    "loss_names",
    "make_optimizer",
    "make_scheduler",
    "model_names",
    "nan_policy_names",
    "optimizer_class",
    "optimizer_default_lr",
    "optimizer_names",
    "parse_kv",
    "run_length",
    "scheduler_class",
    "scheduler_names",
]

# ----------------------------------------------------------------------------- schedulers

#: short name -> class name in :mod:`refimpl.schedulers` (``None``: no scheduler)
SCHEDULER_ALIASES: dict[str, str | None] = {
    "none": None,
    "constant": "ConstantLR",
    "step": "StepLR",
    "multistep": "MultiStepLR",
    "exponential": "ExponentialLR",
    "cosine": "CosineAnnealingLR",
    "cosine-restarts": "CosineAnnealingWarmRestarts",
    "warmup": "LinearWarmup",
    "plateau": "ReduceLROnPlateau",
    "greedy": "GreedyLR",
    "newton": "NewtonLR",
    "hypergrad-add": "HypergradientAdditiveLR",
    "hypergrad-mul": "HypergradientMultiplicativeLR",
    "dlrs": "DLRS",
    "adacomp": "Adacomp",
    "lrpo": "LRPOSchedule",
}

#: constructor argument -> what fills it when the user does not: ``"run"`` is the run length
#: in the scheduler's own interval (``epochs``, or ``epochs * steps_per_epoch`` for
#: ``interval="step"``), ``"steps_per_epoch"`` the optimizer steps per epoch. Applied to any
#: scheduler class that takes the argument (torch's names for them).
RUN_LENGTH: dict[str, str] = {
    "T_max": "run",                      # CosineAnnealingLR
    "total_steps": "run",                # OneCycleLR
    "batches_per_epoch": "steps_per_epoch",  # NewtonLR
}
#: arguments filled with the run length only for the classes named here (elsewhere
#: ``total_iters`` is a warm-up length, e.g. ConstantLR's)
RUN_LENGTH_BY_CLASS: dict[str, dict[str, str]] = {
    "PolynomialLR": {"total_iters": "run"},
}


def _scheduler_classes(missing: dict[str, str] | None = None) -> dict[str, type]:
    """Every Scheduler subclass :mod:`refimpl.schedulers` exports, by class name.

    Names whose module cannot be imported here go into ``missing`` (name -> reason).
    """
    from refimpl import schedulers
    from refimpl.schedulers.base import Scheduler

    found = {}
    for name in getattr(schedulers, "__all__", ()):
        try:
            value = getattr(schedulers, name)
        except (AttributeError, ImportError) as exc:  # a family not available here
            if missing is not None:
                missing[name] = str(exc)
            continue
        if isinstance(value, type) and issubclass(value, Scheduler) and value is not Scheduler:
            found[name] = value
    return found


def scheduler_names() -> list[str]:
    """The short names, then every scheduler class name, each list sorted."""
    return sorted(SCHEDULER_ALIASES) + sorted(_scheduler_classes())


def scheduler_class(name: str) -> type | None:
    """The class that ``name`` (short or class name) builds; ``None`` for ``"none"``.

    Raises
    ------
    ValueError
        An unknown name (the message lists the known ones), or a class whose module cannot
        be imported in this installation.
    """
    class_name = SCHEDULER_ALIASES.get(name, name)
    if class_name is None:
        return None
    missing: dict[str, str] = {}
    classes = _scheduler_classes(missing)
    if class_name in missing:
        raise ValueError(f"scheduler {name!r} ({class_name}) is not available in this "
                         f"installation: {missing[class_name]}")
    if class_name not in classes:
        known = sorted(SCHEDULER_ALIASES) + sorted(classes)
        hint = difflib.get_close_matches(name, known, n=1)
        fix = f"did you mean {hint[0]!r}? " if hint else ""
        raise ValueError(f"unknown scheduler {name!r}; {fix}choose one of {', '.join(known)}")
    return classes[class_name]


def run_length(interval: str, epochs: int | None, steps_per_epoch: int | None) -> int | None:
    """The run's length in ``interval`` units: ``epochs`` or ``epochs * steps_per_epoch``."""
    if epochs is None:
        return None
    if interval == "step":
        return None if steps_per_epoch is None else int(epochs) * int(steps_per_epoch)
    return int(epochs)


def make_scheduler(name: str, lr, *, epochs: int | None = None,
                   steps_per_epoch: int | None = None, **kwargs: Any):
    """Build scheduler ``name`` (a short name or a class name) starting from rate ``lr``.

    Arguments in :data:`RUN_LENGTH` that the class takes and ``kwargs`` does not give are
    filled from the run: ``T_max`` and ``total_steps`` with :func:`run_length` in the
    scheduler's interval, ``batches_per_epoch`` with ``steps_per_epoch``. For ``warmup``
    (``LinearWarmup``), ``after`` may be a scheduler name; ``after_<key>=value`` items
    configure it, and its run length is the run minus ``total_iters``.

    Parameters
    ----------
    name : str
        See :func:`scheduler_names`; ``"none"`` returns ``None`` (a fixed rate).
    lr : float or list of float
        Initial rate(s).
    epochs, steps_per_epoch : int, optional
        The run's length; without them nothing is filled in.
    **kwargs
        The class's own arguments.

    Raises
    ------
    ValueError
        An unknown name, an argument the class does not take, a missing required one, or
        a text value where the class expects a number.
    """
    return _build_scheduler(name, lr, epochs, steps_per_epoch, 0, dict(kwargs))


def _build_scheduler(name: str, lr, epochs, steps_per_epoch, used: int, kwargs: dict):
    """:func:`make_scheduler` for a scheduler that starts after ``used`` of the run's
    iterations (in its own interval): its run length is what is left."""
    cls = scheduler_class(name)
    if cls is None:
        if kwargs:
            raise ValueError(f"scheduler 'none' takes no arguments, got {sorted(kwargs)}; "
                             "name the scheduler they are for (e.g. --scheduler greedy)")
        return None
    first = first_parameter(cls)
    if first != "lr":
        raise ValueError(f"scheduler {name!r} ({cls.__name__}) is built from other schedulers "
                         f"({first}=...), not from a rate; construct it directly")
    if cls.__name__ == "LinearWarmup" and isinstance(kwargs.get("after"), str):
        kwargs["after"] = _warmup_after(lr, kwargs, epochs, steps_per_epoch)
    _fill_run_length(cls, kwargs, epochs, steps_per_epoch, used)
    check_arguments(cls, kwargs, f"scheduler {name!r}", run_length=RUN_LENGTH)
    return cls(lr, **kwargs)


def _interval_of(cls: type, kwargs: dict) -> str:
    """The interval the scheduler will run at: the argument, its default, or the class's."""
    if kwargs.get("interval") is not None:
        return kwargs["interval"]
    default = default_of(cls, "interval")
    if isinstance(default, str):
        return default
    after = kwargs.get("after")
    return getattr(after, "interval", None) or getattr(cls, "interval", "epoch")


def _fill_run_length(cls: type, kwargs: dict, epochs, steps_per_epoch, used: int = 0) -> None:
    wanted = {**RUN_LENGTH, **RUN_LENGTH_BY_CLASS.get(cls.__name__, {})}
    for argument, source in wanted.items():
        if argument in kwargs or not takes(cls, argument):
            continue
        if source == "steps_per_epoch":
            value = steps_per_epoch
        else:
            value = run_length(_interval_of(cls, kwargs), epochs, steps_per_epoch)
            value = None if value is None else max(1, value - used)
        if value is not None:
            kwargs[argument] = value


def _warmup_after(lr, kwargs: dict, epochs, steps_per_epoch):
    """Build ``LinearWarmup``'s ``after`` from its name and the ``after_*`` items; it runs
    for what is left of the run after the warm-up's ``total_iters``."""
    after_name = kwargs.pop("after")
    after_kwargs = {k[len("after_"):]: kwargs.pop(k) for k in list(kwargs)
                    if k.startswith("after_")}
    if kwargs.get("interval") is not None and after_name != "none":  # the after's too
        after_kwargs.setdefault("interval", kwargs["interval"])
    warmup_iters = int(kwargs.get("total_iters", 5))
    return _build_scheduler(after_name, lr, epochs, steps_per_epoch, warmup_iters,
                            after_kwargs)


# ----------------------------------------------------------------------------- optimizers

def _optimizer_classes() -> dict[str, type]:
    from refimpl import optim

    base = optim.Optimizer
    names = getattr(optim, "__all__", None) or [n for n in dir(optim) if not n.startswith("_")]
    return {name: value for name in names
            if isinstance(value := getattr(optim, name, None), type)
            and issubclass(value, base) and value is not base}


def optimizer_names() -> list[str]:
    """Lower-case names of every optimizer class of :mod:`refimpl.optim` (``sgd``, ...)."""
    return sorted(name.lower() for name in _optimizer_classes())


def optimizer_class(name: str) -> type:
    """The optimizer class for ``name`` (``sgd``, ``adam``, or a class name like ``AdamW``)."""
    if not isinstance(name, str):  # a ValueError, as for every bad input here
        raise ValueError(  # noqa: TRY004
            f"optimizer must be a name such as 'sgd', got {name!r}; choose one of "
            f"{', '.join(optimizer_names())}")
    classes = _optimizer_classes()
    by_lower = {class_name.lower(): cls for class_name, cls in classes.items()}
    cls = classes.get(name) or by_lower.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; choose one of "
                         f"{', '.join(optimizer_names())}")
    return cls


def optimizer_default_lr(name: str) -> float | None:
    """The learning rate optimizer ``name`` uses when none is given: the default of its
    constructor's ``lr`` (torch's, e.g. 0.001 for ``adam``); ``None`` when it has none.

    >>> optimizer_default_lr("adam")
    0.001
    """
    default = default_of(optimizer_class(name), "lr")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return float(default)
    return None


def make_optimizer(name: str, params, **kwargs: Any):
    """Build optimizer ``name`` over ``params`` with its keyword arguments (``lr=``, ...).

    Raises
    ------
    ValueError
        An unknown name or an argument the class does not take.
    """
    cls = optimizer_class(name)
    check_arguments(cls, kwargs, f"optimizer {name!r}")
    return cls(params, **kwargs)


# ----------------------------------------------------------------------------- models

def model_names() -> list[str]:
    """The named models of :data:`refimpl.model.MODELS`."""
    from refimpl import model

    return sorted(model.MODELS)


def get_model(name: str, input_shape: tuple[int, ...] | None = None, **kwargs: Any):
    """A named model (``mlp``, ``lrpo_cnn``) or a spec string (``"dense:64,relu,dense:10"``).

    A spec needs ``input_shape`` (per example); ``kwargs`` (``seed``, ``dtype``, ``backend``)
    go to :func:`refimpl.model.get_model` or :func:`refimpl.model.build`.

    Raises
    ------
    ValueError
        A spec that cannot be parsed or built (the message explains the grammar), or a spec
        without ``input_shape``; when ``name`` is close to a model name (``"mpl"``), the
        message begins with that name (``did you mean 'mlp'?``).
    """
    from refimpl import model

    if name in model.MODELS:
        return model.get_model(name, **kwargs)
    if input_shape is None:
        hint = _model_hint(name)
        raise ValueError(f"model {name!r} is not one of {model_names()}; "
                         f"{f'did you mean {hint!r}? ' if hint else ''}a spec string "
                         "also needs input_shape=(features,) or (C, H, W)")
    try:
        return model.build(name, input_shape, **kwargs)
    except ValueError as exc:
        raise _with_model_hint(name, exc) from None


def check_model(name: str) -> None:
    """Refuse a ``name`` that is neither a named model nor a spec string that parses, without
    building anything (so before any data is loaded; sizes that do not fit the data are
    found when the model is built). The same ``ValueError`` as :func:`get_model`."""
    from refimpl import model

    if name in model.MODELS:
        return
    try:
        model.parse(name)
    except ValueError as exc:
        raise _with_model_hint(name, exc) from None


def _model_hint(name: Any) -> str | None:
    """The model name closest to ``name`` (``"mpl"`` -> ``"mlp"``), if one is close."""
    hint = difflib.get_close_matches(name, model_names(), n=1) if isinstance(name, str) else []
    return hint[0] if hint else None


def _with_model_hint(name: Any, exc: ValueError) -> ValueError:
    """``exc`` (a spec that does not parse or build), led by a suggestion when ``name`` is
    close to a model name."""
    hint = _model_hint(name)
    if hint is None:
        return exc
    return ValueError(f"model {name!r} is not a named model: did you mean {hint!r}? As a spec "
                      f"string: {exc}")


# ----------------------------------------------------------------------------- data sets

#: data set name -> (function in :mod:`refimpl.data`, default keyword arguments)
DATASETS: dict[str, tuple[str, dict[str, Any]]] = {
    "fashion-mnist": ("load_fashion_mnist", {"source": "full"}),
    "fashion-mnist-sample": ("load_fashion_mnist", {"source": "sample"}),
    "blobs": ("make_blobs", {}),
    "spirals": ("make_spirals", {}),
    "regression": ("make_regression", {}),
}


def dataset_names() -> list[str]:
    """Every data set name of :data:`DATASETS`, sorted."""
    return sorted(DATASETS)


def is_synthetic(name: str) -> bool:
    """Whether data set ``name`` is drawn at random from a seed (``blobs``, ``spirals``,
    ``regression``): it has only a ``"train"`` split, and its size is chosen."""
    dataset_builder(name)  # an unknown name: the error lists the known ones
    return DATASETS[name][0] != "load_fashion_mnist"


def dataset_builder(name: str) -> Callable:
    """The :mod:`refimpl.data` function behind data set ``name`` (for checking arguments)."""
    from refimpl import data

    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(dataset_names())}")
    return getattr(data, DATASETS[name][0])


def load_dataset(name: str, split: str = "train", *, path: str | None = None,
                 subset: int | None = None, seed: int = 0, dtype: Any = np.float32,
                 **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of data set ``name``.

    Parameters
    ----------
    name : str
        See :func:`dataset_names`. ``fashion-mnist`` reads the installed IDX files (an error
        naming the places searched when they are absent); ``fashion-mnist-sample`` the
        embedded 2,000 / 500 images; ``blobs``, ``spirals`` and ``regression`` are drawn
        from ``seed`` and have only a ``"train"`` split (hold out validation with
        :func:`refimpl.data.train_val_split`).
    split : {"train", "test"}
    path : str, optional
        Directory of the Fashion-MNIST files.
    subset : int, optional
        Fashion-MNIST: keep this many images, stratified by class; synthetic sets: draw
        this many examples (their ``n``).
    seed : int
    dtype : numpy dtype
    **kwargs
        Further arguments of the :mod:`refimpl.data` function (``flatten``, ``normalize``,
        ``n_classes``, ``noise``, ...).
    """
    function = dataset_builder(name)
    arguments = {**DATASETS[name][1], **kwargs, "seed": seed, "dtype": dtype}
    if not is_synthetic(name):
        return function(split, path=path, subset=subset, **arguments)
    if split != "train":
        raise ValueError(f"data set {name!r} is drawn at random and has only split='train'; "
                         "hold out validation with refimpl.data.train_val_split")
    if path is not None:
        raise ValueError(f"data set {name!r} is synthetic; remove path")
    if subset is not None:
        arguments["n"] = subset
    check_arguments(function, arguments, f"data set {name!r}", supplied=0)
    return function(**arguments)


# ----------------------------------------------------------------------------- run settings
# Each list is read from the module that acts on it, so a name added there is offered here.

def backend_names() -> list[str]:
    """The backends of :data:`refimpl.kernels.BACKENDS` (``numpy``, ``numba``, ``cuda``), then
    ``auto``, the fastest usable one. Which of them run on this machine:
    :func:`refimpl.kernels.available`."""
    from refimpl import kernels

    return [*kernels.BACKENDS, "auto"]


def dtype_names() -> list[str]:
    """The float dtypes every op accepts (:data:`refimpl.ops.checks.FLOAT_DTYPES`)."""
    from refimpl.ops.checks import FLOAT_DTYPES

    return [dtype.name for dtype in FLOAT_DTYPES]


def nan_policy_names() -> list[str]:
    """What a run may do on a NaN/inf loss (:data:`refimpl.training.nan_policy.NAN_POLICIES`):
    ``raise``, ``skip-batch``, ``rollback``."""
    from refimpl.training.nan_policy import NAN_POLICIES

    return list(NAN_POLICIES)


def loss_names() -> list[str]:
    """The losses the trainer computes (:data:`refimpl.training.loop.LOSSES`)."""
    from refimpl.training.loop import LOSSES

    return list(LOSSES)
