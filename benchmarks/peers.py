"""Scenario 3: the peers, on the same machine and the same Redis.

Each is asked to stop a task that sleeps in 10 ms steps, and measured from
the call that asks (just before it) to the moment the task learns of it:

- Celery `revoke(terminate=True)`: a forced kill. The worker's main process
  hears the broadcast and sends SIGTERM to the pool process running the task;
  the task's SIGTERM handler reports the moment it arrives.
- Celery `AbortableAsyncResult.abort()`: the cooperative one. The task polls
  `is_aborted()` (a result-backend read) every 10 ms and reports when it
  first sees it.
- RQ `send_stop_job_command`: the worker SIGKILLs the work horse, which
  cannot report; the benchmark holds a pidfd on the horse and takes the moment
  the process is gone.
- Ours, from a Python process like theirs: `services.request_interrupt` (the
  durable write, then the push) to the moment the signal is set in the
  execution process the worker supervises — graceful, the step then stops
  at its checkpoint.

And how soon each starts work: Celery `apply_async` → the task runs (a
prefork pool process, already started); RQ `enqueue` → the job runs (a
work horse forked for it); ours through a worker (API POST → the first step
runs in the execution process the worker forked for it; the embedded
default's figure is in scenario 7).
"""

from __future__ import annotations

import asyncio
import os
import random
import select
import signal
import time

from benchmarks.interrupts import FLOOR_PUBSUB, PUSHED, WARMUP, ms
from benchmarks.stack import Context
from benchmarks.support import PYTHON, Processes

CELERY_TERMINATE = "Celery revoke(terminate=True) → SIGTERM in task (forced)"
CELERY_GONE = "Celery revoke(terminate=True) → pool process gone (forced)"
CELERY_ABORT = "Celery AbortableTask abort() → task sees it (10 ms poll)"
RQ_STOP = "RQ send_stop_job_command → work horse gone (forced)"
OURS_SCRIPT = "ours: request_interrupt() in a process → signal (graceful)"
CELERY_START = "Celery apply_async() → task starts"
RQ_START = "RQ enqueue() → job starts (work horse forked)"
OURS_START = "ours (worker): API POST → first step running"
TASK_SECONDS = 600


async def ours(context: Context, samples: int) -> tuple[list[float], list[float]]:
    """(interrupt latencies, start latencies) through a worker over Redis,
    from a long-lived Python client (`benchmarks/engines.py` measures the
    same way for every engine)."""
    from benchmarks import engines

    series = await engines.measure(
        context, "worker", samples, doors=("client",), name="peers-ours"
    )
    return series[engines.CLIENT_SIGNAL], series[engines.START]


def _pause() -> None:
    time.sleep(random.uniform(0.01, 0.03))


def _wait_gone(pid: int, timeout: float = 30) -> float | None:
    """When process `pid` ends (a pidfd turns readable), or None."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return time.time()
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return time.time() if readable else None
    finally:
        os.close(fd)


def celery_terminate(context: Context, samples: int) -> tuple[list[float], list[float]]:
    """(ask → SIGTERM in the task, ask → its pool process gone), in ms."""
    from benchmarks import peer_tasks

    latencies, gone = [], []
    with peer_tasks.app.connection_for_write() as connection:
        for index in range(samples + WARMUP):
            result = peer_tasks.killable.apply_async((TASK_SECONDS,))
            started = context.collector.wait("started", result.id, 60)
            _pause()
            sent = time.time()
            peer_tasks.app.control.revoke(
                result.id, terminate=True, connection=connection
            )
            signalled = context.collector.wait("signal", result.id, 30)
            ended = _wait_gone(started["pid"])
            if index >= WARMUP:
                latencies.append(ms(signalled["t"] - sent))
                if ended is not None:
                    gone.append(ms(ended - sent))
    return latencies, gone


def celery_start(context: Context, samples: int) -> list[float]:
    from benchmarks import peer_tasks

    latencies = []
    for index in range(samples + WARMUP):
        _pause()
        sent = time.time()
        result = peer_tasks.started.apply_async()
        started = context.collector.wait("started", result.id, 60)
        result.get(timeout=30)
        if index >= WARMUP:
            latencies.append(ms(started["t"] - sent))
    return latencies


def rq_start(context: Context, samples: int) -> list[float]:
    from redis import Redis
    from rq import Queue

    from benchmarks.peer_tasks import QUEUE

    connection = Redis.from_url(context.redis_url)
    queue = Queue(QUEUE, connection=connection)
    latencies = []
    for index in range(samples + WARMUP):
        _pause()
        sent = time.time()
        job = queue.enqueue("benchmarks.peer_tasks.rq_started")
        started = context.collector.wait("started", job.id, 60)
        _wait_gone(started["pid"])
        if index >= WARMUP:
            latencies.append(ms(started["t"] - sent))
    connection.close()
    return latencies


def celery_abort(context: Context, samples: int) -> list[float]:
    from celery.contrib.abortable import AbortableAsyncResult

    from benchmarks import peer_tasks

    latencies = []
    for index in range(samples + WARMUP):
        result = peer_tasks.abortable.apply_async((TASK_SECONDS,))
        context.collector.wait("started", result.id, 60)
        _pause()
        sent = time.time()
        AbortableAsyncResult(result.id, app=peer_tasks.app).abort()
        signalled = context.collector.wait("signal", result.id, 30)
        result.get(timeout=30)
        if index >= WARMUP:
            latencies.append(ms(signalled["t"] - sent))
    return latencies


def rq_stop(context: Context, samples: int) -> tuple[list[float], int]:
    from redis import Redis
    from rq import Queue
    from rq.command import send_stop_job_command

    from benchmarks.peer_tasks import QUEUE

    connection = Redis.from_url(context.redis_url)
    queue = Queue(QUEUE, connection=connection)
    latencies, lost = [], 0
    for index in range(samples + WARMUP):
        job = queue.enqueue(
            "benchmarks.peer_tasks.rq_job", TASK_SECONDS, job_timeout=TASK_SECONDS * 2
        )
        started = context.collector.wait("started", job.id, 60)
        _pause()
        sent = time.time()
        send_stop_job_command(connection, job.id)
        gone = _wait_gone(started["pid"])
        if gone is None:  # the stop was lost: end the horse ourselves, by PID
            lost += 1
            os.kill(started["pid"], signal.SIGKILL)
            _wait_gone(started["pid"])
        elif index >= WARMUP:
            latencies.append(ms(gone - sent))
    connection.close()
    return latencies, lost


def start_celery(context: Context, processes: Processes) -> None:
    """The peers' Celery worker: a prefork pool of one, on the run's Redis."""
    processes.start(
        "celery",
        [PYTHON, "-m", "celery", "-A", "benchmarks.peer_tasks", "worker"]
        + ["--pool=prefork", "--concurrency=1", "--loglevel=WARNING"]
        + ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        + ["-n", "peace-bench@127.0.0.1"],
        context.env(PEACE_BENCH_REDIS=context.redis_url),
    )


def start_rq(context: Context, processes: Processes) -> None:
    processes.start(
        "rq",
        [PYTHON, "-m", "rq.cli", "worker", "--url", context.redis_url]
        + ["--path", ".", "--logging_level", "WARNING", "peace-bench"],
        context.env(PEACE_BENCH_REDIS=context.redis_url),
    )


async def measure_peers(context: Context, samples: int, *, abort: bool = True) -> dict:
    """Celery's and RQ's stops and starts: {"stops": rows, "starts": rows,
    "rq_lost": n}; Celery's cooperative abort() too when `abort`."""
    os.environ["PEACE_BENCH_REDIS"] = context.redis_url
    stops, starts = [], []
    with Processes(context.scratch) as processes:
        start_celery(context, processes)
        signalled, gone = await asyncio.to_thread(celery_terminate, context, samples)
        stops += [(CELERY_TERMINATE, signalled), (CELERY_GONE, gone)]
        if abort:
            stops.append(
                (CELERY_ABORT, await asyncio.to_thread(celery_abort, context, samples))
            )
        starts.append(
            (CELERY_START, await asyncio.to_thread(celery_start, context, samples))
        )
        processes.stop_all()
        start_rq(context, processes)
        latencies, lost = await asyncio.to_thread(rq_stop, context, samples)
        stops.append((RQ_STOP, latencies))
        starts.append((RQ_START, await asyncio.to_thread(rq_start, context, samples)))
    return {"stops": stops, "starts": starts, "rq_lost": lost}


async def run(context: Context) -> None:
    samples = context.samples(200, 15)
    os.environ["PEACE_BENCH_REDIS"] = context.redis_url
    rows = []
    earlier = context.results.get("interrupts_redis", {}).get("rows", [])
    floor = dict(earlier).get(FLOOR_PUBSUB)
    if floor is None:
        from benchmarks import layers

        floor = await layers.push_latency("pubsub", context.redis_url, samples)
    rows.append((FLOOR_PUBSUB, floor))
    interrupt_latencies, start_latencies = await ours(context, samples)
    rows.append((OURS_SCRIPT, interrupt_latencies))
    for name, series in earlier:
        # The doors whole, not their parts (`interrupts.PUSHED`).
        if name.startswith(("API POST", "websocket message")) and PUSHED not in name:
            rows.append((f"ours: {name}", series))
    found = await measure_peers(context, samples)
    rows += found["stops"]
    starts = [*found["starts"], (OURS_START, start_latencies)]
    context.results["peers"] = {
        "rows": rows,
        "floor": FLOOR_PUBSUB,
        "rq_lost": found["rq_lost"],
    }
    context.results["starts"] = {"rows": starts}
