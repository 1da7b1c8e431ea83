"""Handing a recorded execution to whoever supervises it (DESIGN.md, "Where
executions run"), and this process's own supervisor.

`EXECUTIONS_RUNNER` decides who: this process (`inprocess`), a
`runworker executions` worker (`worker`: the row waits in the database
queue), or a task queue's task (`celery`, `tasks`: `runtime.taskqueues`).

In a server, the supervisor lives on the server's event loop (bound by
`runtime.server` at start). With no server in this process (a shell, a
sync test), a private loop in a daemon thread takes its place, so the run
still happens."""

from __future__ import annotations

import asyncio
import logging
import threading

from django.utils.module_loading import import_string

from ..conf import conf
from ..models import Execution
from . import broadcast, groups
from .supervisor import Supervisor

logger = logging.getLogger(__name__)

#: Each task queue's `enqueue(execution_id)`, imported only when it is used.
TASK_QUEUES = {
    "celery": "executions.runtime.taskqueues.celery.enqueue",
    "tasks": "executions.runtime.taskqueues.tasks.enqueue",
}

_supervisor: Supervisor | None = None
_loop: asyncio.AbstractEventLoop | None = None
_fallback_lock = threading.Lock()


def bind(loop: asyncio.AbstractEventLoop, *, reaps: bool = True) -> Supervisor:
    """Make `loop` the one this process supervises executions on, and keep
    house on it from now. Called on the loop."""
    global _supervisor, _loop
    _loop = loop
    _supervisor = Supervisor(reaps=reaps)
    _supervisor.ensure_housekeeping()
    return _supervisor


def supervisor_identity() -> str:
    """The identity of whoever will supervise an execution started here."""
    if conf.RUNNER != "inprocess":
        return ""  # a worker, once it claims the row
    _supervisor_loop()
    return _supervisor.identity


def _supervisor_loop() -> asyncio.AbstractEventLoop:
    with _fallback_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="executions-supervisor", daemon=True
            ).start()
            asyncio.run_coroutine_threadsafe(_bind_async(loop), loop).result()
        return _loop


async def _bind_async(loop: asyncio.AbstractEventLoop) -> None:
    # Reaping belongs to servers and workers, not to a shell's runs.
    bind(loop, reaps=False)


def dispatch(execution_id) -> None:
    """Start a recorded execution: here, in a worker's queue, or as an
    engine's task."""
    if conf.RUNNER in TASK_QUEUES:
        _enqueue(execution_id, TASK_QUEUES[conf.RUNNER])
        return
    if conf.RUNNER != "inprocess":
        # The row waits in the database queue; this only wakes a worker.
        broadcast.from_sync(
            "send",
            groups.WORKER_CHANNEL,
            {"type": groups.RUN_REQUEST, "execution_id": str(execution_id)},
        )
        return
    loop = _supervisor_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        _supervisor.start(execution_id)
    else:
        # The supervisor starts each run in a fresh context of its own.
        loop.call_soon_threadsafe(lambda: _supervisor.start(execution_id))


def _enqueue(execution_id, path: str) -> None:
    try:
        import_string(path)(execution_id)
    except Exception:
        # Nobody will ever claim it (the broker is down, the backend refused):
        # a queued row must not wait forever. The database says so at once.
        logger.exception("cannot hand execution %s to %s", execution_id, path)
        execution = Execution.objects.get(pk=execution_id)
        if execution.mark_lost():
            broadcast.status_changed_on_commit(
                Execution.objects.get(pk=execution_id).snapshot(), groups.FINISHED
            )
