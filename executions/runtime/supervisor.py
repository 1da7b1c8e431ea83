"""The supervisor: runs executions and is the one writer of their rows.

For each execution it supervises, it claims the row, starts the engine (an
execution process, or this process for a terminal's own run), and then:

- progress out: step events go to the watchers (coalesced, latest wins) and,
  batched for all its runs, to the database;
- logs out: the steps' log lines get their `seq`, go to the watchers in
  batches and, batched for all its runs, to the database (sooner for runs
  holding `LOG_WRITE_LINES`), at most `EXECUTIONS_LOG_LIMIT` a run (the
  oldest dropped, the drop counted); a failed step's traceback goes to the
  server's log too;
- interrupts in: from the channel layer (fast) and from the row (durable),
  delivered to the engine once each; the engine's acknowledgement is
  recorded as `interrupt_delivered_at`;
- the escalation ladder: `timeout` interrupts gracefully, `force_after`
  forces a request still pending, and a forced execution process still
  alive after `EXECUTIONS_FORCE_GRACE` gets SIGTERM, then SIGKILL, on its
  process group;
- lifecycle: it heartbeats for all its runs in one write, finishes each row
  once its process is gone, and (servers and workers) reaps rows whose
  supervisor is gone, from its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Iterable

from channels.layers import get_channel_layer
from django.utils import timezone

from ..conf import conf
from ..engine import InterruptSignal
from ..models import TERMINAL, Execution, Source
from . import broadcast, control, groups, reaper, store, watchers
from .engines import LocalEngine, ProcessEngine
from .identity import new_identity
from .run import KILL_AFTER_TERM, Run, RunObserver
from .throttle import Throttled

logger = logging.getLogger(__name__)
#: Failures that repeat while Redis or the database is away: a line each
#: so often, not one per run per second.
quiet = Throttled(logger)

SHUTDOWN_REASON = "the process running it is shutting down"
#: How long the channel layer may take to say who watches the runs.
WATCHERS_TIMEOUT = 2.0
#: How long close() lets a housekeeping round finish before cancelling it.
CLOSE_TIMEOUT = 5.0


def _fresh_task(coroutine) -> asyncio.Task:
    """A task in a fresh context: a sync view's (dispatch after its commit)
    carries asgiref's per-request executor, which is gone once the request
    ends, and every database call of the run would fail with it."""
    return asyncio.get_running_loop().create_task(
        coroutine, context=contextvars.Context()
    )


async def _stop(helpers: list[asyncio.Future]) -> None:
    """Cancel helpers and wait until they are gone.

    A cancellation can be lost: on Python 3.11, `asyncio.wait_for` (which
    redis-py puts around every socket write) returns the result instead of
    raising when the cancel lands as the write completes. A helper that lives
    on would hold the run forever: each one still running is cancelled again."""
    pending = {helper for helper in helpers if helper is not None}
    everything = list(pending)
    while pending:
        for helper in pending:
            helper.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)
    await asyncio.gather(*everything, return_exceptions=True)


class Supervisor:
    """Supervises the executions of one process: a server, a worker or a
    terminal. `reaps` makes it end rows whose supervisor is gone; `queue`
    makes it take queued work from the database, `concurrency` at a time."""

    def __init__(
        self,
        *,
        reaps: bool = True,
        queue: str = "",
        concurrency: int = 0,
    ) -> None:
        self.identity = new_identity()
        self.reaps = reaps
        self.queue = queue
        self.concurrency = concurrency
        self.runs: dict[str, Run] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self.draining = False
        self._housekeeping: asyncio.Task | None = None
        self._wake = asyncio.Event()
        #: Set by close(): housekeeping ends after the round it is in.
        self._closing = asyncio.Event()
        self._background: set[asyncio.Task] = set()
        #: Runs holding LOG_WRITE_LINES unsaved lines, the task writing them,
        #: and (monotonic) when such a write may be tried again after one failed.
        self._logs_waiting: set[str] = set()
        self._log_writer: asyncio.Task | None = None
        self._log_writes_after = float("-inf")

    def spawn(self, coroutine) -> asyncio.Task:
        """A background task this supervisor keeps (and logs if it fails)."""
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- starting runs

    def start(self, execution_id) -> asyncio.Task | None:
        """Claim and run a recorded execution in an execution process."""
        if self.draining:
            return None
        return self._track(str(execution_id), self._claim_and_run(execution_id))

    async def run_here(
        self,
        execution_id,
        *,
        signal: InterruptSignal | None = None,
        observers: Iterable[RunObserver] = (),
    ) -> Execution:
        """Claim and run an execution in this process, to its end."""
        task = self._track(
            str(execution_id),
            self._claim_and_run(
                execution_id, local=True, signal=signal, observers=observers
            ),
        )
        return await task

    def _track(self, key: str, coroutine) -> asyncio.Task:
        self.ensure_housekeeping()
        task = _fresh_task(coroutine)
        self.tasks[key] = task
        task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def _finished(self, key: str, task: asyncio.Task) -> None:
        self.tasks.pop(key, None)
        self.runs.pop(key, None)
        self._wake.set()  # a slot is free
        if not task.cancelled() and task.exception() is not None:
            logger.error("supervising %s failed", key, exc_info=task.exception())

    async def _claim_and_run(
        self,
        execution_id,
        *,
        claimed: Execution | None = None,
        local: bool = False,
        signal: InterruptSignal | None = None,
        observers: Iterable[RunObserver] = (),
    ) -> Execution:
        execution = claimed or await store.load(execution_id)
        if claimed is None and not await store.claim(execution, self.identity):
            return await store.load(execution_id)  # interrupted while queued
        run = Run(
            execution,
            local=local,
            on_ack=lambda run: self.spawn(self.acknowledge(run)),
            on_logs_due=self._logs_due,
            observers=observers,
        )
        run.engine = LocalEngine(run, signal) if local else ProcessEngine(run)
        self.runs[run.id] = run
        return await self._supervise(run)

    async def _supervise(self, run: Run) -> Execution:
        # claim() left the instance as the row now stands.
        await broadcast.status_changed(run.execution.snapshot())
        for observer in run.observers:
            observer.started(run.execution)
        try:
            await run.engine.start()
        except Exception as error:
            logger.exception("cannot start execution %s", run.id)
            await store.fail_to_start(run.execution, f"{type(error).__name__}: {error}")
            return await self._announce_end(run)
        if run.spec.interrupt is not None:
            run.delivered = run.spec.interrupt  # the engine starts with it
        sender = asyncio.ensure_future(run.send_progress())
        listener = asyncio.ensure_future(self._listen_for_interrupts(run))
        try:
            failure = await run.engine.wait()
        finally:
            run.stop_sending()
            # The process is gone: no interrupt is for it any more. Leaving
            # its control group (a Redis round trip) waits until the end is
            # written and told.
            listener.cancel()
            await asyncio.wait([sender], timeout=1.0)
            await _stop([sender, run.escalation])
        try:
            return await self._end(run, failure)
        finally:
            await _stop([listener])

    async def _end(self, run: Run, failure: str | None) -> Execution:
        try:
            await self._write_logs([run])
        except Exception:
            # The row must still be finished; its log is what it is.
            logger.warning("saving the log of %s failed", run.id, exc_info=True)
        status, outcome, results = run.conclude(failure)
        # One trip: the end written, and the row read back as it now stands.
        # If the write refused, the row was already final (reaped as lost):
        # the database stays the truth, and watchers are told what it says.
        found = await store.finish(
            run.execution, status, outcome, list(run.steps.values()), results
        )
        # The row holds every step's last state now, and the log's drop
        # count: what the sender left goes out without another write.
        await run.drain_outbox(saved=True)
        return await self._announce_end(run, found)

    async def _announce_end(
        self, run: Run, found: tuple[Execution, dict] | None = None
    ) -> Execution:
        if found is None:
            found = await store.snapshot(run.id)
        if found is None:
            logger.warning("execution %s was deleted while it ran", run.id)
            return run.execution
        execution, snapshot = found
        await broadcast.status_changed(snapshot, groups.FINISHED)
        for observer in run.observers:
            observer.finished(execution)
        return execution

    async def acknowledge(self, run: Run) -> None:
        snapshot = await store.acknowledge(run.id)
        if snapshot is not None:
            await broadcast.status_changed(snapshot)

    # -- interrupts in: the fast path

    async def _listen_for_interrupts(self, run: Run) -> None:
        """The run's place in its control group (`control.listen`)."""
        layer = get_channel_layer()
        if layer is None:
            return

        def on_message(message: dict) -> None:
            kind = message.get("type")
            if kind == groups.INTERRUPT:
                run.deliver(bool(message.get("force")))
            elif kind == groups.WATCHED:
                run.joined()

        await control.listen(layer, groups.control_group(run.id), on_message)

    # -- housekeeping: one poll, one heartbeat, one progress write for all

    def ensure_housekeeping(self) -> None:
        if self._housekeeping is None or self._housekeeping.done():
            self._housekeeping = _fresh_task(self.keep_house())

    async def keep_house(self) -> None:
        due = {"poll": 0.0, "beat": 0.0, "progress": 0.0, "reap": 0.0}
        while not self._closing.is_set():
            now = time.monotonic()
            try:
                if self.reaps and now >= due["reap"]:
                    due["reap"] = now + conf.HEARTBEAT_TIMEOUT / 3
                    await reaper.reap()
                if self.runs and now >= due["beat"]:
                    due["beat"] = now + conf.HEARTBEAT_INTERVAL
                    await store.beat(list(self.runs))
                if self.runs and now >= due["poll"]:
                    due["poll"] = now + conf.POLL_INTERVAL
                    await self._poll()
                    await self._pace()
                if now >= due["progress"]:
                    due["progress"] = now + conf.DB_PROGRESS_INTERVAL
                    await self._write_progress()
                    await self._write_logs(list(self.runs.values()))
            except Exception:
                # A database hiccup must not end any run; the next tick retries.
                quiet.warning("housekeeping", "housekeeping failed", exc_info=True)
            else:
                quiet.recovered("housekeeping")
            tick = min(conf.POLL_INTERVAL, conf.DB_PROGRESS_INTERVAL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=tick)

    async def _write_progress(self) -> None:
        batch = {}
        for run in list(self.runs.values()):
            if run.dirty:
                run.dirty = False
                batch[run.id] = list(run.steps.values())
        if batch:
            await store.save_progress(batch)

    async def _write_logs(self, runs: list[Run]) -> None:
        batch = {}
        for run in runs:
            taken = run.take_logs()
            if taken is not None:
                batch[run.id] = taken
        if not batch:
            return
        try:
            totals = await store.save_logs(batch, conf.LOG_LIMIT)
        except Exception:
            # Kept for the next write (within each run's bound).
            for run in runs:
                if run.id in batch:
                    run.give_back_logs(*batch[run.id])
            raise
        for run in runs:
            if run.id in totals:
                # The database's count includes what its limit dropped.
                run.saved_logs(totals[run.id])

    def _logs_due(self, run: Run) -> None:
        """A run holds enough lines for a write of their own: one now, not at
        the next round (`LOG_WRITE_LINES`). After one failed, the rounds
        retry alone for a while: a database that is away is not asked each
        time a batch of lines arrives."""
        if time.monotonic() < self._log_writes_after:
            return
        self._logs_waiting.add(run.id)
        if self._log_writer is None or self._log_writer.done():
            self._log_writer = self.spawn(self._write_due_logs())

    async def _write_due_logs(self) -> None:
        """Write what the waiting runs hold, until none waits: lines that came
        during a write go in the next one, with the others'."""
        while self._logs_waiting:
            runs = [self.runs[key] for key in self._logs_waiting if key in self.runs]
            self._logs_waiting.clear()
            try:
                await self._write_logs(runs)
            except Exception:
                # Given back to their runs: the next round retries.
                self._log_writes_after = time.monotonic() + conf.DB_PROGRESS_INTERVAL
                self._logs_waiting.clear()
                quiet.warning("logs", "saving log lines failed", exc_info=True)
                return
            quiet.recovered("logs")

    async def _poll(self) -> None:
        """The durable path: every POLL_INTERVAL the rows are re-read, because
        channel-layer delivery is at most once. No interrupt is ever lost."""
        ids = list(self.runs)
        rows = await store.rows(ids)
        now = timezone.now()
        # Only the runs the rows were read for: one that started while they
        # were read has its row, and must not be taken for deleted.
        for run_id in ids:
            run = self.runs.get(run_id)
            if run is None:
                continue  # it ended while the rows were read
            row = rows.get(run_id)
            if row is None or row["status"] in TERMINAL:
                # Someone ended or deleted this row without us: stop now.
                run.deliver(True)
            elif row["interrupt_requested_at"] is not None:
                run.deliver(row["interrupt_force"])
                await self._force_after(run, row, now)
            elif row["timeout"] and row["started_at"]:
                elapsed = (now - row["started_at"]).total_seconds()
                if elapsed >= row["timeout"]:
                    await store.request(
                        run_id,
                        source=Source.TIMEOUT,
                        force=False,
                        reason=f"timed out after {row['timeout']:g} s",
                    )

    async def _pace(self) -> None:
        """Each run is sampled for its watchers while it has any, and at the
        database's pace while it has none (runtime/watchers.py). A layer
        that cannot tell, or fails to, leaves every run at the watchers'. A
        terminal's own run shows every step event itself: it is not asked."""
        ids = [run_id for run_id, run in self.runs.items() if not run.local]
        if not ids:
            return
        asked = time.monotonic()
        try:
            # Bounded: a Redis that stopped answering must not hold up the
            # heartbeat that follows in this round.
            found = await asyncio.wait_for(
                watchers.watched(get_channel_layer(), ids), WATCHERS_TIMEOUT
            )
        except Exception as error:
            # The layer's own failures say why, with their tracebacks.
            quiet.warning("watchers", "cannot tell who watches runs: %r", error)
            found = None
        else:
            quiet.recovered("watchers")
        for run_id in ids:
            run = self.runs.get(run_id)
            if run is not None:
                # A watcher that joined while the layer was asked counts.
                run.watch(found is None or run_id in found or run.joined_at >= asked)

    async def _force_after(self, run: Run, row: dict, now) -> None:
        limit = row["force_after"]
        if not limit or row["interrupt_force"]:
            return
        pending = (now - row["interrupt_requested_at"]).total_seconds()
        if pending >= limit:
            await store.request(
                run.id,
                source=Source.TIMEOUT,
                force=True,
                reason=f"still running {limit:g} s after the interrupt request",
            )

    # -- taking work from a queue (engine workers)

    def wake(self) -> None:
        """Look at the queue now (a new execution was announced)."""
        self._wake.set()

    async def take_work(self) -> None:
        """Claim queued executions while slots are free. The database is the
        queue (durable: a lost announcement delays, never loses, a run); a
        channel-layer announcement only makes it prompt."""
        while not self.draining:
            while len(self.tasks) < self.concurrency and not self.draining:
                try:
                    execution = await store.claim_next(self.queue, self.identity)
                except Exception:
                    quiet.warning("claim", "claiming work failed", exc_info=True)
                    break
                if execution is None:
                    break
                self._track(
                    str(execution.id),
                    self._claim_and_run(execution.id, claimed=execution),
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=conf.POLL_INTERVAL)
            self._wake.clear()

    # -- shutdown

    async def drain(self, grace: float | None = None) -> None:
        """Interrupt every run here gracefully (recorded with source
        `shutdown`), wait up to `grace` seconds, then force what remains; the
        ladder kills what ignores force."""
        self.draining = True
        self._wake.set()
        grace = conf.SHUTDOWN_GRACE if grace is None else grace
        tasks = dict(self.tasks)
        if not tasks:
            return
        for key in tasks:
            await self._shut(key, force=False)
        _, pending = await asyncio.wait(tasks.values(), timeout=grace)
        for key, task in tasks.items():
            if task in pending:
                await self._shut(key, force=True)
        if pending:
            await asyncio.wait(pending, timeout=conf.FORCE_GRACE + KILL_AFTER_TERM + 3)

    async def _shut(self, key: str, *, force: bool) -> None:
        await store.request(
            key, source=Source.SHUTDOWN, force=force, reason=SHUTDOWN_REASON
        )
        run = self.runs.get(key)
        if run is not None:
            run.deliver(force)

    async def close(self) -> None:
        """Stop housekeeping (a task's or a terminal's supervisor, once its
        run is over). The round in progress ends first: a reap cut between
        its write and its broadcast would end a row no watcher hears of."""
        self._closing.set()
        if self._housekeeping is not None:
            await asyncio.wait([self._housekeeping], timeout=CLOSE_TIMEOUT)
        await _stop([self._housekeeping, *self._background])
