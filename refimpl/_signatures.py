"""What the registry reads from a constructor's signature, so that a bad name or value is a
``ValueError`` saying what to write instead, before the class runs.

* :func:`check_arguments` -- unknown arguments (with the closest name), missing required
  ones, and text given where the default is a number;
* :func:`first_parameter`, :func:`takes`, :func:`default_of` -- the small questions
  :func:`refimpl.registry.make_scheduler` asks to fill run-length arguments.

The functions read ``inspect.signature`` only; they import nothing of :mod:`refimpl`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable

__all__ = ["check_arguments", "default_of", "first_parameter", "takes"]


def first_parameter(cls: Callable) -> str | None:
    """Name of the first parameter of ``cls`` (``"lr"`` for a scheduler built from a rate)."""
    return next(iter(inspect.signature(cls).parameters), None)


def takes(cls: Callable, argument: str) -> bool:
    """Whether ``cls`` has a parameter named ``argument``."""
    return argument in inspect.signature(cls).parameters


def default_of(cls: Callable, argument: str) -> object:
    """The default of parameter ``argument`` of ``cls``; ``inspect.Parameter.empty`` when it
    has none or does not exist."""
    parameter = inspect.signature(cls).parameters.get(argument)
    return inspect.Parameter.empty if parameter is None else parameter.default


def check_arguments(cls: Callable, kwargs: dict, what: str, supplied: int = 1,
                    run_length: Iterable[str] = ()) -> None:
    """Unknown and missing arguments, and text where a number is expected, as ``ValueError``.

    Parameters
    ----------
    cls : callable
        The class (or function) that will be called with ``kwargs``.
    kwargs : dict
        The keyword arguments given.
    what : str
        How the message names the thing built, e.g. ``"scheduler 'greedy'"``.
    supplied : int
        The first ``supplied`` parameters (the rate, the parameter list) come from the
        caller and are not checked.
    run_length : iterable of str
        Arguments the run's length would fill; a message about a missing one says so.
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
                            if set(missing) & set(run_length) else ""))
    for key, value in kwargs.items():
        default = named[key].default if key in named else None
        if (isinstance(value, str) and isinstance(default, (int, float))
                and not isinstance(default, bool)):
            raise ValueError(f"{what}: {key}={value!r} is not a number; write e.g. "  # noqa: TRY004 - bad input is a ValueError throughout
                             f"{key}={default!r}")
