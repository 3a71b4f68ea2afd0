"""Learning-rate schedulers: the standard ones (torch names) and the papers' methods.

Every scheduler follows the protocol in :mod:`refimpl.schedulers.base`. Classes are loaded
lazily so that importing one family does not import the others.
"""

from __future__ import annotations

import importlib

from .base import Scheduler

# public class name -> module (relative to this package) that defines it
_CLASSES = {
    "ConstantLR": "standard",
    "StepLR": "standard",
    "MultiStepLR": "standard",
    "ExponentialLR": "standard",
    "CosineAnnealingLR": "standard",
    "CosineAnnealingWarmRestarts": "standard",
    "LinearWarmup": "standard",
    "ReduceLROnPlateau": "standard",
    "LambdaLR": "standard",
    "MultiplicativeLR": "standard",
    "LinearLR": "standard",
    "PolynomialLR": "standard",
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

__all__ = ["Scheduler", "make", "NAMES", *_CLASSES]  # noqa: PLE0604


def __getattr__(name: str):
    if name in _CLASSES:
        module = importlib.import_module(f".{_CLASSES[name]}", __name__)
        return getattr(module, name)
    if name == "NAMES":  # the short names live in the registry; class names only here
        from refimpl.registry import SCHEDULER_ALIASES

        return {k: v for k, v in SCHEDULER_ALIASES.items() if v is not None}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make(name: str, lr, **kwargs) -> Scheduler:
    """Build a scheduler by short or class name: :func:`refimpl.registry.make_scheduler`."""
    from refimpl.registry import make_scheduler

    return make_scheduler(name, lr, **kwargs)
