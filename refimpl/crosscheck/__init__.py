"""Check anyone's learning-rate scheduler against refimpl's, and say which rule parted them.

* :func:`check` -- feed the same signals (losses, an epoch's batch losses, parameter arrays,
  or nothing) to *their* implementation (a torch or transformers scheduler, a PyPI package,
  a paper's code, a schedule function ``t -> lr``) and to a fresh refimpl scheduler; the
  :class:`CheckResult` names the first step that differs, both rates, and the rule of ours
  that fired there with its numbers (the scheduler's ``explain()``).
* :func:`check_optimizer` -- the same for an optimizer: the same gradients in, the parameters
  compared after every update; the :class:`OptimizerCheckResult` names the first step,
  parameter and element that differ, and our update's numbers there (``explain()``).
* :mod:`refimpl.testing` -- ``assert_scheduler_close`` for a test suite.
* :mod:`refimpl.trace` -- record a trace in your own training loop; replay it with
  ``refimpl crosscheck replay TRACE.npz --scheduler NAME``.
* :func:`check_op` -- an op's output and gradients against the oracle of
  :mod:`refimpl.ops`; :func:`torch_op` and :func:`jax_op` make a torch or JAX function into
  the ``(forward, backward)`` pair it drives.
* :func:`replay_scheduler`, :func:`crosscheck_scheduler`, :func:`crosscheck_optimizer` --
  torch / transformers built-ins against ours (optimizers compare parameters).

See ``docs/crosscheck.md``.
"""

from .cli import main
from .compare import CheckResult, check
from .frameworks import (
    CrosscheckResult,
    adversarial_losses,
    compare_traces,
    crosscheck_optimizer,
    crosscheck_scheduler,
    framework_scheduler,
    random_losses,
    replay_scheduler,
    torch_scheduler,
    transformers_scheduler,
)
from .op_adapters import jax_op, torch_op
from .ops import OpCheckResult, check_op
from .optimizers import OptimizerCheckResult, check_optimizer

__all__ = [
    "CheckResult",
    "CrosscheckResult",
    "OpCheckResult",
    "OptimizerCheckResult",
    "adversarial_losses",
    "check",
    "check_op",
    "check_optimizer",
    "compare_traces",
    "crosscheck_optimizer",
    "crosscheck_scheduler",
    "framework_scheduler",
    "jax_op",
    "main",
    "random_losses",
    "replay_scheduler",
    "torch_op",
    "torch_scheduler",
    "transformers_scheduler",
]
