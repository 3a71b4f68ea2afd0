"""Learning-rate schedulers: the standard ones (torch names) and the papers' methods.

Every scheduler follows the protocol in :mod:`refimpl.schedulers.base`; in a loop of one's
own, ``scheduler.apply_to(optimizer)`` (or :func:`apply_to`) writes its rates, and the
momenta CyclicLR/OneCycleLR cycle, into an optimizer. Classes are loaded
lazily so that importing one family does not import the others. To build one by name (a
short name such as ``greedy``, or a class name), use :func:`refimpl.registry.make_scheduler`.
"""

from __future__ import annotations

import importlib

from .base import Scheduler, apply_to

# public class name -> module (relative to this package) that defines it
_CLASSES = {
    "ConstantLR": "decay",
    "StepLR": "decay",
    "MultiStepLR": "decay",
    "ExponentialLR": "decay",
    "CosineAnnealingLR": "cosine",
    "CosineAnnealingWarmRestarts": "cosine",
    "LinearWarmup": "warmup",
    "ReduceLROnPlateau": "plateau",
    "LambdaLR": "functional",
    "MultiplicativeLR": "functional",
    "LinearLR": "decay",
    "PolynomialLR": "decay",
    "SequentialLR": "composite",
    "ChainedScheduler": "composite",
    "CyclicLR": "cyclic",
    "OneCycleLR": "cyclic",
    "SWALR": "swa",
    "ParamGroups": "lr_base",
    "GreedyLR": "greedy",
    "NewtonLR": "newton",
    "HypergradientAdditiveLR": "newton",
    "HypergradientMultiplicativeLR": "newton",
    "DLRS": "dlrs",
    "Adacomp": "dlrs",
    "LRPOSchedule": "lrpo",
}

__all__ = ["Scheduler", "apply_to", *_CLASSES]  # noqa: PLE0604


def __getattr__(name: str):
    if name in _CLASSES:
        module = importlib.import_module(f".{_CLASSES[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
