"""Guards for anything a config file or a results file can steer.

Two rules keep sweeps safe to run from a config someone else wrote:

* results are stored as JSON text only, never with ``pickle`` (unpickling runs code);
* every path named in a config is relative and resolves *inside* the output directory,
  so a config cannot write (or overwrite) files elsewhere.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any


def resolve_inside(root: str | os.PathLike, relative: str, key: str) -> Path:
    """Resolve ``relative`` under ``root``, refusing anything that would leave ``root``.

    Parameters
    ----------
    root : path-like
        The output directory every config path must stay in.
    relative : str
        A path from the config, e.g. ``"results.jsonl"`` or ``"plots/curves"``.
    key : str
        The config key the path came from, named in the error.

    Returns
    -------
    pathlib.Path
        The absolute, symlink-resolved path, guaranteed to lie under ``root``.

    Raises
    ------
    ValueError
        If the path is absolute, empty, contains a NUL byte, uses ``..`` to climb out, or
        resolves (through a symlink) to a place outside ``root``.
    """
    if not isinstance(relative, str) or not relative.strip():
        raise ValueError(f"{key}: expected a non-empty relative path, got {relative!r}")
    if "\x00" in relative:
        raise ValueError(f"{key}: the path contains a NUL byte")
    candidate = Path(relative)
    if candidate.is_absolute() or relative.startswith("~"):
        raise ValueError(
            f"{key}: {relative!r} is absolute; give a path relative to the output directory"
        )
    if ".." in candidate.parts:
        raise ValueError(
            f"{key}: {relative!r} climbs out with '..'; paths must stay inside the "
            "output directory"
        )
    base = Path(root).resolve()
    target = (base / candidate).resolve()
    if target != base and base not in target.parents:
        raise ValueError(
            f"{key}: {relative!r} resolves to {target}, outside the output directory {base} "
            "(a symlink points out); remove the link or choose another name"
        )
    return target


def json_safe(value: Any) -> Any:
    """Return ``value`` as plain JSON data: dicts, lists, str, int, finite float, bool, None.

    NumPy scalars and arrays become Python numbers and lists; tuples become lists;
    non-finite floats (NaN, +-inf: a diverged loss) become ``None``, because strict JSON
    has no spelling for them. Anything else raises ``TypeError`` rather than being
    stored in a form that only Python could read back.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):  # NumPy scalar or array
        return json_safe(value.tolist())
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    raise TypeError(f"cannot store a {type(value).__name__} as JSON: {value!r}")
