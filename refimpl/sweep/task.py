"""One sweep run, as executed on a Dask worker: build everything from the config, train, summarise.

:func:`run_training` never raises for a run that fails: it returns a ``"failed"`` result with
the traceback, so one bad hyper-parameter does not stop a sweep. It returns plain JSON data
(:func:`refimpl.safety.json_safe`); only the client writes it to the results file.

Components are looked up by name in :mod:`refimpl.registry` (:func:`builder`), which the
config validator also uses to check argument names before any run starts.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import platform
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from refimpl import registry
from refimpl.safety import json_safe, resolve_inside

# arguments the sweep supplies itself -> why a config may not set them
_RESERVED = {
    "data": {"seed": None, "dtype": "set the run's dtype instead",
             "split": "the sweep trains on the train split and splits off val_fraction",
             "path": "configs may not name paths; set $REFIMPL_DATA or use the default search"},
    "model": {"input_shape": "it comes from the data", "seed": "set the run's seed instead",
              "dtype": "set the run's dtype instead", "backend": "set the run's backend instead"},
    "optimizer": {"params": "the sweep passes the model's parameters"},
    "scheduler": {"lr": "the scheduler starts from optimizer.lr; set that instead"},
}


def filled_in(kind: str, table: dict) -> set[str]:
    """Arguments a config may leave out because the sweep fills them from the run.

    For a scheduler: the run-length arguments of :data:`refimpl.registry.RUN_LENGTH`
    (``T_max``, ``total_steps``, ...), set from ``epochs`` and the batches per epoch.
    """
    if kind != "scheduler":
        return set()
    return set(registry.RUN_LENGTH) | {
        key for keys in registry.RUN_LENGTH_BY_CLASS.values() for key in keys}


def builder(kind: str, table: dict) -> tuple[Callable, dict[str, str]]:
    """Return ``(callable, reserved)`` building component ``kind`` from its config ``table``.

    ``reserved`` maps the argument names the sweep fills in itself to the reason a config may
    not set them (``data.seed`` is allowed: it fixes the data across model seeds).

    Raises
    ------
    LookupError
        For an unknown name (the message lists the known ones).
    ImportError
        When the module implementing it is missing.
    """
    reserved = {k: v for k, v in _RESERVED[kind].items() if v is not None}
    try:
        if kind == "data":
            return registry.dataset_builder(table["name"]), reserved
        if kind == "model":
            from refimpl import model

            if "spec" in table:
                return model.build, reserved
            if table["name"] not in registry.model_names():
                raise LookupError(f"unknown model {table['name']!r}; choose one of "
                                  f"{registry.model_names()} or give spec = \"dense:32,relu,...\"")
            return model.get_model, reserved
        if kind == "optimizer":
            return registry.optimizer_class(table["name"]), reserved
        if kind == "scheduler":
            cls = registry.scheduler_class(table["name"])
            return (no_scheduler if cls is None else cls), reserved
    except ValueError as exc:  # an unknown name: the registry's message lists the known ones
        raise LookupError(str(exc)) from None
    raise LookupError(f"unknown component kind {kind!r}")


def no_scheduler(lr: float) -> None:
    """``scheduler = { name = "none" }``: train at the optimizer's constant rate."""
    return


def _kwargs(table: dict, name_key: str = "name") -> dict:
    return {k: v for k, v in table.items() if k != name_key}


def load_data(config: dict):
    """Build ``(train, val)`` from ``config["data"]``; ``val`` is ``None`` when
    ``val_fraction = 0``.

    The data seed is ``data.seed`` when given, else the run's seed. Classification sets are
    split stratified; regression targets are split at random.
    """
    import numpy as np

    from refimpl.data import train_val_split

    table = config["data"]
    kwargs = {"seed": config["seed"], **_kwargs(table), "dtype": np.dtype(config["dtype"])}
    X, y = registry.load_dataset(table["name"], "train", **kwargs)
    if config["val_fraction"] == 0:
        return (X, y), None
    stratify = y.ndim == 1 and np.issubdtype(y.dtype, np.integer)
    return train_val_split(X, y, float(config["val_fraction"]), seed=kwargs["seed"],
                           stratify=stratify)


def build_run(config: dict, input_shape: tuple[int, ...], checkpoint_dir: Path | None = None,
              n_train: int | None = None):
    """Build the Trainer (model, optimizer, scheduler) of a run config.

    ``n_train`` (training examples) gives the batches per epoch, from which the scheduler's
    run-length arguments are filled when the config leaves them out.
    """
    import numpy as np

    from refimpl.train import Trainer

    table = config["model"]
    common = {"seed": config["seed"], "dtype": np.dtype(config["dtype"]),
              "backend": config["backend"]}
    if "spec" in table:
        model = registry.get_model(table["spec"], input_shape, **_kwargs(table, "spec"),
                                   **common)
    else:
        model = registry.get_model(table["name"], **_kwargs(table), **common)
    optimizer = registry.make_optimizer(config["optimizer"]["name"], model.parameters(),
                                        **_kwargs(config["optimizer"]))
    scheduler = None
    if "scheduler" in config:
        steps = None if n_train is None else -(-int(n_train) // int(config["batch_size"]))
        scheduler = registry.make_scheduler(
            config["scheduler"]["name"], config["optimizer"]["lr"], epochs=config["epochs"],
            steps_per_epoch=steps, **_kwargs(config["scheduler"]))
    return Trainer(model, optimizer, scheduler, loss=config["loss"],
                   batch_size=config["batch_size"], seed=config["seed"], progress=False,
                   checkpoint_dir=checkpoint_dir, nan_policy=config["nan_policy"])


def summarize(history) -> dict:
    """The per-run summary stored in the results file: final and best values, per-epoch curves.

    Per-step traces are left out (they can be long); ``steps``, ``final_lr`` and the
    per-epoch lists are kept for tables and plots. Non-finite values become ``null``.
    """
    data = history.to_dict()
    val_loss = [v for v in data["val_loss"] if math.isfinite(v)]
    val_acc = [v for v in data["val_acc"] if math.isfinite(v)]
    last = {name: (data[name][-1] if data[name] else None)
            for name in ("train_loss", "train_acc", "val_loss", "val_acc")}
    return json_safe({
        "epochs": history.n_epochs,
        "steps": history.n_steps,
        **last,
        "best_val_loss": min(val_loss) if val_loss else None,
        "best_val_acc": max(val_acc) if val_acc else None,
        "final_lr": data["lr_epoch"][-1] if data["lr_epoch"] else None,
        "skipped_steps": len(data["skipped"]),
        "rollbacks": len(data["events"]),
        "curves": {name: data[name] for name in
                   ("train_loss", "train_acc", "val_loss", "val_acc", "lr_epoch", "epoch_time")},
    })


def run_training(config: dict, out_dir: str | None = None) -> dict:
    """Train one run described by ``config`` and return its result (status ``ok`` or ``failed``).

    Parameters
    ----------
    config : dict
        A validated run config (:mod:`refimpl.sweep.config`).
    out_dir : str, optional
        The sweep's output directory; with ``checkpoint = true`` the trainer writes to
        ``out_dir/checkpoints/<run id>`` (on a remote cluster this must be a shared path),
        and a run retried after its worker died resumes from the last checkpoint there
        (``resumed`` in the result), or starts afresh when that checkpoint is unreadable.

    Returns
    -------
    dict
        ``status``, ``summary`` (ok) or ``error`` and ``traceback`` (failed), ``wall_time``
        (seconds), ``backend`` (the one that ran), ``host``, ``worker``, ``versions``.
    """
    start = time.perf_counter()
    result: dict[str, Any] = {"host": socket.gethostname(), "worker": _worker_address(),
                              "pid": os.getpid(), "versions": versions()}
    try:
        checkpoint_dir = None
        if config.get("checkpoint") and out_dir is not None:
            from .config import run_id

            checkpoint_dir = resolve_inside(out_dir, f"checkpoints/{run_id(config)}",
                                            "checkpoint")
        train, val = load_data(config)
        trainer = build_run(config, train[0].shape[1:], checkpoint_dir, n_train=len(train[1]))
        result["backend"] = backend_name(trainer.model.backend)
        history = _fit(trainer, train, val, config["epochs"], result)
        result.update(status="ok", summary=summarize(history))
    # a failed run is a result, not a reason to stop the sweep
    except Exception as exc:  # noqa: BLE001
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc())
    result["wall_time"] = time.perf_counter() - start
    return json_safe(result)


def _fit(trainer, train, val, epochs: int, result: dict):
    """``trainer.fit``, resuming from the run's own checkpoint when an earlier attempt left one."""
    from refimpl.checkpoint import CheckpointError

    path = trainer.checkpoint_path
    result["resumed"] = path is not None and path.is_file()
    if result["resumed"]:
        try:
            return trainer.fit(train, val, epochs=epochs, resume=path)
        except CheckpointError as err:  # unreadable: the run is redone from the start
            result.update(resumed=False, resume_error=str(err))
    return trainer.fit(train, val, epochs=epochs)


def backend_name(requested: str) -> str:
    """The backend that actually runs for ``requested`` (``auto`` resolved)."""
    from refimpl import kernels

    module = kernels.get_backend(requested)
    simulated = getattr(module, "is_simulator", False)
    return kernels.name_of(module) + ("-simulator" if simulated else "")


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions of what a run depends on (stored with every record)."""
    found = {"python": platform.python_version(), "platform": sys.platform}
    for name in ("refimpl", "numpy", "numba", "scipy"):
        try:
            found[name] = importlib.import_module(name).__version__
        except (ImportError, AttributeError):
            found[name] = "absent"
    return found


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None
