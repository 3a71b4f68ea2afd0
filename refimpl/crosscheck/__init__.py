"""Check anyone's learning-rate scheduler against refimpl's, and say which rule parted them.

* :func:`check` -- feed the same signals (losses, an epoch's batch losses, parameter arrays,
  or nothing) to *their* implementation (a torch or transformers scheduler, a PyPI package,
  a paper's code, a schedule function ``t -> lr``) and to a fresh refimpl scheduler; the
  :class:`CheckResult` names the first step that differs, both rates, and the rule of ours
  that fired there with its numbers (the scheduler's ``explain()``).
* :mod:`refimpl.testing` -- ``assert_scheduler_close`` for a test suite.
* :mod:`refimpl.trace` -- record a trace in your own training loop; replay it with
  ``refimpl crosscheck replay TRACE.npz --scheduler NAME``.
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

__all__ = [
    "CheckResult",
    "CrosscheckResult",
    "adversarial_losses",
    "check",
    "compare_traces",
    "crosscheck_optimizer",
    "crosscheck_scheduler",
    "framework_scheduler",
    "main",
    "random_losses",
    "replay_scheduler",
    "torch_scheduler",
    "transformers_scheduler",
]
