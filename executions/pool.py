"""The runners of one process (an ASGI server or a worker), and what they do
together: take work, keep house, and drain cleanly on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading

from channels.db import database_sync_to_async

from . import broadcast, groups, services
from .conf import conf
from .models import Execution, Source, Status
from .runner import Runner, runner_identity

logger = logging.getLogger(__name__)

SHUTDOWN_REASON = "the process running it is shutting down"


@database_sync_to_async
def _claim_next(queue: str, runner_id: str) -> Execution | None:
    """Claim the oldest queued execution of `queue`, or None. Compare-and-set:
    when several workers race for one, exactly one wins."""
    for execution in Execution.objects.filter(
        status=Status.QUEUED, queue=queue
    ).order_by("created_at")[:10]:
        if execution.claim(runner_id):
            return execution
    return None


@database_sync_to_async
def _request_shutdown(execution_id, force: bool) -> None:
    with contextlib.suppress(services.NotRunning):  # it finished meanwhile
        services.request_interrupt(
            execution_id,
            source=Source.SHUTDOWN,
            force=force,
            reason=SHUTDOWN_REASON,
            by_name="shutdown",
        )


@database_sync_to_async
def _reap(timeout: float) -> list[dict]:
    """End executions whose runner stopped heartbeating (see `reap()`)."""
    return [
        execution.snapshot()
        for execution in Execution.objects.stale(timeout)
        if execution.reap()
    ]


class RunnerPool:
    """Runs executions in this process, at most `concurrency` at once when it
    takes work from a queue; shuts down by interrupting them gracefully."""

    def __init__(self, *, queue: str = "", concurrency: int = 0) -> None:
        self.queue = queue
        self.concurrency = concurrency
        self.runner_id = runner_identity()
        self.runs: dict[str, tuple[asyncio.Task, Runner]] = {}
        self.draining = False
        self._wake = asyncio.Event()

    # -- running -----------------------------------------------------------------

    def start(self, execution_id, *, claimed: bool = False) -> asyncio.Task | None:
        """Run an execution here (in-process dispatch, or a claimed one)."""
        if self.draining:
            return None
        runner = Runner(execution_id, runner_id=self.runner_id, claimed=claimed)
        # A fresh context: a sync view's (dispatch after its commit) carries
        # asgiref's per-request executor, which is gone once the request ends.
        task = asyncio.get_running_loop().create_task(
            runner.run(), context=contextvars.Context()
        )
        key = str(execution_id)
        self.runs[key] = (task, runner)
        task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def _finished(self, key: str, task: asyncio.Task) -> None:
        self.runs.pop(key, None)
        self._wake.set()  # a slot is free
        if not task.cancelled() and task.exception() is not None:
            logger.error("runner for %s crashed", key, exc_info=task.exception())

    def wake(self) -> None:
        """Look at the queue now (a new execution was announced)."""
        self._wake.set()

    async def take_work(self) -> None:
        """Claim queued executions while slots are free. The database is the
        queue (durable: a lost announcement delays, never loses, a run); a
        channel-layer announcement only makes it prompt."""
        interval = conf.POLL_INTERVAL
        while not self.draining:
            while len(self.runs) < self.concurrency and not self.draining:
                try:
                    execution = await _claim_next(self.queue, self.runner_id)
                except Exception:
                    logger.warning("claiming work failed", exc_info=True)
                    break
                if execution is None:
                    break
                self.start(execution.id, claimed=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)
            self._wake.clear()

    # -- housekeeping ------------------------------------------------------------

    async def keep_house(self) -> None:
        """Reap executions whose runner is gone, so nothing stays `running`."""
        timeout = conf.HEARTBEAT_TIMEOUT
        while True:
            try:
                for snapshot in await _reap(timeout):
                    await broadcast.status_changed(snapshot, groups.FINISHED)
            except Exception:
                logger.warning("reaping lost executions failed", exc_info=True)
            await asyncio.sleep(timeout / 3)

    # -- shutdown ----------------------------------------------------------------

    async def drain(self, grace: float | None = None) -> None:
        """Interrupt every run here gracefully (recorded with source
        `shutdown`), wait up to `grace` seconds, then force what remains."""
        self.draining = True
        self._wake.set()
        if grace is None:
            grace = conf.SHUTDOWN_GRACE
        runs = dict(self.runs)
        if not runs:
            return
        for key, (_, runner) in runs.items():
            await _request_shutdown(key, force=False)
            runner.signal.request()
        tasks = [task for task, _ in runs.values()]
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for key, (task, runner) in runs.items():
            if task in pending:
                await _request_shutdown(key, force=True)
                runner.signal.request(force=True)
        if pending:
            await asyncio.wait(pending, timeout=5)


# -- this process's pool and dispatch ----------------------------------------------

_pool: RunnerPool | None = None
_loop: asyncio.AbstractEventLoop | None = None
_fallback_lock = threading.Lock()


def bind(loop: asyncio.AbstractEventLoop, *, keep_house: bool = True) -> RunnerPool:
    """Make `loop` the one in-process executions run on (the ASGI server's),
    and keep house on it. Called on the loop."""
    global _pool, _loop
    _loop = loop
    _pool = RunnerPool()
    if keep_house:
        loop.create_task(_pool.keep_house())
    return _pool


def local_pool() -> RunnerPool | None:
    return _pool


def _pool_loop() -> asyncio.AbstractEventLoop:
    """The server's loop; with no server in this process (a shell, a sync
    test), a private loop in a daemon thread, so the run still happens."""
    with _fallback_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="executions-runner", daemon=True
            ).start()
            asyncio.run_coroutine_threadsafe(_bind_async(loop), loop).result()
        return _loop


async def _bind_async(loop: asyncio.AbstractEventLoop) -> None:
    # Housekeeping belongs to servers and workers, not to a shell's runs.
    bind(loop, keep_house=False)


def dispatch(execution_id) -> None:
    """Hand a recorded execution to whoever runs it (see DESIGN.md)."""
    if conf.RUNNER == "worker":
        # The row waits in the database queue; this only wakes a worker.
        from asgiref.sync import async_to_sync

        async_to_sync(broadcast.send_to)(
            groups.WORKER_CHANNEL,
            {"type": groups.RUN_REQUEST, "execution_id": str(execution_id)},
        )
        return
    loop = _pool_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        _pool.start(execution_id)
    else:
        loop.call_soon_threadsafe(lambda: _pool.start(execution_id))
