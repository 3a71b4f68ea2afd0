"""Optimizers over lists of NumPy arrays, with the semantics of ``torch.optim``
(docs/methods.md §2).

Every optimizer shares the machinery of :class:`refimpl.optim.base.Optimizer` (parameter
groups, the ``lr`` property, all-or-nothing state dicts; see that module); each class holds
its update rule, written as equations in its docstring:

* :class:`SGD` -- momentum, dampening, Nesterov (``sgd``),
* :class:`Adam`, :class:`AdamW`, :class:`Adamax`, :class:`NAdam`, :class:`RAdam` -- the
  Adam family (``adam``),
* :class:`RMSprop`, :class:`Adagrad`, :class:`Adadelta` -- per-coordinate scalings
  (``adaptive``).
"""

from __future__ import annotations

from .adam import Adam, Adamax, AdamW, NAdam, RAdam
from .adaptive import Adadelta, Adagrad, RMSprop
from .base import Optimizer
from .sgd import SGD

__all__ = [
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "Optimizer",
    "RAdam",
    "RMSprop",
]
