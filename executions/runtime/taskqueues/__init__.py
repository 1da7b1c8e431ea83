"""Task queues whose tasks supervise executions (DESIGN.md's "Engines",
`EXECUTIONS_RUNNER=celery|tasks`). Each module (`celery`, `tasks`) defines
one task that calls `supervise`, and the `enqueue` dispatch calls after
commit.

Whatever the engine, the task's process is the supervisor: it claims the row
with a compare-and-set (a task delivered twice runs the execution once),
runs it in an execution process, heartbeats, relays interrupts from the
channel layer and the row, and finishes the row. The engine's own revoke or
kill is never how a run stops: SIGTERM drains (an interrupt with source
`shutdown`), and a process killed outright leaves a row the reaper ends
`lost` (its execution process stops its own group once its supervisor is
gone; Celery's pool processes die with their worker, by PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import signal
import threading
from collections.abc import Callable

from ..supervisor import Supervisor

logger = logging.getLogger(__name__)


def supervise(execution_id: str, *, pool_process: bool = False) -> str | None:
    """Run a recorded execution to its end under a supervisor of this
    process, in an execution process; its final status (None if it is gone).
    Called from a worker's main thread, with no event loop running.

    While it runs, SIGTERM drains it. In a worker's own process, the
    worker's SIGTERM handler hears it too (so it stops after this task), and
    a second SIGTERM forces the run. In a `pool_process`, its worker runs the
    shutdown: the pool process's handler (which would exit at once) is left
    out, and a repeated SIGTERM does not force early (it may be the same
    shutdown heard twice); the drain forces after its grace."""
    return _loop().run_until_complete(
        _supervise(str(execution_id), pool_process=pool_process)
    )


_loops = threading.local()


def _loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop for its tasks, kept from one task to the
    next (not `asyncio.run`'s loop per task): the channel layer's connection
    lives as long as its loop, so each task's supervisor subscribes on a
    connection already made. With channels_redis's own pub/sub layer, whose
    reader sleeps 0.1 s while nothing is subscribed, a loop per task had
    made an interrupt pushed in a run's first 0.1 s wait for that sleep
    (74 ms p50 under Celery and Tasks in `make bench`, against 8 ms later in
    the run); executions.pubsub's reader waits for the subscription instead."""
    loop = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        atexit.register(_close, loop)
    return loop


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """At exit: what the tasks left running (the layer's reader) ends
    quietly, as `asyncio.run` would have ended it after each task."""
    if loop.is_closed() or loop.is_running():
        return
    left = asyncio.all_tasks(loop)
    for task in left:
        task.cancel()
    with contextlib.suppress(Exception):
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
    loop.close()


async def _supervise(execution_id: str, *, pool_process: bool) -> str | None:
    supervisor = Supervisor(reaps=True)
    run = supervisor.start(execution_id)
    with _draining_on_sigterm(supervisor, pool_process=pool_process):
        try:
            execution = await run
        finally:
            # Heartbeat, poll and reaper stop with the task, not after it.
            await supervisor.close()
    return None if execution is None else execution.status


@contextlib.contextmanager
def _draining_on_sigterm(supervisor: Supervisor, *, pool_process: bool):
    if threading.current_thread() is not threading.main_thread():
        # Only the main thread gets signals (a thread pool's task, a task
        # run at once in a web request): the worker's own shutdown applies.
        yield
        return
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    received = 0

    def on_sigterm() -> None:
        nonlocal received
        received += 1
        if received == 1:
            logger.warning("SIGTERM: interrupting the execution (shutdown)")
            supervisor.spawn(supervisor.drain())
            if callable(previous) and not pool_process:
                _chain(previous)
                # Should it have set a handler of its own, ours stays.
                loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        elif not pool_process:
            logger.warning("SIGTERM again: forcing the execution")
            supervisor.spawn(supervisor.drain(grace=0))

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, previous)


def _chain(handler: Callable) -> None:
    """Tell the worker's own handler (it stops taking work after this one)."""
    try:
        handler(signal.SIGTERM, None)
    except SystemExit:
        # It wanted to exit now; the drain ends the run first, and the worker
        # exits when the task returns.
        logger.warning("the worker's SIGTERM handler asked to exit")
