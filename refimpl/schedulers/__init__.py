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
    "GreedyLR": "greedy",
    "NewtonLR": "newton",
    "HypergradientAdditiveLR": "newton",
    "HypergradientMultiplicativeLR": "newton",
    "DLRS": "dlrs",
    "Adacomp": "dlrs",
}

# short CLI names -> class name
NAMES = {
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
}

__all__ = ["Scheduler", "make", "NAMES", *_CLASSES]  # noqa: PLE0604


def __getattr__(name: str):
    if name in _CLASSES:
        module = importlib.import_module(f".{_CLASSES[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make(name: str, lr, **kwargs) -> Scheduler:
    """Build a scheduler from its short name (``cosine``, ``greedy``, ...) or class name."""
    class_name = NAMES.get(name, name)
    if class_name not in _CLASSES:
        raise ValueError(
            f"unknown scheduler {name!r}; choose one of {sorted(NAMES)}"
        )
    return __getattr__(class_name)(lr, **kwargs)
