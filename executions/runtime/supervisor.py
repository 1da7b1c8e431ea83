"""The supervisor: runs executions and is the one writer of their rows.

For each execution it supervises, it claims the row, starts the engine (an
execution process, or this process for a terminal's own run), and then:

- progress out: step events go to the watchers (coalesced, latest wins) and,
  batched for all its runs, to the database;
- logs out: the steps' log lines get their `seq`, go to the watchers in
  batches and, batched for all its runs, to the database, at most
  `EXECUTIONS_LOG_LIMIT` a run (the oldest dropped, the drop counted); a
  failed step's traceback goes to the server's log too;
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
import signal as signals
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..conf import conf
from ..engine import InterruptSignal
from ..engine.scheduler import ABANDONED
from ..models import RUNNING, TERMINAL, Execution, LogLine, Source, Status
from . import broadcast, groups, interrupts, reaper
from .identity import new_identity
from .process import ExecutionProcess, describe_exit
from .spec import Report, RunSpec, run_spec
from .throttle import Throttled

logger = logging.getLogger(__name__)
#: Failures that repeat while Redis or the database is away: a line each
#: so often, not one per run per second.
quiet = Throttled(logger)

STATUS_FOR_OUTCOME = {
    "complete": Status.SUCCEEDED,
    "interrupted": Status.INTERRUPTED,
    "failed": Status.FAILED,
}
SHUTDOWN_REASON = "the process running it is shutting down"
FORCED = "forced: stopped with its execution process"
#: After SIGTERM to a forced execution's process group, how long until SIGKILL.
KILL_AFTER_TERM = 1.0
#: Log lines waiting for the watchers, at most: a slow channel layer loses
#: the oldest (the API still has them).
LOG_OUTBOX = 1000


class RunObserver:
    """Something in this process that watches a run (the terminal's bars)."""

    def started(self, execution: Execution) -> None: ...

    def step(self, step: dict[str, Any]) -> None: ...

    def log(self, lines: list[dict[str, Any]]) -> None: ...

    def finished(self, execution: Execution) -> None: ...


# -- database helpers ----------------------------------------------------------------


@database_sync_to_async
def _load(execution_id) -> Execution:
    return Execution.objects.select_related("resumed_from").get(pk=execution_id)


@database_sync_to_async
def _claim(execution: Execution, supervisor: str) -> bool:
    return execution.claim(supervisor)


@database_sync_to_async
def _claim_next(queue: str, supervisor: str) -> Execution | None:
    """Claim the oldest queued execution of `queue`, or None. Compare-and-set:
    when several workers race for one, exactly one wins."""
    for execution in Execution.objects.filter(
        status=Status.QUEUED, queue=queue
    ).order_by("created_at")[:10]:
        if execution.claim(supervisor):
            return Execution.objects.select_related("resumed_from").get(pk=execution.pk)
    return None


@database_sync_to_async
def _rows(ids: list[str]) -> dict[str, dict]:
    """What the durable side says of these runs: one query for all."""
    rows = Execution.objects.filter(pk__in=ids).values(
        "id",
        "status",
        "started_at",
        "timeout",
        "force_after",
        "interrupt_requested_at",
        "interrupt_force",
    )
    return {str(row["id"]): row for row in rows}


@database_sync_to_async
def _beat(ids: list[str]) -> None:
    Execution.objects.filter(pk__in=ids, status__in=RUNNING).update(
        heartbeat_at=timezone.now()
    )


@database_sync_to_async
def _save_progress(batch: dict[str, list[dict]]) -> None:
    with transaction.atomic():
        for execution_id, steps in batch.items():
            Execution.objects.filter(pk=execution_id, status__in=RUNNING).update(
                steps=steps
            )


@database_sync_to_async
def _save_logs(batch: dict[str, tuple[list[dict], int]], limit: int) -> dict[str, int]:
    """Store each run's new lines and what it dropped; drop its oldest beyond
    `limit`. Returns how many lines each run's row now says were dropped."""
    with transaction.atomic():
        existing = set(
            str(pk)
            for pk in Execution.objects.filter(pk__in=batch).values_list(
                "pk", flat=True
            )
        )
        for execution_id, (lines, dropped) in batch.items():
            if execution_id not in existing:
                continue  # deleted while it ran
            LogLine.objects.bulk_create(
                LogLine(
                    execution_id=execution_id,
                    seq=line["seq"],
                    step=line["step"] or "",
                    at=datetime.fromisoformat(line["at"]),
                    level=line["level"],
                    text=_storable(line["text"]),
                )
                for line in lines
            )
            if lines:
                pruned, _ = LogLine.objects.filter(
                    execution_id=execution_id, seq__lte=lines[-1]["seq"] - limit
                ).delete()
                dropped += pruned
            if dropped:
                Execution.objects.filter(pk=execution_id).update(
                    log_dropped=F("log_dropped") + dropped
                )
        totals = Execution.objects.filter(pk__in=existing).values_list(
            "pk", "log_dropped"
        )
        return {str(pk): total for pk, total in totals}


def _storable(text: str) -> str:
    """Text every database stores: PostgreSQL refuses NUL and unpaired
    surrogates (a filename printed with surrogateescape)."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode()


@database_sync_to_async
def _request(execution_id: str, *, source: str, force: bool, reason: str) -> None:
    """An interrupt the runtime asks for itself (timeout, shutdown)."""
    execution = Execution.objects.filter(pk=execution_id).first()
    if execution is not None:
        interrupts.record(
            execution, source=source, force=force, reason=reason, by_name=source
        )


@database_sync_to_async
def _acknowledge(execution_id: str) -> dict | None:
    execution = Execution.objects.filter(pk=execution_id).first()
    if execution is None or not execution.record_delivered():
        return None
    return Execution.objects.get(pk=execution_id).snapshot()


@database_sync_to_async
def _finish(execution: Execution, status: str, outcome: dict, steps, results) -> None:
    execution.finish(status, outcome=outcome, steps=steps, results=results)


@database_sync_to_async
def _fail_to_start(execution: Execution, error: str) -> None:
    steps = [
        {**step, "status": "skipped"} if step["status"] == "pending" else step
        for step in execution.steps
    ]
    execution.finish(
        Status.FAILED,
        outcome={
            "kind": "failed",
            "steps_processed": [],
            "steps_not_processed": [step["id"] for step in steps],
            "errors": {"start": error},
        },
        steps=steps,
    )


@database_sync_to_async
def _snapshot(execution_id) -> tuple[Execution, dict] | None:
    execution = Execution.objects.select_related("resumed_from").filter(pk=execution_id)
    execution = execution.first()
    return None if execution is None else (execution, execution.snapshot())


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


# -- engines: where the steps run ----------------------------------------------------


class ProcessEngine:
    """The run's steps in an execution process of their own."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.process = ExecutionProcess(run.spec, self._on_message)

    async def start(self) -> None:
        await self.process.start()

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("t")
        if kind == "step":
            self.run.on_step(message["step"])
        elif kind == "log":
            self.run.on_log(message["lines"], message.get("dropped", 0))
        elif kind == "ack":
            self.run.on_ack()
        elif kind == "report":
            self.run.report = message

    def interrupt(self, force: bool) -> None:
        self.process.interrupt(force)

    async def wait(self) -> str | None:
        """Wait for the process to end; why, if it did not report."""
        code = await self.process.wait()
        # Whatever its steps started goes with it.
        self.process.kill_group()
        self.process.close()
        if self.run.report is None:
            return describe_exit(code)
        # A step the engine abandoned in its thread ended with the process.
        for step in self.run.steps.values():
            if step.get("error") == ABANDONED:
                step["error"] = FORCED
        return None

    def kill(self, number: int) -> None:
        self.process.kill_group(number)


class LocalEngine:
    """The run's steps in this process: a terminal's own run (Ctrl-C reaches
    it directly), and tests that drive the engine in-process."""

    def __init__(self, run: Run, signal: InterruptSignal | None) -> None:
        self.run = run
        self.signal = signal or InterruptSignal()
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: over
                loop.call_soon_threadsafe(self.run.on_ack)

        self.signal.add_listener(on_signal)
        self.task = asyncio.ensure_future(
            run_spec(
                self.run.spec,
                self.signal,
                lambda state: self.run.on_step(state.to_dict()),
                self.run.on_log,
            )
        )

    def interrupt(self, force: bool) -> None:
        self.signal.request(force=force)

    async def wait(self) -> str | None:
        report: Report = await self.task
        self.run.report = {
            "outcome": report.outcome.to_dict(),
            "results": report.results,
        }
        return None

    def kill(self, number: int) -> None:
        """Nothing to kill: this process is the terminal itself."""


# -- one run -------------------------------------------------------------------------


class Run:
    """One execution under its supervisor."""

    def __init__(
        self,
        supervisor: Supervisor,
        execution: Execution,
        *,
        local: bool,
        signal: InterruptSignal | None = None,
        observers: Iterable[RunObserver] = (),
    ) -> None:
        self.supervisor = supervisor
        self.execution = execution
        self.id = str(execution.id)
        self.local = local
        self.spec = RunSpec.of(
            execution,
            progress_interval=conf.PROGRESS_INTERVAL,
            log_rate=conf.LOG_RATE,
            log_burst=conf.LOG_BURST,
        )
        self.observers = list(observers)
        self.steps = {step["id"]: dict(step) for step in execution.steps}
        self.carried = set(self.spec.skip)
        self.report: dict[str, Any] | None = None
        self.engine = LocalEngine(self, signal) if local else ProcessEngine(self)
        #: What the engine has been told: None, graceful (False) or force.
        self.delivered: bool | None = None
        self.dirty = False
        self._outbox: dict[str, dict] = {}
        self._outbox_ready = asyncio.Event()
        #: The status each step was last published with.
        self._published = {step["id"]: step["status"] for step in execution.steps}
        #: The last log line's seq; lines waiting for the database (bounded:
        #: what the limit would drop anyway) and for the watchers.
        self.log_seq = 0
        self.log_limit = conf.LOG_LIMIT
        self.log_dropped = execution.log_dropped
        self._log_unsaved: deque[dict] = deque(maxlen=self.log_limit)
        self._log_unsaved_dropped = 0
        self._log_outbox: deque[dict] = deque(maxlen=LOG_OUTBOX)
        #: Lines to send, or a drop count the watchers have not heard yet.
        self._log_event_due = False
        self._tracebacks_logged: set[str] = set()
        self._closing = False
        self._escalation: asyncio.Task | None = None

    # -- progress out

    def on_step(self, step: dict[str, Any]) -> None:
        if step["id"] in self.carried:
            step["carried_over"] = True
        self.steps[step["id"]] = step
        if (
            step["status"] == "failed"
            and step.get("traceback")
            and step["id"] not in self._tracebacks_logged
            and not self.local  # a terminal shows it among the run's log lines
        ):
            self._tracebacks_logged.add(step["id"])
            logger.error(
                "step %s of execution %s failed:\n%s",
                step["id"],
                self.id,
                step["traceback"],
            )
        self.dirty = True
        self._outbox.pop(step["id"], None)
        self._outbox[step["id"]] = step
        self._outbox_ready.set()
        for observer in self.observers:
            observer.step(step)

    def on_log(self, lines: list[dict[str, Any]], dropped: int) -> None:
        """A batch of log lines from the engine: numbered, then on their way
        to the database and the watchers; neither may hold more than its
        bound, and what falls off is counted."""
        for line in lines:
            self.log_seq += 1
            line["seq"] = self.log_seq
        overflow = max(0, len(self._log_unsaved) + len(lines) - self.log_limit)
        self._log_unsaved.extend(lines)
        self._log_unsaved_dropped += dropped + overflow
        self.log_dropped += dropped + overflow
        self._log_outbox.extend(lines)
        self._log_event_due = bool(lines or dropped or overflow) or self._log_event_due
        self._outbox_ready.set()
        for observer in self.observers:
            observer.log(lines)

    def take_logs(self) -> tuple[list[dict], int] | None:
        """The lines and the drop count the database has not seen yet."""
        if not self._log_unsaved and not self._log_unsaved_dropped:
            return None
        lines, dropped = list(self._log_unsaved), self._log_unsaved_dropped
        self._log_unsaved.clear()
        self._log_unsaved_dropped = 0
        return lines, dropped

    def give_back_logs(self, lines: list[dict], dropped: int) -> None:
        """Lines the database did not take: before the newer ones, bounded."""
        room = self.log_limit - len(self._log_unsaved)
        kept = lines[max(0, len(lines) - room) :] if room > 0 else []
        self._log_unsaved.extendleft(reversed(kept))
        lost = len(lines) - len(kept)
        self._log_unsaved_dropped += dropped + lost
        self.log_dropped += lost
        self._log_event_due = self._log_event_due or lost > 0

    def saved_logs(self, total_dropped: int) -> None:
        """The database's drop count after a write (with what its limit
        dropped); what came since is not in it yet."""
        dropped = total_dropped + self._log_unsaved_dropped
        if dropped != self.log_dropped:
            self.log_dropped = dropped
            self._log_event_due = True
            self._outbox_ready.set()

    async def send_progress(self) -> None:
        group = groups.watch_group(self.id)
        while not self._closing:
            await self._outbox_ready.wait()
            await self._drain_outbox(group)

    async def _drain_outbox(self, group: str) -> None:
        self._outbox_ready.clear()
        while self._outbox:
            step_id = next(iter(self._outbox))
            step = self._outbox.pop(step_id)
            if self._published.get(step_id) != step["status"]:
                # Durable first: a step's start or end is on the row before
                # any watcher hears of it (a reaper may read the row next).
                self._published[step_id] = step["status"]
                await self._save_now()
            await broadcast.send(
                group, {"type": groups.STEP, "execution_id": self.id, "step": step}
            )
        while self._log_event_due:
            count = min(groups.LOG_EVENT_LINES, len(self._log_outbox))
            lines = [self._log_outbox.popleft() for _ in range(count)]
            self._log_event_due = bool(self._log_outbox)
            await broadcast.send(
                group,
                {
                    "type": groups.LOG,
                    "execution_id": self.id,
                    "lines": lines,
                    "dropped": self.log_dropped,
                },
            )

    async def _save_now(self) -> None:
        self.dirty = False
        try:
            await _save_progress({self.id: list(self.steps.values())})
        except Exception:
            self.dirty = True  # the next progress write retries
            quiet.warning("progress", "writing progress failed", exc_info=True)

    async def flush_progress(self) -> None:
        """Stop the sender; the final value of every step always goes out."""
        self._closing = True
        self._outbox_ready.set()

    # -- interrupts in

    def deliver(self, force: bool) -> None:
        """Tell the engine, once per change: a request, or its escalation."""
        if self.delivered is True or (self.delivered is False and not force):
            return
        self.delivered = force
        self.engine.interrupt(force)
        if force and self._escalation is None:
            self._escalation = asyncio.ensure_future(self._escalate())

    async def _escalate(self) -> None:
        """A forced run still alive after the grace period loses its process
        group: SIGTERM, then SIGKILL."""
        await asyncio.sleep(conf.FORCE_GRACE)
        logger.warning("execution %s ignored force: SIGTERM", self.id)
        self.engine.kill(signals.SIGTERM)
        await asyncio.sleep(KILL_AFTER_TERM)
        self.engine.kill(signals.SIGKILL)

    def on_ack(self) -> None:
        self.supervisor.spawn(self.supervisor.acknowledge(self))

    # -- the end

    def conclude(self, failure: str | None) -> tuple[str, dict, dict]:
        """The row's final status, outcome and results."""
        if self.report is not None:
            outcome = self.report["outcome"]
            if not outcome["steps_processed"] and not outcome["steps_not_processed"]:
                outcome["steps_not_processed"] = list(self.steps)
                self.steps = {
                    key: {**step, "status": "skipped"}
                    if step["status"] == "pending"
                    else step
                    for key, step in self.steps.items()
                }
            return (
                STATUS_FOR_OUTCOME[outcome["kind"]],
                outcome,
                self.report.get("results") or {},
            )
        forced = self.delivered is True
        errors = {}
        for step_id, step in self.steps.items():
            if step["status"] in ("running", "stalled"):
                step["status"] = "interrupted" if forced else "failed"
                step["error"] = FORCED if forced else failure
                step["finished_at"] = time.time()
                if not forced:
                    errors[step_id] = failure
            elif step["status"] == "pending":
                step["status"] = "skipped"
        if not forced and not errors:
            errors["process"] = failure
        processed = [k for k, s in self.steps.items() if s["status"] == "succeeded"]
        outcome = {
            "kind": "interrupted" if forced else "failed",
            "steps_processed": processed,
            "steps_not_processed": [k for k in self.steps if k not in processed],
            "errors": errors,
        }
        return (Status.INTERRUPTED if forced else Status.FAILED), outcome, {}


# -- the supervisor ------------------------------------------------------------------


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
        self._background: set[asyncio.Task] = set()

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
        **engine,
    ) -> Execution:
        execution = claimed or await _load(execution_id)
        if claimed is None and not await _claim(execution, self.identity):
            return await _load(execution_id)  # interrupted while queued
        run = Run(self, execution, local=local, **engine)
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
            await _fail_to_start(run.execution, f"{type(error).__name__}: {error}")
            return await self._announce_end(run)
        if run.spec.interrupt is not None:
            run.delivered = run.spec.interrupt  # the engine starts with it
        sender = asyncio.ensure_future(run.send_progress())
        listener = asyncio.ensure_future(self._listen_for_interrupts(run))
        try:
            failure = await run.engine.wait()
        finally:
            await run.flush_progress()
            await asyncio.wait([sender], timeout=1.0)
            await _stop([sender, listener, run._escalation])
        try:
            await self._write_logs([run])
        except Exception:
            # The row must still be finished; its log is what it is.
            logger.warning("saving the log of %s failed", run.id, exc_info=True)
        # After the write: the last log event's drop count is the row's.
        await run._drain_outbox(groups.watch_group(run.id))
        status, outcome, results = run.conclude(failure)
        await _finish(run.execution, status, outcome, list(run.steps.values()), results)
        # If that refused, the row was already final (reaped as lost): the
        # database stays the truth, and watchers are told what it says.
        return await self._announce_end(run)

    async def _announce_end(self, run: Run) -> Execution:
        found = await _snapshot(run.id)
        if found is None:
            logger.warning("execution %s was deleted while it ran", run.id)
            return run.execution
        execution, snapshot = found
        await broadcast.status_changed(snapshot, groups.FINISHED)
        for observer in run.observers:
            observer.finished(execution)
        return execution

    async def acknowledge(self, run: Run) -> None:
        snapshot = await _acknowledge(run.id)
        if snapshot is not None:
            await broadcast.status_changed(snapshot)

    # -- interrupts in: the fast path

    async def _listen_for_interrupts(self, run: Run) -> None:
        """The run's place in its control group. The group is re-joined
        periodically: Redis forgets memberships after `group_expiry` and
        across a restart, and a run may outlive both. Layer errors back off
        and retry; meanwhile the database poll still delivers."""
        layer = get_channel_layer()
        if layer is None:
            return
        group = groups.control_group(run.id)
        channel = await layer.new_channel()
        rejoin = asyncio.ensure_future(self._keep_joined(layer, group, channel))
        try:
            while True:
                try:
                    message = await layer.receive(channel)
                except Exception:
                    quiet.warning("control", "control channels failing", exc_info=True)
                    await asyncio.sleep(1.0)
                    continue
                if message.get("type") == groups.INTERRUPT:
                    run.deliver(bool(message.get("force")))
        finally:
            rejoin.cancel()
            with contextlib.suppress(Exception):
                await layer.group_discard(group, channel)

    async def _keep_joined(self, layer, group: str, channel: str) -> None:
        while True:
            try:
                await layer.group_add(group, channel)
            except Exception:
                quiet.warning("join", "joining control groups failing; retrying")
                await asyncio.sleep(1.0)
                continue
            await asyncio.sleep(conf.REJOIN_INTERVAL)

    # -- housekeeping: one poll, one heartbeat, one progress write for all

    def ensure_housekeeping(self) -> None:
        if self._housekeeping is None or self._housekeeping.done():
            self._housekeeping = _fresh_task(self.keep_house())

    async def keep_house(self) -> None:
        due = {"poll": 0.0, "beat": 0.0, "progress": 0.0, "reap": 0.0}
        while True:
            now = time.monotonic()
            try:
                if self.reaps and now >= due["reap"]:
                    due["reap"] = now + conf.HEARTBEAT_TIMEOUT / 3
                    await reaper.reap()
                if self.runs and now >= due["beat"]:
                    due["beat"] = now + conf.HEARTBEAT_INTERVAL
                    await _beat(list(self.runs))
                if self.runs and now >= due["poll"]:
                    due["poll"] = now + conf.POLL_INTERVAL
                    await self._poll()
                if now >= due["progress"]:
                    due["progress"] = now + conf.DB_PROGRESS_INTERVAL
                    await self._write_progress()
                    await self._write_logs(list(self.runs.values()))
            except Exception:
                # A database hiccup must not end any run; the next tick retries.
                quiet.warning("housekeeping", "housekeeping failed", exc_info=True)
            else:
                quiet.recovered("housekeeping")
            await asyncio.sleep(min(conf.POLL_INTERVAL, conf.DB_PROGRESS_INTERVAL))

    async def _write_progress(self) -> None:
        batch = {}
        for run in list(self.runs.values()):
            if run.dirty:
                run.dirty = False
                batch[run.id] = list(run.steps.values())
        if batch:
            await _save_progress(batch)

    async def _write_logs(self, runs: list[Run]) -> None:
        batch = {}
        for run in runs:
            taken = run.take_logs()
            if taken is not None:
                batch[run.id] = taken
        if not batch:
            return
        try:
            totals = await _save_logs(batch, conf.LOG_LIMIT)
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

    async def _poll(self) -> None:
        """The durable path: every POLL_INTERVAL the rows are re-read, because
        channel-layer delivery is at most once. No interrupt is ever lost."""
        rows = await _rows(list(self.runs))
        now = timezone.now()
        for run_id, run in list(self.runs.items()):
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
                    await _request(
                        run_id,
                        source=Source.TIMEOUT,
                        force=False,
                        reason=f"timed out after {row['timeout']:g} s",
                    )

    async def _force_after(self, run: Run, row: dict, now) -> None:
        limit = row["force_after"]
        if not limit or row["interrupt_force"]:
            return
        pending = (now - row["interrupt_requested_at"]).total_seconds()
        if pending >= limit:
            await _request(
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
                    execution = await _claim_next(self.queue, self.identity)
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
        await _request(key, source=Source.SHUTDOWN, force=force, reason=SHUTDOWN_REASON)
        run = self.runs.get(key)
        if run is not None:
            run.deliver(force)

    async def close(self) -> None:
        """Stop housekeeping (a terminal's supervisor, once its run is over)."""
        await _stop([self._housekeeping, *self._background])
