"""Run a sweep's runs on a Dask cluster and stream their results to the results file.

Fault model:

* a worker killed mid-run: the Dask scheduler hands its task to another worker (up to
  ``distributed.scheduler.allowed-failures`` times, default 3); the client receives each
  result once, and writes it once, because only the client writes the results file and
  it skips ids already written;
* a run that raises: :func:`refimpl.sweep.task.run_training` returns a ``failed`` result
  with the traceback; a task lost for good (``KilledWorker``, e.g. a run that crashes its
  worker every time) is recorded as failed too; the sweep goes on either way;
* Ctrl-C (``KeyboardInterrupt``) in the client: pending runs are cancelled, the cluster is
  closed, every record already written stays, and re-running the sweep continues from there.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from refimpl.safety import resolve_inside

from .config import Sweep
from .results import ResultsWriter, finished_ids, read_records
from .task import run_training

#: Environment of the embedded cluster's worker processes: one thread each, so N workers
#: use N cores and do not fight over them with BLAS or Numba thread pools.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1"}


@dataclass
class SweepOutcome:
    """What one call of :func:`run_sweep` did."""

    total: int            # runs in the sweep
    already_done: int     # skipped because the results file had them
    ok: int = 0           # finished successfully in this call
    failed: int = 0       # recorded as failed in this call
    interrupted: bool = False
    wall_time: float = 0.0
    results: Path | None = None

    @property
    def remaining(self) -> int:
        return self.total - self.already_done - self.ok - self.failed


@contextlib.contextmanager
def open_client(cluster: str | None = None, workers: int | None = None,
                quiet: bool = True) -> Iterator[distributed.Client]:  # noqa: F821
    """A Dask client: on the cluster at address ``cluster``, else on an embedded LocalCluster.

    The embedded cluster has ``workers`` worker processes (default: the CPU count) of one
    thread each, no dashboard, and a nanny per worker that restarts a killed worker.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise RuntimeError("refimpl sweep needs dask[distributed]: "
                           "pip install 'refimpl[dask]'") from None
    if cluster is not None:
        if workers is not None:
            raise ValueError("--workers applies to the embedded cluster only; the cluster at "
                             f"{cluster} already has its workers")
        with Client(cluster, timeout="20s") as client:
            client.wait_for_workers(1, timeout=60)
            yield client
        return
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    import os

    n_workers = workers or os.cpu_count() or 1
    level = logging.CRITICAL if quiet else logging.WARNING
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=level, env=WORKER_ENV) as local, \
            Client(local) as client:
        from ._worker import IgnoreInterrupts

        client.register_plugin(IgnoreInterrupts())  # also runs on restarted workers
        yield client


def run_sweep(client, sweep: Sweep, out_dir: str | Path, *,
              task: Callable[[dict, str], dict] = run_training, progress: bool = True,
              retry_failed: bool = False) -> SweepOutcome:
    """Run every run of ``sweep`` not yet in the results file; append each result as it lands.

    Parameters
    ----------
    client : distributed.Client
        Where the runs execute (see :func:`open_client`).
    sweep : Sweep
        From :func:`refimpl.sweep.config.load_sweep`.
    out_dir : path
        Output directory; the results file is ``out_dir / sweep.results``.
    task : callable
        ``task(config, out_dir) -> dict`` run on a worker (default: real training).
    progress : bool
        Show progress on stderr: a tqdm bar (done/total, rate, ETA) on a terminal, else a
        plain line every tenth of the runs or 30 s (:class:`PlainProgress`).
    retry_failed : bool
        Also re-run runs recorded as failed (by default every recorded run is finished).

    Returns
    -------
    SweepOutcome
        Counts; ``interrupted`` is True after Ctrl-C (``KeyboardInterrupt`` is absorbed).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = resolve_inside(out_dir, sweep.results, "sweep.results")
    start = time.perf_counter()
    with ResultsWriter(path) as writer:  # lock first, then read: no one appends meanwhile
        done = finished_ids(read_records(path), retry_failed=retry_failed)
        todo = [run for run in sweep.runs if run.id not in done]
        outcome = SweepOutcome(total=len(sweep.runs), already_done=len(sweep.runs) - len(todo),
                               results=path)
        bar = _progress_bar(progress, sweep, outcome.already_done)
        futures = {}
        try:
            from distributed import as_completed

            for run in todo:
                future = client.submit(task, run.config, str(out_dir),
                                       key=f"refimpl-run-{run.id}", pure=False)
                futures[future] = run
            for future in as_completed(list(futures)):
                run = futures.pop(future)
                if run.id in done:  # cannot happen with unique keys; guards double writes
                    continue
                record = _record(sweep, run, future)
                writer.append(record)
                done.add(run.id)
                future.release()
                if record["status"] == "ok":
                    outcome.ok += 1
                else:
                    outcome.failed += 1
                    _report_failure(sweep, run, record, bar)
                if bar is not None:
                    bar.set_postfix(failed=outcome.failed, refresh=False)
                    bar.update(1)
        except KeyboardInterrupt:
            outcome.interrupted = True
            _cancel(client, list(futures))
        finally:
            if bar is not None:
                bar.close()
    outcome.wall_time = time.perf_counter() - start
    return outcome


def _record(sweep: Sweep, run, future) -> dict:
    """The line to store for a finished future (a lost task becomes a failed record)."""
    try:
        result = future.result()
    # KilledWorker, CancelledError, a task function that raised: all become failed records
    except Exception as exc:  # noqa: BLE001
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                  "traceback": "".join(traceback.format_exception(exc))}
    if not isinstance(result, dict) or result.get("status") not in ("ok", "failed"):
        result = {"status": "failed", "error": f"the task returned {type(result).__name__}, "
                  "not a result dict", "traceback": ""}
    finished = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {**result, "id": run.id, "sweep": sweep.name, "config": run.config,
            "finished_at": finished}


def _report_failure(sweep: Sweep, run, record: dict, bar) -> None:
    """One line on stderr per failed run: its id, its settings and the error's first line
    (the traceback stays in the results file)."""
    error = str(record.get("error") or "unknown error").strip().splitlines() or ["?"]
    line = f"{sweep.name}: run {run.id} failed: {error[0]}  (config: {run.config})"
    if bar is not None:
        bar.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


def _cancel(client, futures: list) -> None:
    # the cluster may be half-down already; closing it (next) is enough then
    with contextlib.suppress(Exception):
        client.cancel(futures)


def _progress_bar(progress: bool, sweep: Sweep, initial: int):
    """The sweep's progress display on stderr: a tqdm bar on a terminal, else plain lines.

    Returns ``None`` when ``progress`` is off. Both kinds have ``update``, ``set_postfix``,
    ``write`` and ``close``.
    """
    if not progress:
        return None
    if not _is_terminal(sys.stderr):
        return PlainProgress(sweep.name, len(sweep.runs), initial, sys.stderr)
    from tqdm import tqdm

    return tqdm(total=len(sweep.runs), initial=initial, unit="run", desc=sweep.name,
                file=sys.stderr, dynamic_ncols=True, smoothing=0.1)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class PlainProgress:
    """Progress for a stderr that is not a terminal (a log file, a pipe): whole lines.

    A line ``<sweep>: 12/40 runs, 0 failed, 35 s`` is written when the runs done reach
    the next tenth of the sweep or ``interval`` seconds have passed since the last line,
    checked as each run finishes, and once more at the end; the seconds are this call's.
    No carriage returns, so a log file holds one readable line per report.
    """

    def __init__(self, name: str, total: int, initial: int, stream, *,
                 interval: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.name, self.total, self.done, self.failed = name, total, initial, 0
        self.stream, self.interval, self.clock = stream, interval, clock
        self.step = max(1, -(-total // 10))  # a tenth of the runs, rounded up
        self.started = self.last_time = clock()
        self.last_done = initial
        self._line()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more finished runs; write a line when a tenth or the interval passed."""
        self.done += n
        now = self.clock()
        if (self.done // self.step > self.last_done // self.step
                or now - self.last_time >= self.interval):
            self._line(now)

    def set_postfix(self, failed: int = 0, refresh: bool = False) -> None:
        """Record the failed-run count shown in the next line (tqdm's signature)."""
        self.failed = failed

    def write(self, line: str, file=None) -> None:
        """Write a line of other output (a failed run) as is."""
        print(line, file=file or self.stream, flush=True)

    def close(self) -> None:
        """Write the final count, unless the last line already showed it."""
        if self.done != self.last_done:
            self._line()

    def _line(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.last_time, self.last_done = now, self.done
        print(f"{self.name}: {self.done}/{self.total} runs, {self.failed} failed, "
              f"{now - self.started:.0f} s", file=self.stream, flush=True)
