"""Dramatiq workers: one in-process beside the API (`ctxgraph serve`), or a process of its own
(`ctxgraph worker`). Either consumes every declared queue of the one broker."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import dramatiq

from app.config import Settings
from app.jobs import runtime
from app.jobs.broker import setup_broker

log = logging.getLogger("ctxgraph.jobs")

# How long stop() waits for running actors. Unfinished messages are not lost: they are not
# acked, and come back once this worker's heartbeat is stale (see broker.py).
STOP_TIMEOUT_MS = 30_000


class InProcessWorker:
    """A started Dramatiq worker; `stop()` finishes running actors and requeues prefetched ones."""

    def __init__(self, worker: dramatiq.Worker, rt: runtime.Runtime) -> None:
        self._worker = worker
        self._runtime = rt
        self._stopped = False
        self._lock = threading.Lock()

    def stop(self, timeout_ms: int = STOP_TIMEOUT_MS) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._runtime.stop_reaper()
        self._worker.stop(timeout=timeout_ms)
        # Worker.start() added a middleware that starts consumers for queues declared later;
        # left in place, it would start them for this stopped worker.
        broker = self._worker.broker
        broker.middleware[:] = [m for m in broker.middleware if getattr(m, "worker", None) is not self._worker]
        log.info("dramatiq worker stopped")


def start_in_process(settings: Settings, threads: int = 2) -> InProcessWorker:
    """Start consuming in background threads of this process, and the job reaper; the caller
    must `stop()` it."""
    broker = setup_broker(settings)
    rt = runtime.configure(settings)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)  # an idle worker polls every 100 ms, not 1 s
    worker.start()
    rt.start_reaper()
    log.info("dramatiq worker started: %d threads, queues %s", threads, sorted(broker.get_declared_queues()))
    return InProcessWorker(worker, rt)


def run(settings: Settings, threads: int = 4) -> None:
    """Consume until SIGINT or SIGTERM, then stop gracefully. A second signal stops at once."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) or signal.SIG_DFL for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received, stopping the worker", signal.Signals(signum).name)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop.set()

    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        handle = start_in_process(settings, threads)
        try:
            while not stop.wait(1.0):
                pass
        finally:
            handle.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
