"""What the peers run: a Celery app and RQ jobs, each a task that waits in a
loop of 10 ms sleeps and reports (like `benchmarks/probe.py`) when it starts
and the moment it learns it must stop; or, to time a start, only reports it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time

from celery import Celery
from celery.contrib.abortable import AbortableTask

QUEUE = "peace-bench"
REDIS_URL = os.environ.get("PEACE_BENCH_REDIS", "redis://127.0.0.1:6379/0")

app = Celery("peace_bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    result_expires=600,
)

_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def report(kind: str, key: str, **extra) -> None:
    message = {"k": kind, "id": key, "t": time.time(), **extra}
    host, _, port = os.environ["PEACE_BENCH_COLLECTOR"].rpartition(":")
    with contextlib.suppress(OSError):
        _sock.sendto(json.dumps(message).encode(), (host, int(port)))


@app.task(bind=True)
def killable(self, seconds: float) -> None:
    """Ended by `revoke(terminate=True)`: SIGTERM to this process. The
    handler reports the moment it arrives, then dies of it as usual."""
    key = self.request.id

    def on_sigterm(number, frame) -> None:
        report("signal", key)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    report("started", key, pid=os.getpid())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)


@app.task(bind=True, base=AbortableTask)
def abortable(self, seconds: float) -> str:
    """Ended by `AbortableAsyncResult.abort()`: polls `is_aborted()` every
    10 ms, as our cooperative step checks its interrupt."""
    key = self.request.id
    report("started", key, pid=os.getpid())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if self.is_aborted():
            report("signal", key)
            return "aborted"
        time.sleep(0.01)
    return "finished"


@app.task(bind=True)
def started(self) -> None:
    """Reports the moment it starts, and ends: Celery's start latency."""
    report("started", self.request.id, pid=os.getpid())


def rq_started() -> None:
    """Reports the moment it starts, and ends: RQ's start latency (the work
    horse is forked for each job, as our execution process is for each run)."""
    from rq import get_current_job

    report("started", get_current_job().id, pid=os.getpid())


def rq_job(seconds: float) -> None:
    """Ended by `send_stop_job_command`: the worker SIGKILLs this work horse,
    so nothing here can report it; the benchmark watches the process end."""
    from rq import get_current_job

    report("started", get_current_job().id, pid=os.getpid())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
