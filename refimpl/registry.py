"""Everything that can be named on a command line or in a config file, in one place.

* optimizers -- :func:`make_optimizer`: every class of :mod:`refimpl.optim`, by its name or
  its lower-case name (``sgd``, ``adam``, ``adamw``, ...);
* schedulers -- :func:`make_scheduler`: the short names of :data:`SCHEDULER_ALIASES` and
  every class exported by :mod:`refimpl.schedulers` under its own (torch) name, with the
  run-length arguments (``T_max``, ``total_steps``, ...) filled from the run's length;
* models -- :func:`get_model`: the named models of :mod:`refimpl.model`, or a spec string;
* data sets -- :func:`load_dataset`: Fashion-MNIST (full or the embedded sample) and the
  synthetic sets of :mod:`refimpl.data`;
* the one ``key=value`` parser, :func:`parse_kv`, for ``--scheduler-args`` and the like.

The classes are looked up when asked for, so a class added to :mod:`refimpl.schedulers` or
:mod:`refimpl.optim` is available here without editing this file. This module imports the
others lazily (inside the functions), so any of them may use it without an import cycle.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "DATASETS",
    "RUN_LENGTH",
    "SCHEDULER_ALIASES",
    "dataset_builder",
    "dataset_names",
    "get_model",
    "load_dataset",
    "make_optimizer",
    "make_scheduler",
    "model_names",
    "optimizer_class",
    "optimizer_names",
    "parse_kv",
    "run_length",
    "scheduler_class",
    "scheduler_names",
]

# ----------------------------------------------------------------------------- key=value

_OPEN, _CLOSE = "[(", "])"


def parse_kv(text: str, *, option: str = "--scheduler-args") -> dict[str, object]:
    """Parse ``"k=v,k2=v2"`` into a dict of Python values.

    Values are read as ``int``, ``float`` (``1e-3``, ``inf``, ``-inf``, ``nan``), ``True`` /
    ``False``, ``None`` (any case), a quoted or bare string, or a list: ``milestones=30;60``
    or ``milestones=[30,60]`` (commas inside brackets do not split items); ``(a,b)`` gives a
    tuple (``betas=(0.9,0.999)``).

    Parameters
    ----------
    text : str
        The option's value; empty or blank gives ``{}``.
    option : str
        The option's name, used in error messages.

    Raises
    ------
    ValueError
        An item without ``=``, an empty key or value, a repeated key, or unbalanced brackets;
        the message names ``option``, the item and the fix.

    Examples
    --------
    >>> parse_kv("factor=0.5,patience=3,mode=max,milestones=[30,60],eps=1e-8")
    {'factor': 0.5, 'patience': 3, 'mode': 'max', 'milestones': [30, 60], 'eps': 1e-08}
    """
    out: dict[str, object] = {}
    for item in _split_top(text, ",", option):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ValueError(f"{option}: {item!r} is not of the form key=value; write e.g. "
                             f"{(key or 'name')}=0.5")
        if not value:
            raise ValueError(f"{option}: {item!r} has no value; write {key}=VALUE")
        if key in out:
            raise ValueError(f"{option}: {key!r} is given twice; keep one {key}=...")
        out[key] = _value(value, item, option)
    return out


def _split_top(text: str, sep: str, option: str) -> list[str]:
    """Split ``text`` at ``sep`` outside brackets."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
            if depth < 0:
                raise ValueError(f"{option}: unbalanced {char!r} in {text!r}; close every "
                                 "bracket you open")
        if char == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise ValueError(f"{option}: unclosed bracket in {text!r}; close every bracket you open")
    parts.append("".join(current))
    return parts


def _value(text: str, item: str, option: str) -> object:
    """One value: a bracketed list/tuple, a ``;``-separated list, or a scalar."""
    if text[0] in _OPEN and text[-1] == _CLOSE[_OPEN.index(text[0])]:
        inner = text[1:-1].strip()
        values = [_value(p.strip(), item, option) for p in _split_top(inner, ",", option)
                  if p.strip()] if inner else []
        return values if text[0] == "[" else tuple(values)
    if ";" in text:
        return [_scalar(p) for p in text.split(";") if p.strip()]
    return _scalar(text)


def _scalar(text: str) -> object:
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


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
    first = next(iter(inspect.signature(cls).parameters), None)
    if first != "lr":
        raise ValueError(f"scheduler {name!r} ({cls.__name__}) is built from other schedulers "
                         f"({first}=...), not from a rate; construct it directly")
    if cls.__name__ == "LinearWarmup" and isinstance(kwargs.get("after"), str):
        kwargs["after"] = _warmup_after(lr, kwargs, epochs, steps_per_epoch)
    _fill_run_length(cls, kwargs, epochs, steps_per_epoch, used)
    _check_arguments(cls, kwargs, f"scheduler {name!r}")
    return cls(lr, **kwargs)


def _interval_of(cls: type, kwargs: dict) -> str:
    """The interval the scheduler will run at: the argument, its default, or the class's."""
    if kwargs.get("interval") is not None:
        return kwargs["interval"]
    parameter = inspect.signature(cls).parameters.get("interval")
    if parameter is not None and isinstance(parameter.default, str):
        return parameter.default
    after = kwargs.get("after")
    return getattr(after, "interval", None) or getattr(cls, "interval", "epoch")


def _fill_run_length(cls: type, kwargs: dict, epochs, steps_per_epoch, used: int = 0) -> None:
    parameters = inspect.signature(cls).parameters
    wanted = {**RUN_LENGTH, **RUN_LENGTH_BY_CLASS.get(cls.__name__, {})}
    for argument, source in wanted.items():
        if argument not in parameters or argument in kwargs:
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


def _check_arguments(cls: Callable, kwargs: dict, what: str, supplied: int = 1) -> None:
    """Unknown and missing arguments, and text where a number is expected, as ValueError.

    The first ``supplied`` parameters (the rate, the parameter list) come from the caller.
    """
    try:
        parameters = dict(inspect.signature(cls).parameters)
    except (TypeError, ValueError):  # no signature to check against: the class checks
        return
    for name in list(parameters)[:supplied]:
        del parameters[name]
    named = {n: p for n, p in parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        for key in kwargs:
            if key not in named:
                hint = difflib.get_close_matches(key, list(named), n=1)
                fix = f"did you mean {hint[0]!r}?" if hint else f"it takes {', '.join(named)}"
                raise ValueError(f"{what} ({cls.__name__}) takes no argument {key!r}; {fix}")
    missing = [n for n, p in named.items() if p.default is p.empty and n not in kwargs]
    if missing:
        raise ValueError(f"{what} ({cls.__name__}) needs {', '.join(missing)}; pass "
                         + ", ".join(f"{n}=..." for n in missing)
                         + (" (or the run length: epochs=, steps_per_epoch=)"
                            if set(missing) & set(RUN_LENGTH) else ""))
    for key, value in kwargs.items():
        default = named[key].default if key in named else None
        if (isinstance(value, str) and isinstance(default, (int, float))
                and not isinstance(default, bool)):
            raise ValueError(f"{what}: {key}={value!r} is not a number; write e.g. "  # noqa: TRY004 - bad input is a ValueError throughout
                             f"{key}={default!r}")


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
    classes = _optimizer_classes()
    by_lower = {class_name.lower(): cls for class_name, cls in classes.items()}
    cls = classes.get(name) or by_lower.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; choose one of "
                         f"{', '.join(optimizer_names())}")
    return cls


def make_optimizer(name: str, params, **kwargs: Any):
    """Build optimizer ``name`` over ``params`` with its keyword arguments (``lr=``, ...).

    Raises
    ------
    ValueError
        An unknown name or an argument the class does not take.
    """
    cls = optimizer_class(name)
    _check_arguments(cls, kwargs, f"optimizer {name!r}")
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
    """
    from refimpl import model

    if name in model.MODELS:
        return model.get_model(name, **kwargs)
    if input_shape is None:
        raise ValueError(f"model {name!r} is not one of {model_names()}; a spec string also "
                         "needs input_shape=(features,) or (C, H, W)")
    return model.build(name, input_shape, **kwargs)


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
    return sorted(DATASETS)


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
    if function.__name__ == "load_fashion_mnist":
        return function(split, path=path, subset=subset, **arguments)
    if split != "train":
        raise ValueError(f"data set {name!r} is drawn at random and has only split='train'; "
                         "hold out validation with refimpl.data.train_val_split")
    if path is not None:
        raise ValueError(f"data set {name!r} is synthetic; remove path")
    if subset is not None:
        arguments["n"] = subset
    _check_arguments(function, arguments, f"data set {name!r}", supplied=0)
    return function(**arguments)
