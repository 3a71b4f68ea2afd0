"""Sweep config files: parse the TOML, validate every key, expand it into runs.

A sweep file has four tables (only ``[base]`` is required)::

    [sweep]                  # how to search
    name = "greedy-vs-cosine"
    strategy = "grid"        # "grid" (cartesian product) or "random"
    samples = 20             # random only: number of draws
    seed = 0                 # random only: seed of the draws
    results = "results.jsonl"

    [base]                   # what every run shares (one run config, see RUN_KEYS)
    epochs = 2
    data = { name = "blobs", n = 512 }
    model = { spec = "dense:32,relu,dense:3" }
    optimizer = { name = "sgd", lr = 0.1 }

    [grid]                   # axes: dotted key -> list of values (cartesian product)
    seed = [0, 1, 2]
    optimizer.lr = [0.1, 0.03]
    scheduler = [{ name = "greedy", factor = 0.9 }, { name = "cosine" }]

    [random]                 # axes: dotted key -> distribution (random strategy only)
    optimizer.momentum = { uniform = [0.0, 0.95] }
    optimizer.weight_decay = { log_uniform = [1e-6, 1e-3] }

``[[grid]]`` (an array of tables) gives a union of grids, one per table. With
``strategy = "random"``, each of the ``samples`` draws from ``[random]`` is crossed with the
grid, so ``seed = [0, 1, 2]`` in ``[grid]`` repeats every draw over three seeds.

Names (data sets, models, optimizers, schedulers, backends, dtypes, losses, NaN policies)
are those of :mod:`refimpl.registry`; a scheduler's run-length arguments (``T_max``,
``total_steps``, ...) default to the run's length, as on the command line.

A run config is ``[base]`` with the axes' values written over it (a value replaces the
whole entry it names), completed with ``DEFAULTS``. Its identity is :func:`run_id`, a hash
of its canonical JSON, so re-running a sweep recognises the runs already done.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import itertools
import json
import math
import random
import tomllib  # Python >= 3.11 (setup.cfg's python_requires)
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refimpl import registry
from refimpl.safety import resolve_inside


class SweepConfigError(ValueError):
    """A sweep file is malformed; the message names the file, the key and the fix."""


# --------------------------------------------------------------------------- schema

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "epochs": 1,
    "batch_size": 64,
    "backend": "numpy",
    "dtype": "float32",
    "loss": "cross_entropy",
    "val_fraction": 0.2,
    "nan_policy": "raise",
    "checkpoint": False,
}

#: run key -> the registry's list of its names (read when a sweep is validated)
CHOICES: dict[str, Callable[[], list[str]]] = {
    "backend": registry.backend_names,
    "dtype": registry.dtype_names,
    "loss": registry.loss_names,
    "nan_policy": registry.nan_policy_names,
}
STRATEGIES = ("grid", "random")
DISTRIBUTIONS = ("uniform", "log_uniform", "int", "choice")
SWEEP_KEYS = ("name", "strategy", "samples", "seed", "results", "max_runs")
FILE_TABLES = ("sweep", "base", "grid", "random")
TABLE_KEYS = ("data", "model", "optimizer", "scheduler")
RUN_KEYS = (*DEFAULTS, *TABLE_KEYS)
MAX_RUNS = 100_000


@dataclass(frozen=True)
class Run:
    """One training run of a sweep: its identity and its complete config."""

    id: str
    config: dict


@dataclass
class Sweep:
    """A parsed sweep: settings plus the expanded, validated, de-duplicated runs."""

    name: str
    strategy: str
    results: str
    runs: list[Run] = field(default_factory=list)
    duplicates: int = 0  # axis points that produced an already-listed config


def canonical_json(config: dict) -> str:
    """The one text form of a config that :func:`run_id` hashes (sorted keys, no spaces)."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def run_id(config: dict) -> str:
    """Stable identity of a run: the first 16 hex digits of SHA-256 of its canonical JSON.

    Independent of key order, process, machine and Python hash seed; ``1`` and ``1.0``
    differ (TOML keeps the distinction).
    """
    return hashlib.sha256(canonical_json(config).encode("ascii")).hexdigest()[:16]


# --------------------------------------------------------------------------- entry points


def load_sweep(path: str | Path, out_dir: str | Path | None = None) -> Sweep:
    """Read, validate and expand the sweep file at ``path``.

    Raises
    ------
    SweepConfigError
        On unreadable files, TOML syntax errors and every invalid key (named in the message).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SweepConfigError(f"{path}: cannot read the sweep file ({err})") from None
    return parse_sweep(text, source=str(path), out_dir=out_dir, default_name=path.stem)


def parse_sweep(text: str, source: str = "<sweep>", out_dir: str | Path | None = None,
                default_name: str = "sweep") -> Sweep:
    """Parse TOML text into a :class:`Sweep` (see :func:`expand_sweep`)."""
    try:
        document = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as err:
        raise SweepConfigError(f"{source}: not valid TOML: {err}") from None
    return expand_sweep(document, source=source, out_dir=out_dir, default_name=default_name)


def expand_sweep(document: dict, source: str = "<sweep>", out_dir: str | Path | None = None,
                 default_name: str = "sweep") -> Sweep:
    """Validate a parsed sweep document and expand it into its list of runs.

    ``out_dir``, when given, is where path-valued settings (``sweep.results``) must stay.
    """
    fail = _Failer(source)
    if not isinstance(document, dict):
        fail("", f"the sweep must be a table, got {type(document).__name__}")
    _check_known(document, FILE_TABLES, "", fail)
    _check_plain(document, "", fail)
    if "base" not in document:
        fail("base", "missing; add a [base] table with the settings every run shares")
    settings = _sweep_settings(document.get("sweep", {}), default_name, out_dir, fail)
    base = _table(document["base"], "base", fail)
    random_axes = _random_axes(document.get("random", {}), settings["strategy"], fail)
    grids = _grid_tables(document.get("grid", {}), random_axes, fail)

    sizes = [math.prod(len(v) for v in axes.values()) for axes in grids]
    n_points = sum(sizes) * (settings["samples"] if settings["strategy"] == "random" else 1)
    if n_points > settings["max_runs"]:
        fail("sweep.max_runs", f"the sweep expands to {n_points} runs, more than max_runs = "
             f"{settings['max_runs']}; shrink the grid or raise sweep.max_runs")

    sweep = Sweep(name=settings["name"], strategy=settings["strategy"],
                  results=settings["results"])
    seen: set[str] = set()
    for assignment in _assignments(grids, random_axes, settings):
        config = _merge(base, assignment)
        _validate_run(config, assignment, fail)
        identity = run_id(config)
        if identity in seen:
            sweep.duplicates += 1
            continue
        seen.add(identity)
        sweep.runs.append(Run(identity, config))
    return sweep


# --------------------------------------------------------------------------- the file's tables


class _Failer:
    """Raise SweepConfigError messages of one shape: ``source: key: problem``."""

    def __init__(self, source: str):
        self.source = source

    def __call__(self, key: str, problem: str) -> None:
        where = f"{self.source}: {key}: " if key else f"{self.source}: "
        raise SweepConfigError(where + problem)


def _check_known(table: dict, allowed, prefix: str, fail, what: str = "key") -> None:
    for key in table:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), list(allowed), n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else f"allowed: {', '.join(allowed)}"
            fail(_join(prefix, key), f"unknown {what}; {fix}")


def _check_plain(node: Any, path: str, fail) -> None:
    """Only JSON-storable values: TOML dates/times and nan/inf have no place in a run config."""
    if isinstance(node, dict):
        for key, value in node.items():
            _check_plain(value, _join(path, key), fail)
    elif isinstance(node, list):
        for value in node:
            _check_plain(value, path, fail)
    elif isinstance(node, float) and not math.isfinite(node):
        fail(path, f"{node} is not allowed; give a finite number")
    elif not isinstance(node, (str, int, float, bool)):
        fail(path, f"a {type(node).__name__} value is not allowed; use a string or a number")


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _table(value: Any, key: str, fail) -> dict:
    if not isinstance(value, dict):
        fail(key, f"expected a table, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _sweep_settings(table: Any, default_name: str, out_dir, fail) -> dict:
    table = _table(table, "sweep", fail)
    _check_known(table, SWEEP_KEYS, "sweep", fail)
    settings = {"name": default_name, "strategy": "grid", "samples": None, "seed": 0,
                "results": "results.jsonl", "max_runs": MAX_RUNS, **table}
    if not isinstance(settings["name"], str) or not settings["name"]:
        fail("sweep.name", f"expected a non-empty string, got {_describe(settings['name'])}")
    if settings["strategy"] not in STRATEGIES:
        fail("sweep.strategy", f"expected one of {STRATEGIES}, got {settings['strategy']!r}")
    for key in ("seed", "max_runs"):
        if not _is_int(settings[key]) or settings[key] < 0:
            fail(f"sweep.{key}", f"expected an integer >= 0, got {_describe(settings[key])}")
    if settings["strategy"] == "random":
        if not _is_int(settings["samples"]) or settings["samples"] < 1:
            fail("sweep.samples", "the random strategy needs samples = N (an integer >= 1)")
    elif settings["samples"] is not None:
        fail("sweep.samples", "only used with strategy = \"random\"; remove it or switch")
    results = settings["results"]
    if not isinstance(results, str):
        fail("sweep.results", f"expected a file name, got {_describe(results)}")
    try:
        resolve_inside(out_dir if out_dir is not None else ".", results, "sweep.results")
    except ValueError as err:
        fail("", str(err))
    return settings


def _axes(table: dict, prefix: str, is_leaf: Callable[[Any], bool], fail,
          expected: str) -> dict:
    """Flatten nested tables into ``{dotted.key: leaf}`` for the leaves ``is_leaf`` picks."""
    axes: dict[str, Any] = {}
    for key, value in table.items():
        path = _join(prefix, key)
        if is_leaf(value):
            axes[path] = value
        elif isinstance(value, dict) and value:
            axes.update(_axes(value, path, is_leaf, fail, expected))
        else:
            fail(path, f"expected {expected}, got {_describe(value)}; a fixed value "
                 "belongs in [base]")
    return axes


def _prefixed(fail, table: str):
    return lambda key, problem: fail(_join(table, key), problem)


def _check_axis_paths(axes: dict, table: str, fail, taken: dict | None = None) -> None:
    """Axis keys must be run keys, and no axis may sit inside another (ambiguous order).

    ``taken`` holds the axes of another table (the random axes, for a grid), which may
    neither repeat nor contain nor sit inside these.
    """
    paths = sorted(axes) + sorted(taken or {})
    for path in axes:
        top = path.split(".")[0]
        if top not in RUN_KEYS:
            hint = difflib.get_close_matches(top, list(RUN_KEYS), n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else f"run keys: {', '.join(RUN_KEYS)}"
            fail(f"{table}.{path}", f"unknown run key {top!r}; {fix}")
        for other in paths:
            if other in (taken or {}) and (other == path or path.startswith(other + ".")):
                fail(f"{table}.{path}", f"is also a [random] axis ({other!r}); keep one")
            if other != path and other.startswith(path + "."):
                fail(f"{table}.{path}", f"overlaps the axis {other!r}; list complete "
                     f"{path} tables instead, or use several [[grid]] tables")


def _grid_tables(value: Any, random_axes: dict, fail) -> list[dict]:
    tables = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value:
        fail("grid", "an empty [[grid]] list; remove it or add a table")
    grids = []
    for i, table in enumerate(tables):
        name = f"grid[{i}]" if isinstance(value, list) else "grid"
        table = _table(table, name, fail)
        axes = _axes(table, "", lambda v: isinstance(v, list), _prefixed(fail, name),
                     "a list of values (key = [value] for one value)")
        for path, values in axes.items():
            if not values:
                fail(f"{name}.{path}", "an empty list gives no runs; give at least one value")
        _check_axis_paths(axes, name, fail, taken=random_axes)
        grids.append(axes)
    return grids


def _is_distribution(value: Any) -> bool:
    return isinstance(value, list) or (
        isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS)


def _random_axes(value: Any, strategy: str, fail) -> dict:
    table = _table(value, "random", fail)
    if table and strategy != "random":
        fail("random", "[random] needs strategy = \"random\" in [sweep]")
    axes = _axes(table, "", _is_distribution, _prefixed(fail, "random"),
                 f"a list of choices or a one-key table with one of {DISTRIBUTIONS}")
    for path, spec in axes.items():
        key = f"random.{path}"
        kind, args = ("choice", spec) if isinstance(spec, list) else next(iter(spec.items()))
        if kind == "choice":
            if not isinstance(args, list) or not args:
                fail(key, "choice needs a non-empty list of values")
            continue
        if not (isinstance(args, list) and len(args) == 2 and all(map(_is_number, args))):
            fail(key, f"{kind} needs [low, high] (two finite numbers), got {args!r}")
        low, high = args
        if low > high:
            fail(key, f"{kind}: low {low} is above high {high}; swap them")
        if kind == "log_uniform" and low <= 0:
            fail(key, f"log_uniform needs low > 0, got {low}")
        if kind == "int" and not (_is_int(low) and _is_int(high)):
            fail(key, f"int needs integer bounds, got {args!r}")
        axes[path] = (kind, args)
    for path, spec in axes.items():
        if isinstance(spec, list):
            axes[path] = ("choice", spec)
    _check_axis_paths(axes, "random", fail)
    return axes


# --------------------------------------------------------------------------- expansion


def _assignments(grids: list[dict], random_axes: dict, settings: dict):
    """Yield ``{dotted.key: value}`` per run: grid points, crossed with random draws."""
    draws: list[dict] = [{}]
    if settings["strategy"] == "random":
        rng = random.Random(settings["seed"])  # stable stream across Python versions
        draws = [{path: _draw(rng, *random_axes[path]) for path in sorted(random_axes)}
                 for _ in range(settings["samples"])]
    for draw in draws:
        for axes in grids or [{}]:
            paths = sorted(axes)
            for values in itertools.product(*(axes[p] for p in paths)):
                yield {**draw, **dict(zip(paths, values))}


def _draw(rng: random.Random, kind: str, args: list) -> Any:
    u = rng.random()
    if kind == "choice":
        return args[min(int(u * len(args)), len(args) - 1)]
    low, high = args
    if kind == "uniform":
        return low + u * (high - low)
    if kind == "log_uniform":
        return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return low + min(int(u * (high - low + 1)), high - low)  # int, inclusive bounds


def _merge(base: dict, assignment: dict) -> dict:
    """Deep-copy ``base`` (via JSON) and write each ``dotted.key`` value over it."""
    config = {**DEFAULTS, **json.loads(json.dumps(base))}
    for path, value in assignment.items():
        *parents, leaf = path.split(".")
        node = config
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = json.loads(json.dumps(value))
    return config


# --------------------------------------------------------------------------- run validation


def _validate_run(config: dict, assignment: dict, fail) -> None:
    def run_fail(key: str, problem: str) -> None:
        table = "grid/random" if any(key == p or key.startswith(p + ".") for p in assignment) \
            else "base"
        point = ", ".join(f"{k}={v!r}" for k, v in sorted(assignment.items()))
        fail(f"{table}.{key}", problem + (f" (in the run with {point})" if point else ""))

    _check_known(config, RUN_KEYS, "", run_fail, what="run key")
    for key in ("seed", "epochs", "batch_size"):
        low = 0 if key == "seed" else 1
        if not _is_int(config[key]) or config[key] < low:
            run_fail(key, f"expected an integer >= {low}, got {_describe(config[key])}")
    for key, names in CHOICES.items():
        choices = tuple(names())
        if not isinstance(config[key], str) or config[key] not in choices:
            run_fail(key, f"expected one of {choices}, got {config[key]!r}")
    fraction = config["val_fraction"]
    if not _is_number(fraction) or not 0 <= fraction < 1:
        run_fail("val_fraction", f"expected a number in [0, 1), got {_describe(fraction)}")
    if not isinstance(config["checkpoint"], bool):
        run_fail("checkpoint", f"expected true or false, got {_describe(config['checkpoint'])}")
    for key in ("data", "model", "optimizer"):
        if key not in config:
            run_fail(key, f"missing; set {key} = {{ name = ... }} in [base]")
    for key in TABLE_KEYS:
        if key in config:
            _validate_component(key, config[key], run_fail)


def _validate_component(key: str, table: Any, run_fail) -> None:
    """Check a data/model/optimizer/scheduler table against what it will be built with."""
    from . import task  # the builders; imported late so parsing stays light

    if not isinstance(table, dict):
        run_fail(key, f"expected a table like {{ name = ... }}, got {_describe(table)}")
    name_key = "spec" if key == "model" and "spec" in table else "name"
    name = table.get(name_key)
    if not isinstance(name, str) or not name:
        need = "name = ... (or spec = ...)" if key == "model" else "name = ..."
        run_fail(f"{key}.{name_key}", f"missing or not a string; set {need}")
    if key == "model" and "spec" in table and "name" in table:
        run_fail("model", "give either spec or name, not both")
    try:
        builder, reserved = task.builder(key, table)
    except (LookupError, ImportError) as err:
        run_fail(f"{key}.{name_key}", str(err))
    kwargs = {k: v for k, v in table.items() if k != name_key}
    _check_kwargs(builder, kwargs, reserved, key, run_fail, supplied=name_key,
                  optional=task.filled_in(key, table))
    if key == "optimizer" and not (_is_number(table.get("lr")) and table["lr"] >= 0):
        run_fail("optimizer.lr", f"expected a number >= 0, got {_describe(table.get('lr'))}")


def _check_kwargs(builder, kwargs: dict, reserved: dict, key: str, run_fail,
                  supplied: str, optional: set[str] = frozenset()) -> None:
    """Every argument must exist (unless ``**kwargs``) and every required one be given.

    The first parameter (the rate, the parameter list, the spec), ``reserved`` ones and
    ``optional`` ones (run lengths) are filled in by the sweep itself.
    """
    try:
        parameters = inspect.signature(builder).parameters
    except (TypeError, ValueError):  # a builtin without a signature: let it check itself
        return
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    named = [(n, p) for n, p in parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    names = [n for n, _ in named if n not in reserved]
    filled_in = {supplied, *reserved, *optional} | ({named[0][0]} if named else set())
    for name, parameter in named:
        if parameter.default is parameter.empty and name not in filled_in | set(kwargs):
            run_fail(f"{key}.{name}", f"missing; {getattr(builder, '__name__', builder)} "
                     f"needs {name} = ...")
    for arg in kwargs:
        if arg in reserved:
            run_fail(f"{key}.{arg}", reserved[arg])
        if not accepts_any and arg not in names:
            hint = difflib.get_close_matches(arg, names, n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else f"it accepts {', '.join(names)}"
            run_fail(f"{key}.{arg}", f"{getattr(builder, '__name__', builder)} takes no "
                     f"argument {arg!r}; {fix}")
