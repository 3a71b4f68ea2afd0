"""Worker-side set-up of the embedded cluster (imported only where dask.distributed is)."""

from __future__ import annotations

import signal
import threading

from distributed.diagnostics.plugin import WorkerPlugin


class IgnoreInterrupts(WorkerPlugin):
    """Make worker processes ignore SIGINT.

    Ctrl-C in a terminal reaches every process of the foreground group, the embedded
    cluster's workers included. Only the client should react: it cancels the pending runs
    and closes the cluster, which stops the workers cleanly; a worker dying on its own
    SIGINT would only add tracebacks to the terminal.
    """

    name = "refimpl-ignore-sigint"

    def setup(self, worker) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
